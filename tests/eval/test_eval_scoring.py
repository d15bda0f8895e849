"""Scoring on canned responses whose scores are known: right, wrong, malformed and hostile
answers, through `evaluate` with a scripted sampler and the real sandboxed executor."""
from __future__ import annotations

import pytest

from azr_jax.config import EvalOptions
from azr_jax.eval import evaluate, load_tasks, run_benchmarks
from azr_jax.eval.benchmarks import HUMANEVAL_REQUEST, humaneval_solution
from azr_jax.sampling import SamplingParams
from azr_jax.selfplay.prompts import ChatTemplate, R1Template, solve_abduction_prompt, solve_deduction_prompt

from eval_testlib import CRUXEVAL, HUMANEVAL, CharTokenizer, ScriptedSampler

F = "```"


def answer(text: str) -> str:
    """An R1-format response (the prompt opened <think>) whose answer is `text`."""
    return f" Tracing the code.</think>\n<answer>\n{text}\n</answer>"


def scripted(script: dict[str, list[str]], **kwargs) -> ScriptedSampler:
    """Responses keyed by a text that identifies the task in its prompt, one per sample index
    (the last one repeated for later samples)."""
    def respond(prompt: str, j: int) -> str:
        [key] = [key for key in script if key in prompt]
        return script[key][min(j, len(script[key]) - 1)]
    return ScriptedSampler(respond, **kwargs)


def run(benchmark, sampler, executor, *, template="r1", n=1, path=None, **params):
    tasks = load_tasks(benchmark, path or (HUMANEVAL if benchmark == "humaneval" else CRUXEVAL))
    sampling = SamplingParams(max_new_tokens=params.pop("max_new_tokens", 400), temperature=1.0 if n > 1 else 0.0,
                              n=n, **params)
    return evaluate(benchmark, tasks, sampler, sampler.tokenizer, prompt_template=template, executor=executor,
                    params=sampling)


def kinds(record):
    return [f and f["kind"] for f in record["failures"]]


def test_cruxeval_o_right_wrong_malformed_and_hostile(executor, tmp_path):
    canary = tmp_path / "canary"
    sampler = scripted({
        "nums.count(n)": [answer(f"{F}output\n[(4,1),(4,1),(4,1),(4,1),(2,3),(2,3)]\n{F}"),  # same value, other text
                          answer(f"{F}output\n[(4, 1)\n{F}")],                                # not an expression
        "dict.fromkeys(d)": [answer(f"{F}output\n{{1: None}}\n{F}"),                          # wrong value
                             answer("# Output: {1: None, 2: None}")],                         # a parser fallback
        "text_list.append(value)": [" I think it returns 'bcksrutq'.",                        # no <answer>
                                    answer("'bcksrutq'")],                                    # the whole answer
        "char.isdecimal()": [answer(f"{F}output\n__import__('os').system('touch {canary}')\n{F}"),
                             answer(f"{F}output\nsum(1 for _ in iter(int, 1))\n{F}")],        # never ends
    })
    result = run("cruxeval-o", sampler, executor, n=2)
    by_id = {r["task_id"]: r for r in result.records}
    assert [r["task_id"] for r in result.records] == ["sample_0", "sample_1", "sample_3", "sample_5"]
    assert by_id["sample_0"]["passed"] == [True, False] and kinds(by_id["sample_0"]) == [None, "bad_answer"]
    assert kinds(by_id["sample_1"]) == ["wrong_answer", None]
    assert kinds(by_id["sample_3"]) == ["no_answer", None]
    assert by_id["sample_3"]["answers"] == [None, "'bcksrutq'"]
    assert kinds(by_id["sample_5"]) == ["sandbox_violation", "timeout"]
    assert not canary.exists()
    assert [r["num_correct"] for r in result.records] == [1, 1, 1, 0]
    assert result.metrics["pass@1"] == pytest.approx(3 / 8) and result.metrics["pass@2"] == pytest.approx(3 / 4)
    assert result.metrics["answer_rate"] == pytest.approx(7 / 8)
    assert result.metrics["tasks"] == 4 and result.metrics["samples_per_task"] == 2


