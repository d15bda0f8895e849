"""Response parsing on crafted responses, well-formed and malformed."""
import pytest

from azr_jax.selfplay.parsing import (IOProposal, InductionProposal, ParseFailure, any_fenced_blocks, extract_answer,
                                      extract_solver_answer, extract_solver_program, extract_thought, fenced_blocks,
                                      format_ok, generation_text, parse_imports, parse_induction_proposal,
                                      parse_io_proposal, rename_entry_function)

FENCE = "```"


def block(tag, body):
    return f"{FENCE}{tag}\n{body}\n{FENCE}"


# --- generation string, answer, thought, format ------------------------------------------------

def test_generation_is_opening_plus_response():
    assert generation_text("<think>", " plan </think>\n<answer>x</answer>\n") == "<think> plan </think>\n<answer>x</answer>"
    assert generation_text("", "\n <think>a</think><answer>b</answer>") == "<think>a</think><answer>b</answer>"


def test_assistant_inside_code_does_not_shift_the_generation():
    # The reference splits decoded prompt+response on the first "Assistant:"; a reference
    # program containing that word would make it cut in the wrong place. We never split.
    response = f" ok </think> <answer>{block('output', 'Assistant: hi')}</answer>"
    gen = generation_text("<think>", response)
    assert gen.startswith("<think> ok </think>")
    assert format_ok(gen)
    assert extract_solver_answer(extract_answer(gen), "output") == "Assistant: hi"


@pytest.mark.parametrize("generation, expected", [
    ("<think>a</think><answer> 42 </answer>", "42"),
    ("<think>a</think><answer>first</answer> then <answer>second</answer>", "second"),
    ("<think>a</think><answer>unclosed answer\n", "unclosed answer"),
    ("<answer>x</answer><answer>y", "y"),
    ("no tags at all", None),
    ("<think>only thinking</think>", None),
    ("<answer></answer>", ""),
])
def test_extract_answer_takes_the_last_answer(generation, expected):
    assert extract_answer(generation) == expected


@pytest.mark.parametrize("generation, expected", [
    ("<think> plan A </think><answer>x</answer>", "plan A"),
    ("<think>one</think><think>two</think>", "two"),
    ("<think> never closed", "never closed"),
    ("no think", ""),
])
def test_extract_thought(generation, expected):
    assert extract_thought(generation) == expected


@pytest.mark.parametrize("generation, ok", [
    ("<think>r</think><answer>a</answer>", True),
    ("<think>r</think> \n\n <answer>a</answer> trailing text", True),
    ("<think>\nmulti\nline\n</think>\n<answer>\nx\n</answer>", True),
    ("<think></think><answer></answer>", True),
    (" <think>r</think><answer>a</answer>", False),  # anchored at the start
    ("preamble <think>r</think><answer>a</answer>", False),
    ("<think>r</think> text <answer>a</answer>", False),
    ("<think>r</think><answer>a", False),  # unclosed answer
    ("<think>r<answer>a</answer>", False),  # unclosed think
    ("<answer>a</answer><think>r</think>", False),  # wrong order
])
def test_format_check(generation, ok):
    assert format_ok(generation) is ok


# --- fenced blocks -------------------------------------------------------------------------

def test_fenced_blocks_by_tag():
    text = f"{block('input', 'a')} {FENCE}INPUT 'b'{FENCE} {block('input_0', 'c')} {block('inputs', 'd')}"
    assert fenced_blocks(text, "input") == ["a", "'b'"]
    assert fenced_blocks(text, "input_0") == ["c"]
    assert fenced_blocks(f"{FENCE}output\n\n{FENCE}", "output") == [""]
    assert fenced_blocks("```input\nnever closed", "input") == []


def test_any_fenced_block_matches_every_block():
    text = f"{block('python', 'def f(): pass')}\n{block('', 'plain')}\n{block('input', '1')}\n{block('Python', 'x')}"
    assert any_fenced_blocks(text) == ["def f(): pass\n", "plain\n", "input\n1\n", "x\n"]


