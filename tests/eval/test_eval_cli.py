"""`python -m azr_jax.eval`: argument and input errors with exact messages, and end-to-end runs
of a tiny random model (a Hugging Face folder, and the same weights as a run's checkpoint)."""
from __future__ import annotations

import json
import shutil

import jax.numpy as jnp
import pytest
import yaml
from flax import nnx

from azr_jax.checkpoint import CheckpointStore
from azr_jax.config import load_train_config
from azr_jax.eval.cli import main
from azr_jax.model import load_hf
from azr_jax.typed_config import to_dict

from eval_testlib import CRUXEVAL, DATA, HUMANEVAL, build_tiny_chat_model

EMBEDDED = "embedded:smollm2-135m-instruct"


def _error(capsys, argv) -> str:
    """stderr of a run that must fail with exit status 2 (argparse exits, main returns)."""
    try:
        status = main(argv)
    except SystemExit as exit_:
        status = exit_.code
    assert status == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("argv, message", [
    (["--benchmark", "mbpp"], "argument --benchmark: unknown benchmark 'mbpp'; expected one of: cruxeval-o, "
                              "cruxeval-i, humaneval, mbpp+, aime24, aime25, amc23, math500, minerva, olympiadbench, "
                              "gsm8k, or all"),
    (["--benchmark", "cruxeval-o"], "cruxeval-o needs its data file: --data FILE or --data-dir DIR"),
    (["--benchmark", "math500,gsm8k", "--data", "x.jsonl"], "--data names one benchmark's file; use --data-dir for "
                                                           "several"),
    (["--benchmark", "humaneval", "--every-checkpoint", "--step", "2"],
     "--every-checkpoint and --step exclude each other"),
    (["--benchmark", "humaneval", "--limit", "0"], "argument --limit: must be a positive integer, got '0'"),
    (["--benchmark", "humaneval", "--limit", "ten"], "argument --limit: must be a positive integer, got 'ten'"),
    (["--benchmark", "humaneval", "--n-samples", "4"],
     "--n-samples > 1 needs --temperature > 0 (greedy samples are all the same)"),
    (["--benchmark", "humaneval", "--temperature", "-1"], "argument --temperature: must be a number >= 0, got '-1'"),
    (["--benchmark", "humaneval", "--top-p", "0"], "argument --top-p: must be in (0, 1], got '0'"),
])
def test_argument_errors(capsys, argv, message):
    # A model that does not exist: were an argument wrongly accepted, the run fails fast, not loads a model.
    assert _error(capsys, ["--model", "/nonexistent", *argv]) == f"python -m azr_jax.eval: error: {message}"


def test_input_errors(capsys, tmp_path):
    crux = ["--benchmark", "cruxeval-o", "--data", str(CRUXEVAL), "--out-dir", str(tmp_path / "out")]
    assert _error(capsys, ["--model", "/nonexistent/model", *crux]) == (
        "error: model not found: /nonexistent/model (expected a Hugging Face folder with config.json, an azr-jax "
        "run folder with config.yaml, a checkpoint folder RUN/checkpoints/STEP, or embedded:smollm2-135m-instruct)")
    assert _error(capsys, ["--model", "/m", "--benchmark", "cruxeval-o", "--data", "/nonexistent/c.jsonl"]) == (
        "error: /nonexistent/c.jsonl: benchmark data file not found")
    assert _error(capsys, ["--model", "embedded:llama-1t", *crux]) == (
        "error: unknown embedded model 'llama-1t'; available: embedded:smollm2-135m-instruct")
    assert _error(capsys, ["--model", EMBEDDED, "--step", "3", *crux]) == (
        "error: --step applies to azr-jax run folders only")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("steps: 1\n")
    assert _error(capsys, ["--model", str(tmp_path / "run"), *crux]) == (
        f"error: {tmp_path / 'run'} holds no checkpoints (nothing in {tmp_path / 'run' / 'checkpoints'})")
    assert _error(capsys, ["--model", str(tmp_path / "run"), "--every-checkpoint", *crux]) == (
        f"error: {tmp_path / 'run'} holds no checkpoints (nothing in {tmp_path / 'run' / 'checkpoints'})")
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny_chat") / "model")


def _run(folder_or_run, out_dir, benchmark, *extra, label=None) -> tuple[dict, list[dict]]:
    argv = ["--model", str(folder_or_run), "--limit", "3", "--max-new-tokens", "6", "--max-batch", "8",
            "--workers", "2", "--timeout-s", "2", "--no-progress", "--out-dir", str(out_dir), "--benchmark", benchmark,
            *extra]
    assert main(argv) == 0
    folder = out_dir / (label or folder_or_run.name)
    records = [json.loads(line) for line in (folder / f"{benchmark}.jsonl").read_text().splitlines()]
    return json.loads((folder / f"{benchmark}.summary.json").read_text()), records


