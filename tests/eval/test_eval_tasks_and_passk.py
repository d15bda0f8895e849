"""Benchmark files (reading, caching, errors) and the pass@k estimator."""
from __future__ import annotations

import gzip
import itertools
import json
import os
import shutil

import pytest

from azr_jax.errors import BenchmarkDataError, ConfigError
from azr_jax.eval import load_tasks, pass_at_k
from azr_jax.eval.passk import mean_pass_at_k, reported_ks
from azr_jax.eval.tasks import CruxEvalTask, HumanEvalTask

from eval_testlib import CRUXEVAL, HUMANEVAL


def test_cruxeval_rows_become_tasks_and_solver_triplets():
    tasks = load_tasks("cruxeval-o", CRUXEVAL)
    assert [t.task_id for t in tasks] == ["sample_0", "sample_1", "sample_3", "sample_5"]
    assert tasks[1] == CruxEvalTask("sample_1", "def f(a, b, c):\n    result = {}\n    for d in a, b, c:\n"
                                    "        result.update(dict.fromkeys(d))\n    return result",
                                    "(1, ), (1, ), (1, 2)", "{1: None, 2: None}")
    triplet = tasks[1].triplet()
    assert (triplet.snippet, triplet.input, triplet.output) == (tasks[1].code, tasks[1].input, tasks[1].output)
    assert [t.task_id for t in load_tasks("cruxeval-i", CRUXEVAL, limit=2)] == ["sample_0", "sample_1"]


def test_humaneval_defaults_to_the_package_file_and_reads_gzip():
    tasks = load_tasks("humaneval")
    assert len(tasks) == 164 and tasks[0].task_id == "HumanEval/0" and tasks[0].entry_point == "has_close_elements"
    mine = load_tasks("humaneval", HUMANEVAL)
    assert [t.task_id for t in mine] == ["HumanEval/0", "HumanEval/2", "HumanEval/38"]
    assert mine[1] == tasks[2] and isinstance(mine[1], HumanEvalTask)
    assert mine[1].canonical_solution == "    return number % 1.0\n"


def test_tasks_are_read_once_and_again_after_the_file_changes(tmp_path):
    path = tmp_path / "crux.jsonl"
    shutil.copyfile(CRUXEVAL, path)
    first = load_tasks("cruxeval-o", path)
    assert load_tasks("cruxeval-o", path) is first
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:2]))
    os.utime(path, ns=(1, 1))   # a distinct modification time, however fast the file system
    assert len(load_tasks("cruxeval-o", path)) == 2


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.mark.parametrize("lines, message", [
    (['{"code": "def f(x): return x", "input": "1", "output": "1", "id": "a"}', "{oops"],
     ":2: not valid JSON (Expecting property name enclosed in double quotes)"),
    (['{"code": "def f(x): return x", "input": "1", "output": "1"}'], ":1: missing key 'id'"),
    (['{"code": "def f(x): return x", "input": 1, "output": "1", "id": "a"}'], ":1: key 'input' must be a string, got int"),
    (['[1, 2]'], ":1: expected a JSON object, got list"),
    (['{"code": "c", "input": "1", "output": "1", "id": "a"}'] * 2, ": task id 'a' appears more than once"),
    (["", "  "], ": no tasks in the file"),
])
def test_malformed_cruxeval_files_name_file_and_line(tmp_path, lines, message):
    path = _write(tmp_path / "bad.jsonl", lines)
    with pytest.raises(BenchmarkDataError) as info:
        load_tasks("cruxeval-o", path)
    assert str(info.value) == f"{path}{message}"


def test_other_bad_inputs(tmp_path):
    with pytest.raises(BenchmarkDataError, match=r"^/nonexistent/c.jsonl: benchmark data file not found$"):
        load_tasks("cruxeval-i", "/nonexistent/c.jsonl")
    with pytest.raises(ConfigError, match=r"^unknown benchmark 'mbpp'; expected one of: cruxeval-o, cruxeval-i, "
                                          r"humaneval, mbpp\+, aime24, aime25, amc23, math500, minerva, olympiadbench, "
                                          r"gsm8k$"):
        load_tasks("mbpp", CRUXEVAL)
    with pytest.raises(ConfigError, match="^cruxeval-o needs the path of its data file$"):
        load_tasks("cruxeval-o")
    with pytest.raises(ConfigError, match="^limit must be a positive integer or None, got 0$"):
        load_tasks("cruxeval-o", CRUXEVAL, limit=0)
    bad_entry = dict(json.loads(HUMANEVAL.read_text().splitlines()[0]), entry_point="not a name")
    path = tmp_path / "he.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(json.dumps(bad_entry) + "\n")
    with pytest.raises(BenchmarkDataError, match=r":1: entry_point must be a Python identifier, got 'not a name'$"):
        load_tasks("humaneval", path)
    (tmp_path / "fake.gz").write_text("not gzip")
    with pytest.raises(BenchmarkDataError, match="fake.gz: cannot be read as UTF-8 jsonl"):
        load_tasks("humaneval", tmp_path / "fake.gz")