# --- solver answers ------------------------------------------------------------------------

@pytest.mark.parametrize("answer, expected", [
    (block("output", "[1, 2]"), "[1, 2]"),
    (f"{block('output', '1')}\nactually\n{block('output', '2')}", "2"),  # last block
    ("# Output: {'a': 1}\nmore", "{'a': 1}"),
    ("output([1, 2, 3])", "[1, 2, 3]"),
    ("<output>'xyz'</output>", "'xyz'"),
    ("After tracing, the output is 'abc'", "'abc'"),
    ("'just the value'", "'just the value'"),  # whole answer
    ("", ""),
])
def test_solver_output_fallbacks(answer, expected):
    assert extract_solver_answer(answer, "output") == expected


def test_solver_input_fallback_order():
    # A fenced block beats every fallback; a "# Input:" line beats an input(...) call.
    answer = "# Input: 1\ninput(2)\n<input>3</input>\nthe input is 4"
    assert extract_solver_answer(answer + "\n" + block("input", "0"), "input") == "0"
    assert extract_solver_answer(answer, "input") == "1"
    assert extract_solver_answer("input(2)\n<input>3</input>", "input") == "2"
    assert extract_solver_answer("<input>3</input> the input is 4", "input") == "3"
    assert extract_solver_answer("The input is: 'a', [1]", "input") == "'a', [1]"


def test_solver_answer_ignores_blocks_of_the_other_tag():
    answer = f"{block('input', 'x')}\n{block('output', 'y')}"
    assert extract_solver_answer(answer, "input") == "x"
    assert extract_solver_answer(answer, "output") == "y"


def test_solver_answer_keeps_unicode_and_multiline():
    assert extract_solver_answer(block("output", "'héllo ✓'"), "output") == "'héllo ✓'"
    assert extract_solver_answer(block("input", "[1,\n 2]"), "input") == "[1,\n 2]"


def test_induction_solver_program_is_the_last_block():
    answer = block("python", "def f(a):\n    return 1") + "\nbetter:\n" + block("python", "def f(a):\n    return 2")
    assert extract_solver_program(answer) == "def f(a):\n    return 2\n"
    assert extract_solver_program("def f(a): return a") is None
    assert extract_solver_program(None) is None


def test_no_answer_tag_means_nothing_to_check():
    assert extract_solver_answer(extract_answer("<think>only thoughts ```output\n1\n```"), "output") is None


# --- deduction/abduction proposals -------------------------------------------------------------

GOOD_PROGRAM = "def f(xs):\n    return sorted(xs)"
NESTED_DEF = "def f(a):\n    def g(b):\n        return b\n    return g(a)"
CLASS_WITH_METHOD = "class A:\n    def m(self):\n        return 1\ndef f(a):\n    return a"


def test_io_proposal_happy_path():
    answer = f"{block('python', GOOD_PROGRAM)}\n{block('input', ' [3, 1, 2] ')}"
    assert parse_io_proposal(answer).value == IOProposal(snippet=GOOD_PROGRAM, input="[3, 1, 2]", imports=())


def test_io_proposal_from_full_generation_ignores_blocks_in_the_thinking():
    thinking = "draft:\n" + block("python", "def g(y):\n    return y") + "\n" + block("input", "0")
    answer = f"{block('python', GOOD_PROGRAM)}\n{block('input', '[2, 1]')}"
    gen = generation_text("<think>", f"{thinking}</think>\n<answer>{answer}</answer>")
    assert format_ok(gen)
    parsed = parse_io_proposal(extract_answer(gen))
    assert parsed.ok and parsed.value.snippet == GOOD_PROGRAM and parsed.value.input == "[2, 1]"