def test_untagged_answers_count_only_when_the_tag_is_not_required(executor):
    sampler = scripted({
        "nums.count(n)": [f" Tracing.</think> The result:\n{F}output\n[(4, 1), (4, 1), (4, 1), (4, 1), (2, 3), (2, 3)]\n{F}"],
        "dict.fromkeys(d)": [f" It maps keys to None:\n{F}output\n{{1: None, 2: None}}\n{F}"],
        "text_list.append(value)": [answer(f"{F}output\n'wrong'\n{F}")],
        "char.isdecimal()": [" no idea"],
    })
    tasks = load_tasks("cruxeval-o", CRUXEVAL)
    params = SamplingParams(max_new_tokens=400, temperature=0.0)
    strict = evaluate("cruxeval-o", tasks, sampler, sampler.tokenizer, prompt_template="r1", executor=executor,
                      params=params)
    lenient = evaluate("cruxeval-o", tasks, sampler, sampler.tokenizer, prompt_template="r1", executor=executor,
                       params=params, require_answer_tag=False)
    assert [r["num_correct"] for r in strict.records] == [0, 0, 0, 0]
    assert [kinds(r) for r in strict.records] == [["no_answer"], ["no_answer"], ["wrong_answer"], ["no_answer"]]
    assert [r["num_correct"] for r in lenient.records] == [1, 1, 0, 0]
    assert [kinds(r) for r in lenient.records] == [[None], [None], ["wrong_answer"], ["bad_answer"]]  # "no idea"


def test_cruxeval_prompts_are_the_self_play_solver_prompts(executor):
    sampler = ScriptedSampler(lambda prompt, j: "")
    tasks = load_tasks("cruxeval-o", CRUXEVAL)
    out = run("cruxeval-o", sampler, executor).records
    assert [r["prompt"] for r in out] == [R1Template().wrap(solve_deduction_prompt(t.triplet())).text for t in tasks]
    chat = run("cruxeval-i", sampler, executor, template="chat").records
    assert chat[0]["prompt"] == ChatTemplate(CharTokenizer()).wrap(solve_abduction_prompt(tasks[0].triplet())).text
    assert [r["reference"] for r in out] == [t.output for t in tasks]
    assert [r["reference"] for r in chat] == [t.input for t in tasks]


def test_cruxeval_i_any_input_with_the_gold_output_passes(executor):
    sampler = scripted({
        "nums.count(n)": [answer(f"{F}input\n[3, 1, 1, 3, 1, 1]\n{F}")],          # not the dataset's input
        "dict.fromkeys(d)": [answer(f"{F}input\na=(1,), b=(2,), c=(1,)\n{F}")],  # keyword arguments
        "text_list.append(value)": [answer(f"{F}input\n'abc', 'q'\n{F}")],       # wrong
        "char.isdecimal()": [answer(f"{F}input\n__import__('os').system('id'), 'a', 'x'\n{F}")],
    })
    result = run("cruxeval-i", sampler, executor)
    assert [r["passed"] for r in result.records] == [[True], [True], [False], [False]]
    assert [kinds(r)[0] for r in result.records] == [None, None, "wrong_answer", "sandbox_violation"]
    assert result.records[0]["answers"] == ["[3, 1, 1, 3, 1, 1]"]
    assert result.metrics["pass@1"] == 0.5


def test_humaneval_chat_code_blocks(executor, tmp_path):
    canary = tmp_path / "canary"
    full = ("def has_close_elements(numbers, threshold):\n    return any(abs(a - b) < threshold\n"
            "               for i, a in enumerate(numbers) for b in numbers[i + 1:])\n")
    sampler = scripted({
        # The block that defines the entry point, not the usage example after it.
        "def has_close_elements": [f"Here it is:\n{F}python\n{full}{F}\nUse it:\n{F}python\n"
                                   f"print(has_close_elements([1.0], 0.5))\n{F}"],
        "def truncate_number": [f"{F}python\ndef truncate_number(number):\n    return number\n{F}"],
        # A body-only block completes the prompt's stub and calls the prompt's helper.
        "def decode_cyclic": [f"{F}python\nimport os\nos.system('touch {canary}')\n"
                              f"def decode_cyclic(s):\n    return encode_cyclic(encode_cyclic(s))\n{F}",
                              f"{F}python\n    return encode_cyclic(encode_cyclic(s))\n{F}"],
    })
    result = run("humaneval", sampler, executor, template="chat", n=2, path=HUMANEVAL)
    assert result.records[0]["prompt"] == CharTokenizer().apply_chat_template(
        [{"role": "user", "content": f"{HUMANEVAL_REQUEST}\n\n{F}python\n{load_tasks('humaneval', HUMANEVAL)[0].prompt.strip()}\n{F}"}],
        add_generation_prompt=True)
    assert [r["passed"] for r in result.records] == [[True, True], [False, False], [False, True]]
    assert result.records[0]["answers"][0] == "\n" + full
    assert kinds(result.records[1])[0] == "exception"
    assert result.records[1]["failures"][0]["message"].startswith("AssertionError")
    assert kinds(result.records[2])[0] == "sandbox_violation" and not canary.exists()
    assert result.metrics["pass@1"] == pytest.approx(0.5) and result.metrics["pass@2"] == pytest.approx(2 / 3)


