"""Helpers of the evaluation tests: the small benchmark files and a scripted sampler that
answers with canned responses through the real Sampler interface."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from azr_jax.sampling import Sample, SampleBatch
from stream_testlib import ScriptedSampler as StreamOfGenerate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "eval"
DATA = FIXTURES / "data"     # a few rows of each benchmark, laid out as the shared data folder
CRUXEVAL = DATA / "cruxeval.jsonl"      # sample_0, sample_1, sample_3, sample_5 of CRUXEval
HUMANEVAL = FIXTURES / "humaneval_head.jsonl"    # HumanEval/0, /2 and /38 (its tests use a prompt helper)


class CharTokenizer:
    """One token per character, so prompts and responses round-trip exactly; a toy chat template."""

    chat_template = "toy"

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids) -> str:
        return "".join(chr(i) for i in ids)

    def apply_chat_template(self, messages, tokenize: bool = False, add_generation_prompt: bool = False) -> str:
        text = "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")


class ScriptedSampler(StreamOfGenerate):
    """`generate` answers `respond(prompt_text, sample_index)`; records each call's prompts (a
    stream step answers every request submitted since the last one in one call)."""

    def __init__(self, respond: Callable[[str, int], str], *, max_batch: int = 8, max_length: int = 100_000):
        self.respond, self.max_batch, self.max_length = respond, max_batch, max_length
        self.tokenizer = CharTokenizer()
        self.calls: list[list[str]] = []

    def generate(self, prompts, params) -> SampleBatch:
        texts = [self.tokenizer.decode(p) for p in prompts]
        self.calls.append(texts)
        samples = []
        for i, text in enumerate(texts):
            for j in range(params.n):
                response = self.respond(text, j)
                tokens = np.asarray(self.tokenizer.encode(response)[:params.max_new_tokens], np.int32)
                samples.append(Sample(prompt_index=i, tokens=tokens, logprobs=np.zeros(len(tokens), np.float32),
                                      text=self.tokenizer.decode(tokens), finish_reason="stop"))
        return SampleBatch(tuple(samples), params.n)


CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def build_tiny_chat_model(folder: Path) -> Path:
    """A tiny random Llama with a byte-level tokenizer (any text encodes; 256 bytes + 3
    specials) and a chat template: a model folder the CLI loads like any other."""
    import sys

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))
    from model_testlib import build_tiny

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokenizer = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])   # ids 256-258
    build_tiny("llama", folder, vocab_size=264, max_position_embeddings=4096, eos_token_id=258)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>",
                            chat_template=CHAT_TEMPLATE).save_pretrained(folder)
    return folder
