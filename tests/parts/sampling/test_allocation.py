"""Adaptive allocation: early stopping, carry and GVM-RAFT's split (stage-level unit tests with the fake engine)."""

from __future__ import annotations

import math

import pytest

from rsft.core.records import Group, Prompt, Sample, Score
from rsft.parts.sampling.allocation import (
    carry_limits,
    early_stop,
    gvm_extend,
    gvm_plan,
    gvm_weight,
    largest_remainder,
)
from rsft.parts.sampling.base import SamplingParams
from rsft.parts.sampling.fake import FakeEngine


def exact_a(prompts, completions, **kwargs):
    return [float(c.startswith("a")) for c in completions]


def prompt(pid, outputs):
    return Prompt(pid, text=pid, fields={"fake": outputs})


def test_gvm_weight_follows_the_formula():
    assert gvm_weight(0.0) == 0.0 and gvm_weight(1.0) == 0.0
    p = 0.2
    assert gvm_weight(p) == pytest.approx(math.sqrt(p * (1 - p)) / math.sqrt(p + 1e-3 / p))
    # low-but-nonzero acceptance gets the most; near-solved prompts the least
    assert gvm_weight(0.25) > gvm_weight(0.5) > gvm_weight(0.95) > 0


@pytest.mark.parametrize("total, weights, caps", [
    (10, [1, 1, 1], [10, 10, 10]), (7, [0.5, 0.25, 0.25], [100] * 3), (9, [1, 0, 2], [100, 100, 2]),
    (100, [1, 1], [3, 4]),
])
def test_largest_remainder_keeps_the_total_within_caps(total, weights, caps):
    counts = largest_remainder(total, weights, caps)
    assert sum(counts) == min(total, sum(c for c, w in zip(caps, weights) if w > 0))
    assert all(c <= cap for c, cap in zip(counts, caps))
    assert all(c == 0 for c, w in zip(counts, weights) if w == 0)


@pytest.mark.parametrize("total, weights, caps, expected", [
    # worked by hand: shares 10 * [0.1, 0.3, 0.6] = [1, 3, 6], exact
    (10, [1, 3, 6], [100] * 3, [1, 3, 6]),
    # shares 7 * [0.5, 0.25, 0.25] = [3.5, 1.75, 1.75]: floors [3, 1, 1], the two largest remainders
    # (0.75, 0.75) get one more each; a fill-in-order function would give [7, 0, 0]
    (7, [0.5, 0.25, 0.25], [100] * 3, [3, 2, 2]),
    # the heavy last prompt is capped at 2: shares 9 * [1/3, 0, 2/3] = [3, 0, 6], the cap refuses 4,
    # which go to the only other open prompt
    (9, [1, 0, 2], [100, 100, 2], [7, 0, 2]),
    # 12 * [5, 1, 2] / 8 = [7.5, 1.5, 3]: floors [7, 1, 3], the one left goes to the tied 0.5 remainders'
    # earlier prompt; reversed, 12 * [2, 1, 5] / 8 = [3, 1.5, 7.5] gives [3, 2, 7] by the same tie rule
    (12, [5, 1, 2], [100] * 3, [8, 1, 3]),
    (12, [2, 1, 5], [100] * 3, [3, 2, 7]),
])
def test_largest_remainder_is_proportional_to_the_weights(total, weights, caps, expected):
    """Counts follow the weights (Hamilton's method), not the order prompts come in: a weight-blind
    function that fills prompts in order up to their caps passes the total and cap checks above but not
    these. Ties between equal remainders go to the earlier prompt."""
    assert largest_remainder(total, weights, caps) == expected


def test_early_stop_stops_each_prompt_at_m_distinct_accepted():
    easy = prompt("easy", ["a1", "a2", "b", "b"])
    hard = prompt("hard", ["b", "b", "b", "a1", "b", "b", "a1", "a2"])
    never = prompt("never", ["b"])
    groups = early_stop(FakeEngine(), exact_a, [easy, hard, never], SamplingParams(), wave=2, max_n=8,
                        target=2, accept_min=1.0)
    counts = {g.prompt.id: len(g.samples) for g in groups}
    assert counts == {"easy": 2, "hard": 8, "never": 8}
    assert [s.index for s in groups[1].samples] == list(range(8))  # indices continue across waves
    assert all(len(g.scores) == len(g.samples) for g in groups)


