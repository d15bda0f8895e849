"""Exceptions users can catch. Each message names the offending key, tensor or file."""


class AzrError(Exception):
    """Base class of every error azr-jax raises on purpose."""


class ConfigError(AzrError, ValueError):
    """A configuration key is unknown or a value is out of range."""


class UnsupportedModelError(AzrError, ValueError):
    """A model architecture or option that azr-jax does not implement."""


class CheckpointError(AzrError, ValueError):
    """A checkpoint or model folder is malformed: missing/unexpected tensor, wrong shape, bad files."""


class SeedDataError(AzrError, ValueError):
    """A seed/buffer record or jsonl file is malformed or too short (the message names file and line)."""


class BenchmarkDataError(AzrError, ValueError):
    """A benchmark data file (CRUXEval, HumanEval) is missing or malformed (the message names file and line)."""


class PromptBudgetError(AzrError, ValueError):
    """No prompt could be built within the token budget (content_max_length)."""


class RewardHookError(AzrError, ValueError):
    """A configured intrinsic-reward function returned something that is not a finite number."""


class MissingPackageError(AzrError, ImportError):
    """An optional package that a requested feature needs is not installed."""


class ExecutorError(AzrError, RuntimeError):
    """The sandboxed executor itself failed (not a program it ran): its template process
    could not be started or kept failing, or the Executor was used after close()."""


class SamplingError(AzrError, ValueError):
    """A generation request is invalid: bad sampling parameters, or a prompt that is empty, too
    long for the cache, or holds token ids outside the model's vocabulary."""


class RunFolderInUseError(AzrError, RuntimeError):
    """Another trainer holds the run folder (the message names its pid and host)."""
