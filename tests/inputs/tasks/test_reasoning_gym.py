"""The reasoning_gym task family: disjoint splits, chat prompts, and each dataset's own checker as the verifier."""

from __future__ import annotations

import pytest

from rsft.core.config import build_config
from rsft.core.errors import ConfigError
from rsft.core.registry import resolve

pytest.importorskip("reasoning_gym")


def task(dataset, **params):
    cfg = build_config({"task": {"name": "reasoning_gym", "params": {"dataset": dataset, **params}}})
    return resolve("task", cfg.task, seed=cfg.seed)


def score(t, prompts, completions):
    return t.scorer([p.messages for p in prompts], completions, rg_index=[p.fields["rg_index"] for p in prompts])


@pytest.mark.parametrize("dataset, params", [("chain_sum", {"min_terms": 3, "max_terms": 4}),
                                             ("spell_backward", {}),
                                             ("rotate_matrix", {})])  # rotate_matrix: multi-line answers
def test_splits_prompts_and_the_datasets_own_checker(dataset, params):
    t = task(dataset, size=30, eval_size=10, **params)
    assert len(t.train) == 30 and 0 < len(t.eval) <= 10
    questions = lambda ps: {p.messages[-1]["content"] for p in ps}  # noqa: E731
    assert not questions(t.train) & questions(t.eval)  # the splits never overlap
    assert {p.id for p in t.train}.isdisjoint(p.id for p in t.eval)
    p = t.train[0]
    assert p.messages[0]["role"] == "system" and "<answer>" in p.messages[0]["content"]  # reasoning-gym's own
    assert p.messages[-1]["role"] == "user"
    gold = p.fields["answer"]
    other = t.train[1].fields["answer"] if t.train[1].fields["answer"] != gold else gold + "x"
    right, wrong, unformatted, last = score(t, [p] * 4, [
        f"Thinking...\n<answer>{gold}</answer>",
        f"<answer>{other}</answer>",
        f"The answer is {gold}.",  # no answer tags: a format failure, not a wrong answer
        f"<answer>{other}</answer> no wait <answer>{gold}</answer>",  # the last answer counts
    ])
    assert (right.value, right.parts, right.answer) == (1.0, {"format": 1.0, "correct": 1.0}, gold)
    assert wrong.value < 1.0 and wrong.parts == {"format": 1.0, "correct": 0.0}
    assert unformatted.value == 0.0 and unformatted.parts["format"] == 0.0 and unformatted.answer is None
    assert last.value == 1.0
    if dataset == "rotate_matrix":
        assert "\n" in gold  # the multi-line answer survives extraction whole


def test_the_same_seed_gives_the_same_task_and_another_seed_another():
    a, b, c = task("chain_sum", size=5, eval_size=2), task("chain_sum", size=5, eval_size=2), \
        task("chain_sum", size=5, eval_size=2, seed=1)
    assert [p.messages for p in a.train] == [p.messages for p in b.train] != [p.messages for p in c.train]


def test_bad_params_are_one_line_naming_the_key():
    with pytest.raises(ConfigError, match=r"task.params.dataset.*no dataset 'chain_sun'"):
        task("chain_sun")
    with pytest.raises(ConfigError, match=r"key 'task.params' of task 'reasoning_gym' \(chain_sum\)"):
        task("chain_sum", size=5, eval_size=2, no_such_option=3)
    with pytest.raises(ConfigError, match=r"needs option 'dataset'"):
        resolve("task", build_config({"task": {"name": "reasoning_gym"}}).task)


def test_the_task_sections_system_prompt_and_template_apply():
    cfg = build_config({"task": {"name": "reasoning_gym", "params": {"dataset": "chain_sum", "size": 3, "eval_size": 1},
                                 "system_prompt": "Be brief.", "prompt_template": "Q: {question}"}})
    p = resolve("task", cfg.task, seed=0).train[0]
    assert p.messages[0] == {"role": "system", "content": "Be brief."} and p.messages[1]["content"].startswith("Q: ")
    bare = build_config({"task": {"name": "reasoning_gym", "params": {"dataset": "chain_sum", "size": 3},
                                  "system_prompt": ""}})
    assert [m["role"] for m in resolve("task", bare.task, seed=0).train[0].messages] == ["user"]
