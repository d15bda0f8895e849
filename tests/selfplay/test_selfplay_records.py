"""The task records and the reference jsonl seed format."""
import json
from pathlib import Path

import pytest

from azr_jax.errors import SeedDataError
from azr_jax.selfplay.records import (IDENTITY_INDUCTION_TASK, ZERO_TRIPLET, InductionTask, Triplet,
                                      read_induction_tasks, read_triplets, write_jsonl)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "selfplay"
IO_SEEDS = FIXTURES / "seed_io_head.jsonl"
CODE_F_SEEDS = FIXTURES / "seed_code_f_head.jsonl"


def test_first_seed_lines_are_the_zero_triplet_and_identity_record():
    first_io = read_triplets(IO_SEEDS, limit=1)[0]
    assert (first_io.snippet, first_io.input, first_io.output, first_io.imports) == (
        ZERO_TRIPLET.snippet, ZERO_TRIPLET.input, ZERO_TRIPLET.output, ())
    first_f = read_induction_tasks(CODE_F_SEEDS, limit=1)[0]
    assert first_f == IDENTITY_INDUCTION_TASK
    assert first_f.num_given == 3
    assert first_f.hidden_pairs == [('(1.1, 1.2, 1.3)', '(1.1, 1.2, 1.3)'),
                                    ('"[[1, 0, 0], [0, 0, 0], [0, 0, 0]]"', '"[[1, 0, 0], [0, 0, 0], [0, 0, 0]]"'),
                                    ("1001101100010001", "1001101100010001")]


@pytest.mark.parametrize("path, parse", [(IO_SEEDS, Triplet.from_json_dict),
                                         (CODE_F_SEEDS, InductionTask.from_json_dict)])
def test_seed_records_round_trip_unchanged(path, parse):
    for line in path.read_text().splitlines():
        data = json.loads(line)
        assert parse(data).to_json_dict() == data


def test_seed_record_fields():
    records = read_triplets(IO_SEEDS)
    assert len(records) == 8
    assert records[3].imports == ("from collections import defaultdict",)
    assert records[3].input == "{'a': 2, 'b': 3}" and records[3].output == "{'a': 4, 'b': 9}"
    assert records[3].extra == {"_input_type": "dict", "_output_type": "dict"}
    tasks = read_induction_tasks(CODE_F_SEEDS)
    assert [len(t.inputs) for t in tasks] == [6, 10, 10, 10]
    assert tasks[1].given_pairs[0] == ("[0, 0, 0, 0, 0, 0]", "0")
    assert tasks[1].hidden_pairs[-1] == ("[-1, 2, 0, -3, -4, 5, -6]", "-7")


def test_induction_split_is_positional():
    task = InductionTask(snippet="def f(a):\n    return a", inputs=tuple("abcdefg"), outputs=tuple("ABCDEFG"),
                         message="m")
    assert task.given_pairs == [("a", "A"), ("b", "B"), ("c", "C")]
    assert task.hidden_pairs == [("d", "D"), ("e", "E"), ("f", "F"), ("g", "G")]


def test_induction_task_rejects_bad_pairs():
    with pytest.raises(SeedDataError, match="3 inputs but 2 outputs"):
        InductionTask(snippet="s", inputs=("1", "2", "3"), outputs=("1", "2"), message="m")
    with pytest.raises(SeedDataError, match="at least 2"):
        InductionTask(snippet="s", inputs=("1",), outputs=("1",), message="m")


def test_write_then_read_back(tmp_path):
    triplet = Triplet(snippet="def f(x):\n    return x * 2", input="3", output="6", imports=("import math",),
                      thought="double it")
    write_jsonl(tmp_path / "io.jsonl", [triplet, ZERO_TRIPLET])
    assert read_triplets(tmp_path / "io.jsonl") == [triplet, ZERO_TRIPLET]
    write_jsonl(tmp_path / "f.jsonl", [IDENTITY_INDUCTION_TASK])
    assert read_induction_tasks(tmp_path / "f.jsonl") == [IDENTITY_INDUCTION_TASK]


def test_limit_and_min_count():
    assert len(read_triplets(IO_SEEDS, limit=3)) == 3
    with pytest.raises(SeedDataError, match=r"seed_io_head.jsonl: 8 records, need at least 64"):
        read_triplets(IO_SEEDS, min_count=64)
    with pytest.raises(SeedDataError, match="not found"):
        read_triplets(FIXTURES / "missing.jsonl")


@pytest.mark.parametrize("bad_line, message", [
    ("{not json", r"bad.jsonl:3: not valid JSON"),
    ('{"snippet": "def f(a): return a", "input": "1"}', r"bad.jsonl:3: missing key 'output'"),
    ('{"snippet": "s", "input": 1, "output": "1"}', r"bad.jsonl:3: key 'input' must be a string, got int"),
    ('{"snippet": "s", "input": "1", "output": "1", "imports": "os"}',
     r"bad.jsonl:3: key 'imports' must be a list of strings"),
    ('["a list"]', r"bad.jsonl:3: record must be a JSON object, got list"),
    ('{"snippet": "s", "input": "1", "output": "1", "composite_functions": [{"snippet": "g"}]}',
     r"bad.jsonl:3: composite functions are not supported"),
])
def test_malformed_line_names_file_and_line(tmp_path, bad_line, message):
    lines = IO_SEEDS.read_text().splitlines()[:2] + [bad_line]
    (tmp_path / "bad.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(SeedDataError, match=message):
        read_triplets(tmp_path / "bad.jsonl")


def test_malformed_induction_record_names_line(tmp_path):
    lines = CODE_F_SEEDS.read_text().splitlines()[:1]
    lines.append(json.dumps({"snippet": "s", "inputs": ["1", "2"], "outputs": ["1"], "message": "m"}))
    (tmp_path / "f.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(SeedDataError, match=r"f.jsonl:2: induction task has 2 inputs but 1 outputs"):
        read_induction_tasks(tmp_path / "f.jsonl")