@pytest.mark.parametrize("answer, failure", [
    (None, ParseFailure.NO_ANSWER),
    ("no blocks here", ParseFailure.NO_CODE_BLOCK),
    (block("python", GOOD_PROGRAM), ParseFailure.NO_INPUT_BLOCK),
    (f"{block('python', 'x = 1')}\n{block('input', '1')}", ParseFailure.NO_FUNCTION),
    (f"{block('python', '')}\n{block('input', '1')}", ParseFailure.NO_FUNCTION),
    # The first fenced block is the code: an input block first means "no function".
    (f"{block('input', '1')}\n{block('python', GOOD_PROGRAM)}", ParseFailure.NO_FUNCTION),
])
def test_io_proposal_failures(answer, failure):
    parsed = parse_io_proposal(answer)
    assert not parsed.ok and parsed.failure is failure and parsed.value is None


def test_io_proposal_input_line_fallback_and_first_input_block():
    assert parse_io_proposal(f"{block('python', GOOD_PROGRAM)}\n# Input: [5, 4]").value.input == "[5, 4]"
    answer = f"{block('python', GOOD_PROGRAM)}\n{block('input', '1')}\n{block('input', '2')}"
    assert parse_io_proposal(answer).value.input == "1"


def test_io_proposal_nested_fence_inside_code_ends_the_block():
    # A ``` inside the program closes the block early, as in the reference; the truncated
    # program is then rejected by the executor, not here.
    program = "def f(s):\n    return s + '```'"
    parsed = parse_io_proposal(f"{block('python', program)}\n{block('input', '1')}")
    assert parsed.value.snippet == "def f(s):\n    return s + '"


def test_helper_functions_allowed_unless_rejected():
    program = "def helper(a):\n    return a + 1\n\ndef f(a):\n    return helper(a)"
    answer = f"{block('python', program)}\n{block('input', '1')}"
    assert parse_io_proposal(answer).value.snippet == program  # f exists: nothing renamed
    assert parse_io_proposal(answer, reject_multiple_functions=True).failure is ParseFailure.MULTIPLE_FUNCTIONS
    # Nested defs and methods count as def lines for the reference rule.
    for program in (NESTED_DEF, CLASS_WITH_METHOD):
        answer = f"{block('python', program)}\n{block('input', '1')}"
        assert parse_io_proposal(answer).ok
        assert parse_io_proposal(answer, reject_multiple_functions=True).failure is ParseFailure.MULTIPLE_FUNCTIONS


def test_renaming_to_f():
    program = ("import math\ndef solve(n):\n    if n < 2:\n        return 1\n    return n * solve (n - 1)\n"
               "x = resolve(1) + obj.solve(2) + solve_all(3)")
    expected = ("import math\ndef f(n):\n    if n < 2:\n        return 1\n    return n * f (n - 1)\n"
                "x = resolve(1) + obj.solve(2) + solve_all(3)")
    assert rename_entry_function(program) == expected
    assert rename_entry_function(GOOD_PROGRAM) == GOOD_PROGRAM
    # Several top-level functions and none named f: no guess; the executor reports no entry point.
    two = "def a(x):\n    return b(x)\ndef b(y):\n    return y"
    assert rename_entry_function(two) == two
    # Only top-level functions count: a class method or nested def is not the entry point.
    klass = "class A:\n    def run(self):\n        return 1\ndef solve(x):\n    return A().run() + x"
    assert rename_entry_function(klass) == klass.replace("def solve(", "def f(")
    assert rename_entry_function("def broken(:\n") == "def broken(:\n"


def test_renaming_unicode_names():
    program = "def größe(x):\n    return größe2(x) if False else x"
    assert rename_entry_function(program) == "def f(x):\n    return größe2(x) if False else x"


def test_imports_regenerated_from_the_ast():
    code = ("import os, numpy as np\nfrom collections import Counter, deque as dq\nfrom . import sibling\n"
            "def f(a):\n    import heapq\n    return a")
    assert parse_imports(code) == ("import os, numpy as np", "from collections import Counter, deque as dq",
                                   "from . import sibling", "import heapq")
    assert parse_imports(GOOD_PROGRAM) == ()


