import json
from pathlib import Path

from azr_jax.distributed import allgather_json, host_map


def test_single_process_is_a_plain_call():
    assert host_map(lambda xs: [x + 1 for x in xs], [1, 2, 3]) == [2, 3, 4]
    assert allgather_json({"a": 1}) == [{"a": 1}]


def test_two_processes_split_the_work_and_both_get_everything(tmp_path, spawn_processes):
    spawn_processes(Path(__file__).with_name("distributed_worker.py"), tmp_path)
    out = [json.loads((tmp_path / f"result{i}.json").read_text()) for i in range(2)]
    assert out[0]["seen"] == [0, 2, 4, 6] and out[1]["seen"] == [1, 3, 5]  # each runs its own share
    expected = [{"x": x, "sq": x * x, "who": x % 2} for x in range(7)]
    assert out[0]["results"] == expected and out[1]["results"] == expected
    assert out[0]["gathered"] == out[1]["gathered"] == [{"process": 0, "text": "é"}, {"process": 1, "text": "éé"}]
