"""Folders appear complete or not at all, and concurrent writers of the same folder are safe."""
from __future__ import annotations

import os

import pytest

from azr_jax.errors import CheckpointError
from azr_jax.model import DEFAULT_MODEL, embedded, resolve_model_path
from azr_jax.model.atomic_dir import atomic_directory


def test_published_only_on_success(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_directory(target) as tmp:
            (tmp / "half.bin").write_text("x")
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    with atomic_directory(target) as tmp:
        (tmp / "done.bin").write_text("x")
    assert os.listdir(tmp_path) == ["out"] and os.listdir(target) == ["done.bin"]
    assert oct(target.stat().st_mode & 0o777) == "0o755"


def test_losing_a_race_keeps_the_winner(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(CheckpointError, match="was created by another process while it was being written"):
        with atomic_directory(target) as tmp:
            (tmp / "mine").write_text("mine")
            target.mkdir()  # another process publishes first
            (target / "theirs").write_text("theirs")
    assert os.listdir(target) == ["theirs"] and os.listdir(tmp_path) == ["out"]


def test_concurrent_embedded_conversion_uses_the_first_result(tmp_path, monkeypatch):
    """Two processes converting at once: the one that loses the rename uses the winner's folder."""
    def convert_while_another_process_wins(gguf_file, out_dir):
        (out_dir / "config.json").write_text("{}")
        winner = tmp_path / "models" / f"smollm2-135m-instruct-v{embedded.CONVERSION_VERSION}"
        winner.mkdir(parents=True)
        (winner / "config.json").write_text('{"winner": true}')

    monkeypatch.setattr(embedded, "convert_gguf", convert_while_another_process_wins)
    path = resolve_model_path(DEFAULT_MODEL, cache_dir=tmp_path)
    assert (path / "config.json").read_text() == '{"winner": true}'
    assert sorted(os.listdir(path.parent)) == [path.name]  # our temporary folder is gone


def test_write_atomic_publishes_a_whole_readable_file_or_nothing(tmp_path):
    from azr_jax.model.atomic_dir import write_atomic

    target = tmp_path / "out" / "records.jsonl"
    write_atomic(target, ["a\n", "b\n"])
    assert target.read_text() == "a\nb\n" and (target.stat().st_mode & 0o777) == 0o644

    def failing():
        yield "partial\n"
        raise RuntimeError("crashed while writing")

    with pytest.raises(RuntimeError):
        write_atomic(target, failing())
    assert target.read_text() == "a\nb\n"  # the old file stays whole
    assert sorted(p.name for p in target.parent.iterdir()) == ["records.jsonl"]  # no temporary left