def test_humaneval_r1_completions(executor):
    task = load_tasks("humaneval", HUMANEVAL)[0]
    sampler = scripted({
        "def has_close_elements": [task.canonical_solution + "\n\ndef unrelated():\n    raise SystemExit\n"],
        "def truncate_number": ["    while True:\n        pass\n"],
        "def decode_cyclic": ["   \n"],
    })
    result = run("humaneval", sampler, executor)
    assert result.records[0]["prompt"] == task.prompt
    assert result.records[0]["answers"] == [task.canonical_solution + "\n"]   # cut before the next top-level def
    assert [kinds(r)[0] for r in result.records] == [None, "timeout", "no_answer"]
    assert result.metrics["pass@1"] == pytest.approx(1 / 3)


def test_humaneval_solution_extraction():
    assert humaneval_solution("    return 1\nprint(f())\n", "f") == "    return 1"
    assert humaneval_solution(f"{F}python\ndef g():\n    pass\n{F}", "f") == "\ndef g():\n    pass\n"
    assert humaneval_solution(f"{F}\ndef f():\n    pass\n{F} and {F}python\nx = 1\n{F}", "f") == "\ndef f():\n    pass\n"
    assert humaneval_solution(f"Sure:\n{F}python\ndef f():\n    return 1\n", "f") == "\ndef f():\n    return 1\n"


def test_tasks_join_one_stream_longest_prompt_first_and_records_keep_task_order(executor):
    sampler = ScriptedSampler(lambda prompt, j: "", max_batch=2)
    result = run("cruxeval-o", sampler, executor)
    assert [len(call) for call in sampler.calls] == [4]   # all submitted at once, the scripted stream answers them
    lengths = [len(p) for call in sampler.calls for p in call]
    assert lengths == sorted(lengths, reverse=True)
    assert [r["task_id"] for r in result.records] == ["sample_0", "sample_1", "sample_3", "sample_5"]
    assert all(r["failures"] == [{"kind": "no_answer", "message": "the response has no <answer> tag"}]
               for r in result.records)


def test_prompts_the_sampler_cannot_hold_are_failures_not_crashes(executor):
    sampler = ScriptedSampler(lambda prompt, j: answer("1"), max_length=900)
    result = run("cruxeval-o", sampler, executor)
    too_long = [r for r in result.records if r["finish_reasons"] == ["not_sampled"]]
    assert too_long and len(too_long) < 4   # the fixture's prompts straddle 900 characters
    assert all(kinds(r) == ["prompt_too_long"] and r["responses"] == [""] for r in too_long)
    assert sum(len(call) for call in sampler.calls) == 4 - len(too_long)


def test_run_benchmarks_gives_trainer_metrics(executor):
    crux = {t.code: t.output for t in load_tasks("cruxeval-o", CRUXEVAL)}
    human = {f"def {t.entry_point}(": t.canonical_solution for t in load_tasks("humaneval", HUMANEVAL)}

    def respond(prompt: str, j: int) -> str:
        if not prompt.endswith("<think>"):   # HumanEval prompts open no <think>
            return next(answer for key, answer in human.items() if key in prompt)
        return answer(f"{F}output\n{next(out for code, out in crux.items() if code in prompt)}\n{F}")

    sampler = ScriptedSampler(respond)
    options = EvalOptions(every_n_steps=5, benchmarks=("cruxeval-o", "humaneval"), cruxeval_path=str(CRUXEVAL),
                          humaneval_path=str(HUMANEVAL), limit=2, max_new_tokens=500)
    metrics = run_benchmarks(options, sampler, sampler.tokenizer, "chat", executor, seed=3)
    assert set(metrics) == {f"eval/{b}/{m}" for b in ("cruxeval-o", "humaneval")
                            for m in ("pass@1", "answer_rate", "truncated", "response_tokens_mean", "tasks",
                                      "samples_per_task", "time_s")}
    assert metrics["eval/cruxeval-o/pass@1"] == 1.0 and metrics["eval/humaneval/pass@1"] == 1.0
    assert metrics["eval/cruxeval-o/tasks"] == 2 and metrics["eval/humaneval/tasks"] == 2
    assert len(sampler.calls) == 2   # greedy, one call per benchmark