def test_give_up_after_stops_hopeless_prompts():
    late = prompt("late", ["b", "b", "b", "a"])
    early = prompt("early", ["b", "a"])
    groups = early_stop(FakeEngine(), exact_a, [late, early], SamplingParams(), wave=1, max_n=8, target=1,
                        accept_min=1.0, give_up_after=3)
    assert {g.prompt.id: len(g.samples) for g in groups} == {"late": 3, "early": 2}


def scored_group(pid, accepted, n, tokens=4):
    p = Prompt(pid, text=pid, fields={"fake": ["a" * tokens]})
    samples = tuple(Sample(pid, i, "x", tuple(range(tokens))) for i in range(n))
    return Group(p, samples, tuple(Score(1.0 if i < accepted else 0.0) for i in range(n)))


def test_gvm_plan_spends_the_budget_on_mixed_prompts():
    pre = [scored_group("zero", 0, 4), scored_group("all", 4, 4), scored_group("quarter", 1, 4),
           scored_group("half", 2, 4)]
    plan = gvm_plan(pre, accept_min=1.0, budget_tokens=None, uniform_n=8, max_per_prompt=32)
    # uniform budget: 8 samples x 4 prompts x 4 tokens = 128 tokens; 64 spent; 16 samples left
    assert plan.budget_tokens == 128 and plan.presample_tokens == 64
    assert sum(plan.extra.values()) == 16
    assert plan.extra["zero"] == 0 and plan.extra["all"] == 0
    assert plan.extra["quarter"] > plan.extra["half"] > 0


def test_gvm_plan_keeps_the_total_when_caps_bind():
    # one mixed prompt capped at 6 extra; the rest of the 8x budget spills to the unsolved, then solved
    pre = [scored_group("zero1", 0, 2), scored_group("zero2", 0, 2), scored_group("half", 1, 2),
           scored_group("all", 2, 2)]
    plan = gvm_plan(pre, accept_min=1.0, budget_tokens=None, uniform_n=8, max_per_prompt=8)
    assert sum(plan.extra.values()) == 24  # 32 samples of budget - 8 presampled
    assert plan.extra == {"half": 6, "zero1": 6, "zero2": 6, "all": 6}
    small = gvm_plan(pre, accept_min=1.0, budget_tokens=4 * 20, uniform_n=8, max_per_prompt=8)
    assert small.extra == {"half": 6, "zero1": 3, "zero2": 3, "all": 0}  # 12 extra: GVM share, then unsolved


def test_gvm_extend_continues_indices():
    pre = [scored_group("q", 1, 4)]
    grown = gvm_extend(FakeEngine(), exact_a, pre, {"q": 3}, SamplingParams())
    assert [s.index for s in grown[0].samples] == list(range(7)) and len(grown[0].scores) == 7


def test_early_stop_limits_set_each_prompts_maximum():
    skipped = prompt("skipped", ["a"])
    short = prompt("short", ["b"])
    full = prompt("full", ["b"])
    groups = early_stop(FakeEngine(), exact_a, [skipped, short, full], SamplingParams(), wave=2, max_n=6,
                        target=1, accept_min=1.0, limits={"skipped": 0, "short": 3})
    assert {g.prompt.id: len(g.samples) for g in groups} == {"skipped": 0, "short": 3, "full": 6}
    assert [s.index for s in groups[1].samples] == [0, 1, 2]  # the last wave is cut to the maximum
    assert groups[0].scores == ()


def test_carry_limits_skip_prompts_solved_before():
    ps = [prompt("old", ["a"]), prompt("new", ["a"])]
    assert carry_limits(ps, {"old"}, n=8, solved_samples=0) == {"old": 0, "new": 8}
    assert carry_limits(ps, {"old"}, n=8, solved_samples=1) == {"old": 1, "new": 8}


def test_carry_needs_replay_and_checks_solved_samples():
    from rsft.core.config import build_config
    from rsft.core.errors import ConfigError

    with pytest.raises(ConfigError, match="carry.*train.replay: all_rounds"):
        build_config({"sampling": {"allocation": "carry"}, "train": {"replay": "none"}})
    with pytest.raises(ConfigError, match="sampling.solved_samples"):
        build_config({"sampling": {"allocation": "carry", "solved_samples": -1}, "train": {"replay": "all_rounds"}})
    cfg = build_config({"sampling": {"allocation": "carry", "solved_samples": 1}, "train": {"replay": "all_rounds"}})
    assert cfg.sampling.solved_samples == 1
