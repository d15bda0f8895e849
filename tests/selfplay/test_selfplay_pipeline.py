"""The building blocks composed as one self-play iteration would use them, on canned responses.

Execution results are given by the test (the executor is wired in by the training loop):
``OUTPUTS`` stands in for running the proposed programs.
"""
from pathlib import Path

import numpy as np

from azr_jax.selfplay.advantages import trr_advantages
from azr_jax.selfplay.buffers import SelfPlayBuffers, sample_solver_tasks
from azr_jax.selfplay.parsing import (IOProposal, extract_answer, extract_solver_answer, extract_solver_program,
                                      format_ok, generation_text, parse_induction_proposal, parse_io_proposal)
from azr_jax.selfplay.prompts import DEDUCTION_WORDING, R1Template, propose_induction_prompt, propose_io_prompt
from azr_jax.selfplay.rewards import (admit_to_buffer, induction_accuracy, learnability, proposer_reward,
                                      solve_rate, solver_reward)
from azr_jax.selfplay.task_types import ABDUCTION, DEDUCTION, INDUCTION, TASK_TYPES, Role, group_name, groups
from azr_jax.selfplay.task_types.io_tasks import sample_references

FIXTURES = Path(__file__).parent.parent / "fixtures" / "selfplay"
DED, IND = DEDUCTION, INDUCTION
F = "```"

GOOD = (f" I will double every item.</think>\n<answer>\n{F}python\ndef double(xs):\n    return [double_one(x) "
        f"for x in xs] if False else [x * 2 for x in xs]\n{F}\n{F}input\n[1, 2]\n{F}\n</answer>")
NO_ANSWER = " I ran out of ideas."
BAD_FORMAT = f" plan </think> extra words <answer>\n{F}python\ndef f(s):\n    return s[::-1]\n{F}\n{F}input\n'ab'\n{F}\n</answer>"
OUTPUTS = {"[1, 2]": "[2, 4]", "'ab'": "'ba'"}  # what the executor would return


def solver_response(answer_block):
    return f" Tracing the code.</think>\n<answer>\n{answer_block}\n</answer>"


def test_one_iteration_on_canned_responses():
    rng = np.random.default_rng(0)
    buffers = SelfPlayBuffers.initial(seed_file=FIXTURES / "seed_io_head.jsonl",
                                      induction_seed_file=FIXTURES / "seed_code_f_head.jsonl", min_seeds=4)
    template = R1Template()

    # Deduction proposals: parse, "execute", score learnability from 8 sampled solver answers.
    prompt = template.wrap(propose_io_prompt(DEDUCTION_WORDING, sample_references(buffers[DED], rng, k=6)))
    assert prompt.text.count("<snippet_") == 6 and prompt.text.endswith("Assistant: <think>")
    rewards, admitted = [], []
    for response in (GOOD, NO_ANSWER, BAD_FORMAT):
        gen = generation_text(prompt.opening, response)
        parsed = parse_io_proposal(extract_answer(gen))
        if not parsed.ok:
            rewards.append(proposer_reward(valid=False, format_ok=False, r_learn=0.0))
            continue
        assert isinstance(parsed.value, IOProposal)
        task = parsed.value.to_triplet(OUTPUTS[parsed.value.input])
        solve = template.wrap(DED.solve_prompt(task))
        answers = [task.output] * 3 + ["[1, 2]"] * 5  # 3 of 8 learnability samples correct
        accs = [float(extract_solver_answer(extract_answer(generation_text(
            solve.opening, solver_response(f"{F}output\n{a}\n{F}"))), "output") == task.output) for a in answers]
        p = solve_rate(accs, n_samples=8)
        rewards.append(proposer_reward(valid=True, format_ok=format_ok(gen), r_learn=learnability(p)))
        if admit_to_buffer(valid=True, p=p):
            admitted.append(task)
    assert rewards == [0.625, -1.0, -1.0]  # the badly formatted valid proposal still enters the buffer
    assert admitted[0].snippet == ("def f(xs):\n    return [double_one(x) for x in xs] if False else "
                                   "[x * 2 for x in xs]")
    assert buffers.add(DED, admitted, step=1) == 2

    # Next step's solver batch starts with the two new deduction tasks.
    batch = sample_solver_tasks(buffers[DED], rng, batch_size=4, current_step=2)
    assert sorted(t.output for t in batch[:2]) == ["'ba'", "[2, 4]"]

    # Induction: a program from the union of the deduction/abduction buffers, 10 inputs + message.
    program = buffers.sample_program(rng)
    assert "f(<|YOUR INPUT WILL BE PLUGGED HERE|>)" in propose_induction_prompt(program)
    inputs = "".join(f"{F}input\n{j}\n{F}\n" for j in range(10))
    gen = generation_text("<think>", f" ok</think><answer>{inputs}{F}message\nkeeps its input\n{F}</answer>")
    proposal = parse_induction_proposal(extract_answer(gen)).value
    task = proposal.to_task(program, outputs=[f"<out {j}>" for j in range(10)])
    assert task.imports == program.imports and task.num_given == 5
    text = IND.solve_prompt(task)
    assert "```input_4\n4\n```" in text and "input_5" not in text
    code = extract_solver_program(solver_response(f"{F}python\ndef f(a):\n    return a\n{F}"))
    assert code == "def f(a):\n    return a\n"
    hidden_results = [True, True, None, True, True]  # one check could not be evaluated
    assert solver_reward(format_ok=True, accuracy=induction_accuracy(hidden_results)) == 1.0

    # TRR++ over the six groups, one reward and response length per sequence.
    names = [group_name(t, r) for t, r in groups(TASK_TYPES.values()) for _ in range(2)]
    seq_rewards = [0.625, -1.0, -0.5, -0.5, 1.0, -0.5, 1.0, 1.0, -1.0, 0.25, 1.0, -1.0]
    adv, stats = trr_advantages(seq_rewards, [30, 12, 5, 9, 8, 8, 4, 4, 7, 7, 20, 1], names)
    assert list(stats) == ["gen_code_i", "pred_code_i", "gen_code_o", "pred_code_o", "gen_code_f", "pred_code_f"]
    assert group_name(ABDUCTION, Role.PROPOSE) == "gen_code_i"
    # gen_code_o: rewards 1 and -0.5 over 8 tokens each: mu = 0.25, var = 0.5625 * 16/15.
    np.testing.assert_allclose(adv[4:6], [np.sqrt(15 / 16), -np.sqrt(15 / 16)], rtol=1e-6)
    assert np.all(np.abs(adv[2:4]) < 1e-3)  # pred_code_i: equal rewards, no signal