# --- pass@k ---------------------------------------------------------------------------------

def _brute_force(n: int, c: int, k: int) -> float:
    """Fraction of the k-subsets of n samples (the first c correct) holding a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in subset) for subset in subsets) / len(subsets)


def test_pass_at_k_equals_the_brute_force_count():
    for n in range(1, 8):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(_brute_force(n, c, k), abs=1e-12), (n, c, k)


def test_pass_at_k_closed_forms_and_large_n():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 0, 10) == 0.0 and pass_at_k(10, 1, 10) == 1.0
    assert pass_at_k(200, 2, 100) == pytest.approx(1 - (100 * 99) / (200 * 199))   # C(198,100)/C(200,100)
    assert pass_at_k(1000, 1, 1) == pytest.approx(0.001)


@pytest.mark.parametrize("args, message", [
    ((3, 4, 1), "need 0 <= c <= n, got n=3, c=4"),
    ((3, 1, 4), "need 1 <= k <= n, got n=3, k=4"),
    ((3, 1, 0), "need 1 <= k <= n, got n=3, k=0"),
    ((3.0, 1, 1), "n must be an integer, got 3.0"),
])
def test_pass_at_k_rejects_impossible_counts(args, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        pass_at_k(*args)


def test_reported_ks_and_benchmark_mean():
    assert reported_ks(1) == [1] and reported_ks(2) == [1, 2] and reported_ks(10) == [1, 5, 10]
    assert reported_ks(200) == [1, 5, 10, 100, 200]
    assert mean_pass_at_k([0, 1, 2], 2, 1) == pytest.approx(0.5)
    assert mean_pass_at_k([0, 1, 2], 2, 2) == pytest.approx(2 / 3)


def test_every_benchmark_reads_its_file_in_a_data_folder():
    """The fixture data folder has the shared data's layout; each math layout gives problem and gold."""
    from azr_jax.eval.tasks import BENCHMARKS, data_file
    from eval_testlib import DATA

    expected = {"aime24": "204", "aime25": "70", "amc23": "27", "math500": "\\left( 3, \\frac{\\pi}{2} \\right)",
                "minerva": "1.6", "olympiadbench": "2", "gsm8k": "18"}
    for benchmark in BENCHMARKS:
        path = data_file(benchmark, DATA)
        assert (path is None) == (benchmark == "humaneval")
        tasks = load_tasks(benchmark, path)
        if benchmark in expected:
            assert tasks[0].answer == expected[benchmark] and tasks[0].problem
    olympiad = load_tasks("olympiadbench", data_file("olympiadbench", DATA))
    assert olympiad[1].answer == "\\angle B E A_{1}=90,\\angle A E B_{1}=90"   # "$a$,$b$": both parts
    assert olympiad[3].answer == "(-\\infty, 0) \\cup\\{1\\}"                 # "$...$." cleaned
    assert load_tasks("gsm8k", data_file("gsm8k", DATA))[2].answer.isdigit()   # "1,000" -> "1000"


def test_mbpp_files_are_checked(tmp_path):
    row = {"task_id": "Mbpp/1", "prompt": "p", "entry_point": "f", "canonical_solution": "def f(x):\n  return x",
           "assertion": "assert f((1, 2)) == (1, 2)", "base_input": [[[1, 2]]], "plus_input": {}, "atol": 0}
    [task] = load_tasks("mbpp+", _write(tmp_path / "ok.jsonl", [json.dumps(row)]))
    assert task.base_inputs == (((1, 2),),) and task.plus_inputs == ()
    for key, value, message in [("base_input", [1], "'base_input' must be a list of argument lists"),
                                ("atol", -1, "'atol' must be a number >= 0, got -1"),
                                ("entry_point", "1f", "entry_point must be a Python identifier, got '1f'")]:
        path = _write(tmp_path / f"{key}.jsonl", [json.dumps({**row, key: value})])
        with pytest.raises(BenchmarkDataError, match=f"^{path}:1: {message}$"):
            load_tasks("mbpp+", path)
