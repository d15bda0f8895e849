"""The six task prompts, the two prompt templates, and the token budget.

Task texts follow the reference's structure, sections and tags (docs/reference.md §4) in our own
words. A template turns a task text into the model input and records what the prompt
"opens" for the model (``<think>`` for the R1 template), which the parser prepends to the
response to rebuild the generation string.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from azr_jax.errors import ConfigError, PromptBudgetError
from azr_jax.typed_config import check_choice
from azr_jax.executor.checks import DEFAULT_BANNED_IMPORTS
from azr_jax.selfplay.records import InductionTask, Triplet

INPUT_PLACEHOLDER = "f(<|YOUR INPUT WILL BE PLUGGED HERE|>)"

# Shared by the proposer prompts and the induction solver (which omits the state-tracking line).
_STATE_TRACKING = "- Make the logic track state over several steps"
_CODE_REQUIREMENTS = """### Code Requirements:
- Name the entry function `f`; you may define helper functions or classes inside it
- `f` must take at least one parameter and return a value
- The code must be deterministic
{state_tracking}{top_level}- Do not use randomness, dates or times, file or network I/O, printing or logging, or any outside state
- It must finish in under 10 seconds
- Put every import and class definition at the very top of the snippet
- End the snippet with `f`'s return statement; anything after it is removed
"""

_IO_PROPOSE = """
## Task: Write a New Python Code Snippet and One Input for It

Create a new Python code snippet (you may define custom classes at the top) together with one \
matching input. A test subject will be shown {shown} and must work out {hidden}, so the snippet \
should demand deep algorithmic reasoning; think of it as a question in an IQ test.

{requirements}
### Input Requirements:
- Give exactly one test input for `f`
- Separate several arguments with commas
- Put quotes around strings

### Formatting:
- Write the code in a ```python``` block
- Write the input in an ```input``` block
Example:
```python
def f(word: str, counts: dict):
    # your logic here
    return result
```

```input
'apple', {{'a': 1, 'p': 2}}
```

### Evaluation Criteria:
- Executability: the code runs on the input without errors
- Difficulty: {difficulty}
- Creativity: the snippet differs clearly from the references below
- Restrictions: none of these words may appear in any form, not even in comments: {banned}

First plan in your thinking: why will the snippet be challenging, distinct from the references and \
creative? Then write the code and the input.

### Reference Code Snippets:
{references}
"""

@dataclass(frozen=True)
class IOWording:
    """What a deduction/abduction proposer is told its solver will see and must find."""

    shown: str
    hidden: str
    difficulty: str


ABDUCTION_WORDING = IOWording("the code and its output", "the input",
                              "recovering the input from the code and the output should be hard")
DEDUCTION_WORDING = IOWording("the code and the input", "the output",
                              "predicting the output from the code and the input should be hard")

_INDUCTION_PROPOSE = """
## Task: Write {n} Inputs and a Message for a Code Snippet

Below is a Python code snippet. Write {n} inputs that, plugged into it, produce a diverse set of \
outputs, and a message to help the test subject deduce the code snippet. The test subject will be \
shown some of your inputs with their outputs, together with your message, and must work out the \
function.

### Input Requirements:
- Give {n} valid inputs for the snippet
- Separate several arguments with commas
- Put quotes around strings
- Put each input in its own ```input``` block

### Message Requirements:
- Write the message in a ```message``` block; its purpose is to help the test subject deduce the code snippet
- It may take any form, e.g. a coding question or a plain-language description of the task
- It must not contain the code snippet

### Formatting:
Example Format:
```input
arg1, arg2, ...
```
```input
arg1, arg2, ...
```
```message
your message
```

### Evaluation Criteria:
- Executability: every input runs through the snippet without errors
- Coverage: the inputs explore the input space widely
- Creativity: the inputs and the message are varied and original
- Challenge: the function should be hard, but possible, to work out from the shown pairs and message

First plan in your thinking which inputs will reveal the most and what the message should say; \
then give the inputs and the message in the blocks described above.

### Code Snippet:
```python
{snippet}
{placeholder}
```
"""

_ABDUCTION_SOLVE = """
## Task: Find One Input That Produces the Output

Below are a code snippet and one of its outputs. Give one input for which the snippet returns \
this output. Think step by step, then write the input in an ```input``` block. Put quotes around \
strings and separate several arguments with commas.

### Code Snippet:
```python
{snippet}
```

### Output:
```output
{output}
```

### Output Format:
```input
arg1, arg2, ...
```

