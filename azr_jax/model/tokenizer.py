"""Tokenizer and stop-token ids of a Hugging Face model folder."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from azr_jax.errors import CheckpointError


def load_tokenizer(path: str | Path) -> Any:
    """transformers' AutoTokenizer for a model folder (chat template included)."""
    from transformers import AutoTokenizer  # deferred: importing transformers takes seconds

    return AutoTokenizer.from_pretrained(str(path))


def eos_token_ids(path: str | Path) -> list[int]:
    """End-of-sequence ids from generation_config.json, else config.json (an int or a list)."""
    for file in ("generation_config.json", "config.json"):
        file_path = Path(path) / file
        if file_path.is_file():
            try:
                eos = json.loads(file_path.read_text(encoding="utf-8")).get("eos_token_id")
            except json.JSONDecodeError as e:
                raise CheckpointError(f"{file_path} is not valid JSON: {e}") from e
            if eos is not None:
                return [eos] if isinstance(eos, int) else [int(i) for i in eos]
    return []
