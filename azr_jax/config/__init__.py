"""Run configuration: the schema (`TrainConfig`) and its YAML/CLI loader."""
from azr_jax.config.loader import describe, load, parse_override, to_dict
from azr_jax.config.schema import (AzrOptions, EvalOptions, ExecutorOptions, ModelOptions, OptimOptions,
                                   RewardOptions, RolloutOptions, TrainConfig)


def load_train_config(paths=(), overrides=()) -> TrainConfig:
    """Defaults <- YAML files (in order) <- `dotted.key=value` overrides."""
    if isinstance(paths, (str, bytes)) or hasattr(paths, "__fspath__"):
        paths = [paths]
    return load(TrainConfig, paths, overrides)


__all__ = ["TrainConfig", "ModelOptions", "RolloutOptions", "AzrOptions", "RewardOptions",
           "OptimOptions", "ExecutorOptions", "EvalOptions", "load_train_config",
           "describe", "to_dict", "parse_override"]
