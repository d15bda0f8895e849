"""Math and MBPP+ scoring on canned responses: the gold answers score 100% (also in equivalent forms:
fractions as decimals, nested boxes, units), perturbed ones 0%, and MBPP+ solutions are run on the
base and plus inputs in the sandbox, with EvalPlus's argument types and float tolerance."""
from __future__ import annotations

import pytest

from azr_jax.eval import evaluate, load_tasks
from azr_jax.eval.benchmarks import as_latex, math_answer
from azr_jax.eval.tasks import MATH_BENCHMARKS, MbppTask, data_file
from azr_jax.executor import Executor
from azr_jax.sampling import SamplingParams

from eval_testlib import DATA, ScriptedSampler

F = "```"
GREEDY = SamplingParams(max_new_tokens=2000, temperature=0.0)


@pytest.fixture(scope="module")
def math_executor():
    with Executor(workers=2, timeout_s=20, packages=["math_verify"]) as executor:
        yield executor


def _by_problem(tasks, answer_of) -> ScriptedSampler:
    """Answers the task whose problem is in the prompt with `answer_of(task)`."""
    def respond(prompt: str, j: int) -> str:
        [task] = [t for t in tasks if t.problem in prompt]
        return answer_of(task)
    return ScriptedSampler(respond)


def _score(benchmark, answer_of, executor) -> list[bool]:
    tasks = load_tasks(benchmark, data_file(benchmark, DATA))
    sampler = _by_problem(tasks, answer_of)
    result = evaluate(benchmark, tasks, sampler, sampler.tokenizer, prompt_template="r1", executor=executor,
                      params=GREEDY)
    return [r["passed"][0] for r in result.records]


@pytest.mark.parametrize("benchmark", list(MATH_BENCHMARKS))
def test_gold_answers_pass_and_perturbed_ones_fail(benchmark, math_executor):
    tagged = _score(benchmark, lambda t: f" Let me think.</think>\n<answer>\\boxed{{{t.answer}}}</answer>", math_executor)
    untagged = _score(benchmark, lambda t: f" So the answer is $\\boxed{{{t.answer}}}$.", math_executor)
    perturbed = _score(benchmark, lambda t: f"</think><answer>\\boxed{{{t.answer} + 1}}</answer>", math_executor)
    assert all(tagged) and all(untagged), (tagged, untagged)
    assert not any(perturbed), perturbed


@pytest.mark.parametrize("gold, answer, equal", [
    ("\\frac{1}{2}", "0.5", True), ("\\frac{1}{2}", "\\boxed{\\boxed{1/2}}", True), ("\\frac{1}{2}", "0.6", False),
    ("\\frac{14}{3}", "4\\frac{2}{3}", True), ("3\\sqrt{13}", "\\sqrt{117}", True), ("1.25", "\\frac54", True),
    ("10", "10 \\text{ cm}", True), ("10", "10\\mathrm{~cm}", True), ("90", "90^{\\circ}", True),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi/2)", True), ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi)", False),
    ("(-\\infty, 0) \\cup\\{1\\}", "(-\\infty,0)\\cup\\{1\\}", True), ("\\text{Evelyn}", "\\text{Evelyn}", True),
    ("18", "__import__('os').system('id')", False), ("18", "9*2", True),
    ("\\$18.90", "18.9", True), ("32,\\!348", "32348", True), ("\\$36", "37", False),
])
def test_equivalent_forms(gold, answer, equal, math_executor):
    [check] = math_executor.check_math([as_latex(gold)], [as_latex(answer)])
    assert check.passed is equal and check.failure is None


def test_the_final_answer_is_the_answer_tag_else_the_last_box():
    assert math_answer("<think>x</think><answer>42</answer>") == "42"
    assert math_answer("<answer>so \\boxed{1} then \\boxed{\\frac{1}{2}}</answer>") == "\\frac{1}{2}"
    assert math_answer("no tags, \\boxed{7} but finally \\boxed{{8}}") == "{8}"
    assert math_answer("no answer at all") is None
    assert math_answer("<answer></answer> \\boxed{3}") == "3"
    assert as_latex("\\frac12") == "$\\frac12$" and as_latex("$x$") == "$x$" and as_latex("\\boxed{1}") == "\\boxed{1}"


@pytest.fixture(scope="module")
def mbpp_tasks():
    return load_tasks("mbpp+", data_file("mbpp+", DATA))


def _mbpp(tasks, solution_of, executor):
    def respond(prompt: str, j: int) -> str:
        [task] = [t for t in tasks if t.prompt.strip() in prompt]
        return f"Here:\n{F}python\n{solution_of(task)}\n{F}"
    sampler = ScriptedSampler(respond)
    return evaluate("mbpp+", tasks, sampler, sampler.tokenizer, prompt_template="chat", executor=executor,
                    params=GREEDY)