### Example Output:
```input
'apple', {{'a': 1, 'p': 2}}
```
"""

_DEDUCTION_SOLVE = """
## Task: Work Out the Output of the Code Snippet

Below are a code snippet and an input. Work out what the snippet returns for this input. Think \
step by step, then write the output in an ```output``` block. Put quotes around strings, and \
write several returned values as a tuple.

### Code Snippet:
```python
{snippet}
```

### Input:
```input
{input}
```

### Example Output:
```output
{{'apple': 1, 'pear': 2}}
```
"""

_INDUCTION_SOLVE = """
## Task: Work Out the Function

Below are input/output pairs of a hidden function and a message about it. Write a Python function \
that maps every input to its output. Think step by step, then write your final code in a \
```python``` block.

{requirements}
### Input and Output Pairs:
{pairs}
### Message:
```message
{message}
```

### Example Output:
```python
def f(a):
    return a
```

Remember: the entry function must be named `f`.
"""


# Only in the seeding phase, whose clean-up keeps nothing but top-level imports, functions and classes.
_TOP_LEVEL_REMOVED = "- Keep every variable inside a function: top-level variables are removed\n"


def _code_requirements(*, state_tracking: bool, seeding: bool = False) -> str:
    return _CODE_REQUIREMENTS.format(state_tracking=_STATE_TRACKING + "\n" if state_tracking else "",
                                     top_level=_TOP_LEVEL_REMOVED if seeding else "")


def _reference_block(j: int, ref: Triplet) -> str:
    return (f"<snippet_{j}>\n```python\n{ref.snippet}\n```\n```input\n{ref.input}\n```\n"
            f"```output\n{ref.output}\n```\n</snippet_{j}>\n")


def propose_io_prompt(wording: IOWording, references: Sequence[Triplet],
                      banned_imports: Sequence[str] = DEFAULT_BANNED_IMPORTS, *, seeding: bool = False) -> str:
    """Deduction/abduction proposer task text: write a program and one input (§4.1); `seeding`
    adds the seeding runs' line that top-level variables are removed (§10).

    Differs: the reference swaps the "difficulty" bullet between the two prompts; here each
    prompt asks for difficulty of its own task.
    """
    if not references:
        raise ValueError("a proposer prompt needs at least one reference triplet")
    return _IO_PROPOSE.format(
        shown=wording.shown, hidden=wording.hidden, difficulty=wording.difficulty, banned=", ".join(banned_imports),
        requirements=_code_requirements(state_tracking=True, seeding=seeding),
        references="".join(_reference_block(j, ref) for j, ref in enumerate(references)))


def propose_induction_prompt(program: Triplet, *, num_inputs: int = 10) -> str:
    """Induction proposer task text: inputs and a message for an existing program (§4.2)."""
    return _INDUCTION_PROPOSE.format(n=num_inputs, snippet=program.snippet, placeholder=INPUT_PLACEHOLDER)


def solve_abduction_prompt(task: Triplet) -> str:
    """Abduction solver task text: program and output shown, an input asked for (§4.3)."""
    return _ABDUCTION_SOLVE.format(snippet=task.snippet, output=task.output)


def solve_deduction_prompt(task: Triplet) -> str:
    """Deduction solver task text: program and input shown, the output asked for (§4.3)."""
    return _DEDUCTION_SOLVE.format(snippet=task.snippet, input=task.input)


def solve_induction_prompt(task: InductionTask) -> str:
    """Induction solver task text: the first half of the pairs and the message; no program."""
    pairs = "".join(f"```input_{j}\n{x}\n```\n```output_{j}\n{y}\n```\n"
                    for j, (x, y) in enumerate(task.given_pairs))
    return _INDUCTION_SOLVE.format(requirements=_code_requirements(state_tracking=False),
                                   pairs=pairs, message=task.message)


# ---------------------------------------------------------------------------------------------
# Templates

_ANSWER_FORMAT = (
    "This is a conversation between a User and an Assistant. The User gives a task and the "
    "Assistant completes it: it first reasons about the task privately, then gives its final "
    "answer. The reasoning goes inside <think> </think> tags and the final answer inside "
    "<answer> </answer> tags, like this: <think> reasoning </think> <answer> answer </answer>."
)
THINK_OPEN = "<think>"


@dataclass(frozen=True)
class Prompt:
    """A model input and what it opens for the model (prepended to the response when parsing)."""

    text: str
    opening: str


class PromptTemplate(Protocol):
    def wrap(self, task_text: str) -> Prompt: ...


class R1Template:
    """The think/answer text template for base models: the prompt ends with ``Assistant: <think>``."""

    def wrap(self, task_text: str) -> Prompt:
        return Prompt(text=f"{_ANSWER_FORMAT}\nUser: {task_text}\nAssistant: {THINK_OPEN}", opening=THINK_OPEN)


class ChatTemplate:
    """The tokenizer's own chat template (instruct models): one user message + generation prompt.

    The user message carries the same think/answer instruction as the R1 template. With
    ``prefill_think`` the prompt ends with an opened ``<think>`` (unless the template already
    ends with one), so the response starts inside the reasoning as with the R1 template.
    """

    def __init__(self, tokenizer: Any, *, prefill_think: bool = True) -> None:
        if not callable(getattr(tokenizer, "apply_chat_template", None)):
            raise ConfigError("the chat prompt template needs a tokenizer with apply_chat_template")
        self.tokenizer = tokenizer
        self.prefill_think = prefill_think

    def wrap(self, task_text: str) -> Prompt:
        messages = [{"role": "user", "content": f"{_ANSWER_FORMAT}\n{task_text}"}]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        if not isinstance(text, str):
            raise ConfigError(f"apply_chat_template(tokenize=False) returned {type(text).__name__}, not str")
        opens_think = text.rstrip().endswith(THINK_OPEN)
        if self.prefill_think and not opens_think:
            text, opens_think = text + THINK_OPEN, True
        return Prompt(text=text, opening=THINK_OPEN if opens_think else "")


TEMPLATE_KINDS = ("r1", "chat", "chat_noprefill")


def make_template(kind: str, tokenizer: Any = None) -> PromptTemplate:
    """``r1`` (base models), ``chat`` (the tokenizer's chat template, instruct models, response
    opened with ``<think>``) or ``chat_noprefill`` (the chat template, response not prefilled:
    small instruct models that break off after a prefilled ``<think>`` answer better so)."""
    if kind == "r1":
        return R1Template()
    check_choice("prompt template", kind, TEMPLATE_KINDS)
    return ChatTemplate(tokenizer, prefill_think=kind == "chat")


# ---------------------------------------------------------------------------------------------
# Token budget (§4.1, §4.4)


def encode(tokenizer: Any, text: str) -> list[int]:
    """The token ids of an already templated prompt (no special tokens added): what is sampled
    from and what every prompt budget counts.

    Accepts an HF tokenizer (``encode`` returns ids) or a ``tokenizers.Tokenizer`` (an
    ``Encoding`` with ``.ids``).
    """
    encoded = tokenizer.encode(text, add_special_tokens=False)
    return list(getattr(encoded, "ids", encoded))


def count_tokens(tokenizer: Any, text: str) -> int:
    """Number of tokens of ``text`` as :func:`encode` makes them."""
    return len(encode(tokenizer, text))


def resample_within_budget(draw: Callable[[], Prompt], tokenizer: Any, *, content_max_length: int = 5600,
                           max_attempts: int = 100) -> Prompt:
    """Draw proposer prompts (fresh references each time) until one fits the token budget.

    The reference loops without bound; after ``max_attempts`` draws we raise PromptBudgetError.
    """
    for _ in range(max_attempts):
        prompt = draw()
        if count_tokens(tokenizer, prompt.text) <= content_max_length:
            return prompt
    raise PromptBudgetError(f"no proposer prompt within content_max_length={content_max_length} tokens "
                            f"after {max_attempts} draws")


def select_within_budget(prompts: Sequence[Prompt], tokenizer: Any, rng: np.random.Generator, *,
                         batch_size: int | None = None, content_max_length: int = 5600) -> list[int]:
    """Indices of the solver prompts to use: over-long ones dropped, survivors refilled.

    Survivors keep their order; while fewer than ``batch_size`` (default: len(prompts)), a
    uniformly drawn survivor is appended again, as the reference does.
    """
    target = len(prompts) if batch_size is None else batch_size
    keep = [i for i, p in enumerate(prompts) if count_tokens(tokenizer, p.text) <= content_max_length]
    if target and not keep:
        raise PromptBudgetError(f"all {len(prompts)} solver prompts exceed content_max_length="
                                f"{content_max_length} tokens")
    survivors = tuple(keep)
    while len(keep) < target:
        keep.append(survivors[int(rng.integers(len(survivors)))])
    return keep[:target]
