from rsft.core.records import Group, Prompt, Sample
from rsft.inputs.tasks.countdown import countdown_scorer, evaluate, make_task
from rsft.parts.scoring.base import score_groups
from rsft.parts.selection import DedupRule, PassesRule, select


def score(completions, numbers=(3, 7, 25), target=46, credit=0.1):
    n = len(completions)
    return countdown_scorer(credit)(prompts=[""] * n, completions=completions, numbers=[list(numbers)] * n,
                                    target=[target] * n)


def test_tinyzero_rules():
    right, wrong, reuse, chars, none, last = score([
        "<answer>25+3*7</answer>", "<answer>25+3+7</answer>", "<answer>25+25-4</answer>",
        "<answer>25+3*7 = 46</answer>", "46", "<answer>1</answer> then <answer>7*3+25</answer>"])
    assert right.value == 1.0 and last.value == 1.0
    assert wrong.value == 0.1 and wrong.parts == {"format": 1.0, "numbers": 1.0, "correct": 0.0}
    assert reuse.value == 0.1 and reuse.parts["numbers"] == 0.0
    assert chars.value == 0.1 and chars.parts["numbers"] == 0.0
    assert none.value == 0.0 and none.parts["format"] == 0.0


def test_evaluator_is_not_eval():
    assert evaluate("__import__('os')") is None
    assert evaluate("2**10") is None
    assert evaluate("1/0") is None
    assert evaluate("(3+4)*2") == (14.0, [3, 4, 2])


def test_gold_solves_its_problem_and_splits_are_disjoint():
    task = make_task(n_train=100, n_eval=50, n_gold=200, seed=3)
    ps = [p for p, _ in task.gold]
    out = task.scorer([p.text for p in ps], [c for _, c in task.gold], numbers=[p.fields["numbers"] for p in ps],
                      target=[p.fields["target"] for p in ps])
    assert all(s.value == 1.0 for s in out)
    keys = [(tuple(sorted(p.fields["numbers"])), p.fields["target"]) for p in task.train + task.eval + ps]
    assert len(set(keys)) == len(keys)
    assert all(3 <= len(p.fields["numbers"]) <= 4 for p in task.train)


def test_many_valid_answers_exercise_dedup():
    p = Prompt("c", text="3 7 25>46:", fields={"numbers": [3, 7, 25], "target": 46})
    texts = ["<answer>25+3*7</answer>", "<answer>25 + 3*7</answer>", "<answer>7*3+25</answer>",
             "<answer>3*7+25</answer>", "<answer>25+7</answer>"]
    g = score_groups(countdown_scorer(), [Group(p, tuple(Sample("c", i, t) for i, t in enumerate(texts)))])
    sel = select(g, [PassesRule(rule="passes"), DedupRule(rule="dedup", key="answer")])
    assert sel.survivors == [("passes", 4), ("dedup", 3)]