def test_imports_regex_fallback_on_syntax_error():
    code = "import re\nfrom math import  gcd \ndef f(a:\n    return a"
    assert parse_imports(code) == ("import re", "from math import  gcd")


def test_io_proposal_carries_imports():
    program = "from collections import Counter\ndef f(s):\n    return Counter(s).most_common(1)"
    parsed = parse_io_proposal(block("python", program) + "\n" + block("input", "'aab'"))
    assert parsed.value.imports == ("from collections import Counter",)


# --- induction proposals -------------------------------------------------------------------

def inputs_text(values):
    return "\n".join(block("input", v) for v in values)


def test_induction_proposal_keeps_the_last_inputs():
    answer = inputs_text([str(i) for i in range(12)]) + "\n" + block("message", " sums things ")
    parsed = parse_induction_proposal(answer)
    assert parsed.value == InductionProposal(inputs=tuple(str(i) for i in range(2, 12)), message="sums things")


def test_induction_proposal_duplicates_and_unicode_kept():
    values = ["'é'"] * 10
    parsed = parse_induction_proposal(inputs_text(values) + "\n<message>ünïcode</message>")
    assert parsed.value.inputs == tuple(values) and parsed.value.message == "ünïcode"


@pytest.mark.parametrize("message_part, expected", [
    (f"{block('message', 'first')}\n{block('message', 'second')}", "first"),
    ("<message>\ntagged\n</message>", "tagged"),
    ("# Message: a line", "a line"),
    (f"<message>tag</message>\n{block('message', 'block wins')}", "block wins"),
])
def test_induction_message_sources(message_part, expected):
    parsed = parse_induction_proposal(inputs_text(["1"] * 10) + "\n" + message_part)
    assert parsed.value.message == expected


@pytest.mark.parametrize("answer, failure", [
    (None, ParseFailure.NO_ANSWER),
    (inputs_text(["1"] * 9) + "\n" + block("message", "m"), ParseFailure.TOO_FEW_INPUTS),
    (inputs_text(["1"] * 10), ParseFailure.NO_MESSAGE),
    (inputs_text(["1"] * 10) + "\n" + block("message", "  "), ParseFailure.NO_MESSAGE),
    # input_j blocks (copied from a solver prompt) are not input blocks
    ("\n".join(block(f"input_{j}", "1") for j in range(10)) + block("message", "m"), ParseFailure.TOO_FEW_INPUTS),
])
def test_induction_proposal_failures(answer, failure):
    assert parse_induction_proposal(answer).failure is failure


def test_induction_proposal_custom_count():
    parsed = parse_induction_proposal(inputs_text(["1", "2", "3"]) + block("message", "m"), num_inputs=2)
    assert parsed.value.inputs == ("2", "3")
    with pytest.raises(ValueError, match="num_inputs"):
        parse_induction_proposal("", num_inputs=0)


def test_huge_hostile_response_is_parsed_statically():
    # Deeply nested code must not crash import parsing (ast may raise RecursionError).
    nested = "(" * 5000 + ")" * 5000
    assert parse_imports(f"import re\nx = {nested}") == ("import re",)
    program = f"def f(a):\n    return {'[' * 300}a{']' * 300}"
    parsed = parse_io_proposal(f"{block('python', program)}\n{block('input', '1')}")
    assert parsed.ok and parsed.value.imports == ()


@pytest.mark.parametrize("generation, expected", [
    ("<think> a </think> <answer> b </answer>", "b"),  # the tag still wins
    ("<think> plan </think>\n```output\n3\n```", "```output\n3\n```"),
    ("<think> The output is:\n```output\n3\n```", "The output is:\n```output\n3\n```"),
    ("```input\n1\n```", "```input\n1\n```"),
])
def test_answers_without_the_tag_when_it_is_not_required(generation, expected):
    assert extract_answer(generation, require_tag=False) == expected
    if "<answer>" not in generation:
        assert extract_answer(generation) is None
