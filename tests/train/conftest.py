"""Fixtures of the training-run tests: a tiny random Llama that speaks SmolLM2's tokenizer, and a
small run config around it."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))

from model_testlib import build_tiny, converted_smollm2  # noqa: E402

from azr_jax.model.hf_export import GENERATION_CONFIG, TOKENIZER_FILES  # noqa: E402


@pytest.fixture(scope="session")
def tiny_policy(tmp_path_factory) -> Path:
    """A 2-layer random Llama with SmolLM2's vocabulary, tokenizer and generation config: real
    prompts tokenize as in a real run, while the model stays fast."""
    smollm2 = converted_smollm2(tmp_path_factory)
    folder = build_tiny("llama", tmp_path_factory.mktemp("tiny_policy") / "model", vocab_size=49152,
                        max_position_embeddings=4096, bos_token_id=1, eos_token_id=2)
    for name in (GENERATION_CONFIG, *TOKENIZER_FILES):
        if (smollm2 / name).is_file():
            shutil.copyfile(smollm2 / name, folder / name)
    return folder


def write_run_config(path: Path, model: Path, out_dir: Path, model_options: dict | None = None, **top) -> Path:
    """A run small enough for a test: 2 tasks per group (1 logged to samples.jsonl), 16-token
    responses, 2 devices, a 2-task CRUXEval-O evaluation at step 2. `model_options`: more `model.*`
    keys; `top`: top-level sections that replace the defaults."""
    config = {
        "model": {"path": str(model), "prompt_template": "chat", "remat": False, **(model_options or {})},
        "mesh": {"data": 1, "fsdp": 2, "tensor": 1},
        "out_dir": str(out_dir), "steps": 3, "checkpoint_every": 1, "keep_checkpoints": 2,
        "tensorboard": False, "progress": False, "log_samples": 1,
        "rollout": {"max_prompt_tokens": 1024, "max_new_tokens": 16, "max_batch": 16},
        "azr": {"batch_size": 2, "num_references": 1, "learnability_samples": 2,
                "seeding": {"batch_size": 2, "max_rounds": 1}},
        # Two epochs of two mini-batches, a KL penalty and a schedule: resuming must repeat them exactly.
        "optim": {"micro_batch_size": 2, "lr": 1e-3, "ppo_epochs": 2, "mini_batches": 2, "kl_coef": 0.05,
                  "lr_schedule": "cosine", "warmup_steps": 1},
        "executor": {"workers": 2, "timeout_s": 5},
        "eval": {"every_n_steps": 2, "benchmarks": ["cruxeval-o"], "limit": 2, "max_new_tokens": 8,
                 "cruxeval_path": str(Path(__file__).resolve().parents[1] / "fixtures" / "eval" / "data" / "cruxeval.jsonl")},
        **top,
    }
    path.write_text(yaml.safe_dump(config))
    return path