def _check_consistent(summary: dict, records: list[dict], n: int) -> None:
    assert summary["tasks"] == len(records) and summary["n_samples"] == n
    for record in records:
        assert set(record) == {"task_id", "benchmark", "prompt", "reference", "responses", "answers", "passed",
                               "failures", "finish_reasons", "response_tokens", "num_correct", "num_samples"}
        assert len(record["responses"]) == len(record["passed"]) == len(record["failures"]) == n
        assert record["num_correct"] == sum(record["passed"])
        assert all((f is None) == p for f, p in zip(record["failures"], record["passed"]))
        assert all(1 <= t <= 6 for t in record["response_tokens"])
        assert set(record["finish_reasons"]) <= {"stop", "length"}
    metrics = summary["metrics"]
    assert 0.0 <= metrics["pass@1"] <= 1.0
    assert metrics["pass@1"] == pytest.approx(sum(r["num_correct"] / n for r in records) / len(records))
    assert metrics["tasks"] == len(records) and metrics["time_s"] > 0


@pytest.fixture(scope="module")
def hf_run(tiny_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("hf_run")
    return _run(tiny_folder, out, "cruxeval-i", "--data", str(CRUXEVAL))


def test_hf_folder_end_to_end(hf_run, tiny_folder):
    summary, records = hf_run
    _check_consistent(summary, records, n=1)
    assert summary["prompt_template"] == "chat" and summary["checkpoint_step"] is None   # the tokenizer has one
    assert [r["task_id"] for r in records] == ["sample_0", "sample_1", "sample_3"]
    assert records[0]["prompt"].startswith("<|im_start|>user\n") and records[0]["prompt"].endswith("<think>")
    assert records[0]["reference"] == "[1, 1, 3, 1, 3, 1]"


def _make_run(run, tiny_folder, steps):
    """A run folder of the tiny model whose checkpoints all hold its own weights."""
    cfg = load_train_config(overrides=[f"model.path={tiny_folder}", "model.prompt_template=r1"])
    (run / "base_model").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg)))
    for file in tiny_folder.iterdir():
        if file.suffix != ".safetensors":
            shutil.copyfile(file, run / "base_model" / file.name)
    _, params = nnx.split(load_hf(tiny_folder), nnx.Param)
    store = CheckpointStore(run / "checkpoints", keep=len(steps))
    for step in steps:
        store.save(step, params=params, opt_state={"count": jnp.zeros((), jnp.int32)}, state={"step": step})
    store.close()
    return run


def test_run_checkpoint_end_to_end(hf_run, tiny_folder, tmp_path):
    """A run folder holding the same weights as a checkpoint answers exactly as the HF folder."""
    run = _make_run(tmp_path / "run", tiny_folder, [3])

    out = tmp_path / "out"
    summary, records = _run(run / "checkpoints" / "3", out, "cruxeval-i", "--data", str(CRUXEVAL),
                            "--prompt-template", "chat", label="run-step3")
    assert summary["checkpoint_step"] == 3
    assert [r["responses"] for r in records] == [r["responses"] for r in hf_run[1]]
    summary, records = _run(run, out, "humaneval", "--data", str(HUMANEVAL), "--n-samples", "2",
                            "--temperature", "1.0", "--limit", "2", label="run-step3")
    _check_consistent(summary, records, n=2)
    assert summary["prompt_template"] == "r1"   # the run's own
    assert records[0]["prompt"] == json.loads(HUMANEVAL.read_text().splitlines()[0])["prompt"]
    assert set(summary["metrics"]) >= {"pass@1", "pass@2"} and 0 <= summary["metrics"]["pass@2"] <= 1
    # Random tokens never pass HumanEval's tests.
    assert {f["kind"] for r in records for f in r["failures"]} <= {"exception", "syntax", "no_answer"}


def test_every_checkpoint_tables_and_resuming(tiny_folder, tmp_path, monkeypatch, capsys):
    """A run's base model and each checkpoint on several benchmarks: per-model tables with the
    domain averages and a side-by-side comparison; a second call finds everything done and loads
    no model."""
    run = _make_run(tmp_path / "run", tiny_folder, [1, 2])
    out = tmp_path / "out"
    argv = ["--model", str(run), "--every-checkpoint", "--benchmark", "gsm8k,mbpp+", "--benchmark", "humaneval",
            "--data-dir", str(DATA), "--limit", "2", "--max-new-tokens", "4", "--max-batch", "8", "--workers", "2",
            "--timeout-s", "5", "--no-progress", "--out-dir", str(out)]
    assert main(argv) == 0
    for label in ("base", "step1", "step2"):
        table = json.loads((out / label / "results.json").read_text())
        assert [row["benchmark"] for row in table["benchmarks"]] == ["gsm8k", "mbpp+", "humaneval"]
        assert all(row["tasks"] == 2 and row["truncated"] <= 2 for row in table["benchmarks"])
        assert set(table["averages"]) == {"code avg"}   # GSM8K is no part of the math average
        summary = json.loads((out / label / "mbpp+.summary.json").read_text())
        assert summary["prompt_template"] == "r1" and "base/pass@1" in summary["metrics"]
        assert (out / label / "results.md").read_text().startswith(f"# {label}\n")
    comparison = (out / "comparison.md").read_text().splitlines()
    assert comparison[2] == "| benchmark | base | step1 | step2 |"
    assert [line.split(" |")[0] for line in comparison[4:]] == ["| gsm8k", "| mbpp+", "| humaneval", "| **code avg**"]
    capsys.readouterr()

    def no_model(*args, **kwargs):
        raise AssertionError("a finished benchmark was run again")
    monkeypatch.setattr("azr_jax.eval.cli.load_model", no_model)
    assert main(argv) == 0
    assert capsys.readouterr().out.count("done earlier") == 9
