"""The sampler against transformers: greedy tokens equal `generate`, and returned logprobs equal
a teacher-forced forward pass of transformers over prompt + output."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from azr_jax.model import load_hf, load_tokenizer
from azr_jax.sampling import Sampler, SamplingParams
from sampling_testlib import one_torch_thread, random_prompts, teacher_forced_logprobs

MODELS = ["llama", "qwen2", "qwen3"]
EOS = 2
NEW_TOKENS = 24
LENGTHS = [5, 13, 1, 21, 8]  # one prompt-length bucket (24), mixed lengths


@pytest.fixture(scope="module")
def tiny(tiny_checkpoints):
    """(sampler, transformers model) per architecture."""
    return {name: (Sampler(load_hf(tiny_checkpoints[name].path), None, eos_token_ids=(EOS,), max_batch=16),
                   tiny_checkpoints[name].torch_model()) for name in MODELS}


@pytest.mark.parametrize("name", MODELS)
def test_greedy_tokens_equal_transformers_generate(tiny, name):
    sampler, hf = tiny[name]
    prompts = random_prompts(sampler.model.config.vocab_size, LENGTHS, seed=1)
    batch = sampler.generate(prompts, SamplingParams(NEW_TOKENS, temperature=0.0))
    assert [s.prompt_index for s in batch] == list(range(len(prompts)))
    for prompt, sample in zip(prompts, batch):
        with torch.no_grad(), one_torch_thread():
            ref = hf.generate(torch.tensor([prompt]), max_new_tokens=NEW_TOKENS, do_sample=False,
                              eos_token_id=EOS, pad_token_id=0)[0, len(prompt):].tolist()
        assert sample.tokens.tolist() == ref
        assert sample.length == len(ref)
        assert sample.finish_reason == ("stop" if ref[-1] == EOS else "length")
        assert sample.tokens.dtype == np.int32 and sample.logprobs.dtype == np.float32
        # Greedy returns T = 1 logprobs.
        assert np.abs(sample.logprobs - teacher_forced_logprobs(hf, prompt, sample.tokens, 1.0)).max() <= 1e-4


@pytest.mark.parametrize("name", MODELS)
def test_sampled_logprobs_are_the_unfiltered_tempered_distribution(tiny, name):
    """At T != 1 with top-k and top-p on, each logprob is log_softmax(logits / T) of the full
    distribution, as a teacher-forced forward pass computes it."""
    sampler, hf = tiny[name]
    prompts = random_prompts(sampler.model.config.vocab_size, LENGTHS, seed=2)
    params = SamplingParams(NEW_TOKENS, temperature=0.7, top_p=0.9, top_k=20, n=2, seed=5)
    batch = sampler.generate(prompts, params)
    assert len(batch) == 2 * len(prompts)
    for sample in batch:
        expected = teacher_forced_logprobs(hf, prompts[sample.prompt_index], sample.tokens, params.temperature)
        assert np.abs(sample.logprobs - expected).max() <= 1e-4


SMOLLM2_QUESTIONS = [
    "Write a Python function that returns the sum of a list of numbers.",
    "What is 2 + 2?",
    "Explain in one sentence what a Python dictionary is, then give an example of creating one with three keys.",
]


def test_smollm2_greedy_64_tokens_equal_transformers(smollm2_folder):
    from transformers import AutoModelForCausalLM

    tok = load_tokenizer(smollm2_folder)
    sampler = Sampler(load_hf(smollm2_folder), tok, max_batch=4)
    assert sampler.eos_token_ids == (2,)  # from the folder's generation_config.json
    prompts = [tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True)["input_ids"]
               for q in SMOLLM2_QUESTIONS]
    assert len({len(p) for p in prompts}) == 3
    batch = sampler.generate(prompts, SamplingParams(64, temperature=0.0))

    hf = AutoModelForCausalLM.from_pretrained(smollm2_folder, dtype=torch.float32).eval()
    tok.padding_side = "left"
    padded = tok.pad({"input_ids": prompts}, return_tensors="pt")
    with torch.no_grad(), one_torch_thread():
        ref = hf.generate(**padded, max_new_tokens=64, do_sample=False)[:, padded["input_ids"].shape[1]:].tolist()
    for prompt, sample, row in zip(prompts, batch, ref):
        expected = row[:row.index(2) + 1] if 2 in row else row  # transformers pads finished rows with EOS
        assert sample.tokens.tolist() == expected
        assert sample.finish_reason == ("stop" if expected[-1] == 2 else "length")
        assert sample.text == tok.decode(expected, skip_special_tokens=True)
        # Real weights, 30 layers: logits agree with transformers to 1e-3 (the model tests' bound).
        assert np.abs(sample.logprobs - teacher_forced_logprobs(hf, prompt, sample.tokens, 0.0)).max() <= 1e-3
    assert batch[0].text.startswith("```python\ndef sum_list(numbers):\n    return sum(numbers)")
    assert [s.finish_reason for s in batch] == ["length", "stop", "stop"]
