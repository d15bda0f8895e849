"""What every command line (`python -m azr_jax.train|eval|export|plot`) does the same way.

Log lines go to stderr with a timestamp; library errors (`AzrError`: bad config, missing or
damaged files, refused programs) end the command with `error: <message>` and exit status 2,
never a traceback; Ctrl-C ends it with status 130 after the command's own clean-up has run.
Flags that set something the training config also sets are spelled after its keys
(`--max-new-tokens` for `eval.max_new_tokens`, `--timeout-s` for `executor.timeout_s`).
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from azr_jax.errors import AzrError

EXIT_ERROR, EXIT_INTERRUPTED = 2, 130


def run_command(body: Callable[[], int | None]) -> int:
    """Run a command's body under the shared logging and error handling; its exit status."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # orbax's per-save chatter, the TPU probe on CPU hosts, matplotlib's font cache
    for chatty in ("absl", "jax._src.xla_bridge", "matplotlib"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        return body() or 0
    except AzrError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
