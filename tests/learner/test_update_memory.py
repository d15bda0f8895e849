"""The update's memory from XLA's compiled memory analysis: what it counts, the longest row that
fits, the refusal."""
import jax
import optax
import pytest
from flax import nnx

from azr_jax.errors import ConfigError
from azr_jax.learner.memory import (MicroBatchShape, check_update_fits, longest_row, update_memory,
                                    worst_micro_batch)
from azr_jax.learner.step import LossConfig, TrainStep
from azr_jax.model import MeshConfig, ModelConfig, Transformer, make_mesh, shard_model

TINY = dict(architectures=["Qwen2ForCausalLM"], model_type="qwen2", vocab_size=96, hidden_size=32,
            intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=4096, rope_theta=10000.0, tie_word_embeddings=False)


def _step(mesh=None):
    model = Transformer(ModelConfig.from_hf_dict(TINY), rngs=nnx.Rngs(0))
    if mesh is not None:
        model = shard_model(model, mesh)
    step = TrainStep(model, optax.adamw(1e-3), LossConfig(logprob_chunk=64), mesh)
    params = nnx.split(model, nnx.Param)[1]
    return step, params, step.init_optimizer(params)


def _bytes(tree):
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))


def test_resident_memory_is_parameters_float32_gradients_and_optimizer_state():
    step, params, opt_state = _step()
    memory = update_memory(step, params, opt_state, MicroBatchShape(rows=1, length=128, window=128, max_segment=128))
    assert memory.resident == 2 * _bytes(params) + _bytes(opt_state)  # float32 params: gradients the same size
    assert memory.program > 0 and memory.peak == memory.resident + memory.program


def test_memory_grows_with_the_micro_batch_and_sharding_divides_it():
    step, params, opt_state = _step()
    small, large = (update_memory(step, params, opt_state, MicroBatchShape(rows, 256, 256, 256)).program
                    for rows in (1, 4))
    assert large > 3 * small
    mesh = make_mesh(MeshConfig(data=1, fsdp=-1, tensor=1))  # all 8 simulated devices
    step8, params8, opt8 = _step(mesh)
    sharded = update_memory(step8, params8, opt8, MicroBatchShape(8, 256, 256, 256))
    assert sharded.program < 2 * small  # eight rows over eight devices: about one row each
    # fsdp shards the weight matrices (not the small norms and biases) over the devices
    assert sharded.resident < 0.7 * update_memory(step, params, opt_state, MicroBatchShape(1, 256, 256, 256)).resident


def test_longest_row_is_the_longest_ladder_length_that_fits():
    step, params, opt_state = _step()
    peak = {n: update_memory(step, params, opt_state, MicroBatchShape(1, n, n, n)).peak for n in (768, 960)}
    assert peak[768] < peak[960]
    assert longest_row(step, params, opt_state, (peak[768] + peak[960]) // 2, max_length=4096) == 768
    assert longest_row(step, params, opt_state, 1000, max_length=4096) == 0  # not even 128 tokens


def test_the_worst_micro_batch_and_the_refusal_message():
    shape = worst_micro_batch(max_sequence=1000, tokens_per_device=4096, row_devices=2)
    # 3 rows of 1216 per device, every position a loss position at most (responses sharing a prompt)
    assert shape == MicroBatchShape(rows=6, length=1216, window=3 * 1216, max_segment=1216)
    # a row longer than the budget: one per device
    assert worst_micro_batch(max_sequence=5000, tokens_per_device=4096, row_devices=1).rows == 1
    step, params, opt_state = _step()
    shape = MicroBatchShape(1, 256, 128, 256)
    need = check_update_fits(step, params, opt_state, shape, memory_bytes=None, hint="x")
    assert check_update_fits(step, params, opt_state, shape, memory_bytes=need.peak, hint="x") == need
    with pytest.raises(ConfigError, match=r"largest micro-batch \(1 rows x 256 tokens\) needs \d+\.\d MiB per device "
                                          r"\(\d+\.\d MiB parameters, .* the device has \d+\.\d MiB; lower the budget"):
        check_update_fits(step, params, opt_state, shape, memory_bytes=need.peak - 1, hint="lower the budget")