def test_mbpp_reference_solutions_pass_base_and_plus(mbpp_tasks, executor):
    result = _mbpp(mbpp_tasks, lambda t: t.canonical_solution, executor)
    assert [r["passed"] for r in result.records] == [[True]] * 4
    assert [r["passed_base"] for r in result.records] == [[True]] * 4
    assert result.metrics["pass@1"] == 1.0 and result.metrics["base/pass@1"] == 1.0


def test_mbpp_wrong_and_base_only_solutions(mbpp_tasks, executor):
    special = {
        # Right on the base inputs, wrong on the plus ones (empty tuples).
        "Mbpp/2": "def similar_elements(a, b):\n    assert a and b\n    return tuple(set(a) & set(b))",
        "Mbpp/3": "def is_not_prime(n):\n    return True",                                    # wrong everywhere
        "Mbpp/793": "import os\ndef last(arr, x):\n    os.system('id')\n    return 0",           # refused
    }
    result = _mbpp(mbpp_tasks, lambda t: special.get(t.task_id, t.canonical_solution), executor)
    by_id = {r["task_id"]: r for r in result.records}
    assert by_id["Mbpp/2"]["passed_base"] == [True] and by_id["Mbpp/2"]["passed"] == [False]
    assert by_id["Mbpp/2"]["failures"][0]["kind"] == "exception"
    assert by_id["Mbpp/3"]["passed_base"] == [False] and by_id["Mbpp/3"]["failures"][0]["kind"] == "wrong_answer"
    assert by_id["Mbpp/793"]["failures"][0]["kind"] == "sandbox_violation"
    assert result.metrics["base/pass@1"] == 0.5 and result.metrics["pass@1"] == 0.25


def test_mbpp_inputs_take_the_examples_types_and_floats_compare_with_tolerance(mbpp_tasks, executor):
    [similar] = [t for t in mbpp_tasks if t.task_id == "Mbpp/2"]
    assert all(type(arg) is tuple for args in similar.base_inputs for arg in args)
    [floats] = [t for t in mbpp_tasks if t.atol > 0]
    # A solution off by less than the tolerance passes, one off by more fails.
    near = f"{floats.canonical_solution}\n_real = {floats.entry_point}\ndef {floats.entry_point}(*a):\n    return _real(*a) + 1e-5"
    far = f"{floats.canonical_solution}\n_real = {floats.entry_point}\ndef {floats.entry_point}(*a):\n    return _real(*a) + 1e-2"
    near_result = _mbpp([floats], lambda t: near, executor)
    far_result = _mbpp([floats], lambda t: far, executor)
    assert near_result.records[0]["passed"] == [True] and far_result.records[0]["passed"] == [False]


def _mbpp_row(assertion: str, base_input: list, **fields) -> dict:
    return {"task_id": "Mbpp/0", "prompt": "", "entry_point": "f", "canonical_solution": "", "assertion": assertion,
            "base_input": base_input, "plus_input": [], "atol": 0, **fields}


def test_mbpp_json_arguments_become_complex_numbers_and_nested_tuples_as_in_the_example():
    complex_task = MbppTask.from_json_dict(_mbpp_row("assert f(0, 1j) == 1", [["0", "1j"], ["2", "0j"]]))
    assert complex_task.base_inputs == ((0, 1j), (2, 0j)) and type(complex_task.base_inputs[1][1]) is complex
    # Deeper and longer than the example: every nested list is a tuple, also where the example has a number.
    nested = MbppTask.from_json_dict(_mbpp_row("assert f((4, 5, (7, 6, (2, 4)), 6, 8)) == 1",
                                               [[[1, [2, 3], 4, 5, 6]], [[1, 2, 3, [4, 5, [6, 7, [8]]]]]]))
    assert nested.base_inputs == (((1, (2, 3), 4, 5, 6),), ((1, 2, 3, (4, 5, (6, 7, (8,)))),))
    # Lists stay lists where the example has a list.
    plain = MbppTask.from_json_dict(_mbpp_row("assert f([1, 2], 'a') == 1", [[[[1], 2], "b"]]))
    assert plain.base_inputs == (([[1], 2], "b"),)


def test_benchmark_calls_return_large_values_and_matches_as_true_and_refuse_oversized_results():
    code = ("import re\n"
            "def f(kind):\n"
            "    if kind == 'match':\n        return re.match('a', 'abc')\n"
            "    if kind == 'nomatch':\n        return re.match('z', 'abc')\n"
            "    if kind == 'large':\n        return list(range(300_000))\n"
            "    return 'x' * 20_000_000\n")
    with Executor(workers=1, timeout_s=20) as executor:   # the default limits: 16 MiB per file
        [results] = executor.call_function([code], ["f"], [[("match",), ("nomatch",), ("large",)]])
        [[huge]] = executor.call_function([code], ["f"], [[("huge",)]])
    match, nomatch, large = results
    assert match.value is True and nomatch.value is None and large.value == list(range(300_000))
    assert huge.failure is not None and huge.failure.kind.value == "output_too_long"
    assert "more than the 16777216 bytes a file may hold" in huge.failure.message
