"""Triggers on synthetic round histories: each fires exactly when its condition holds."""

from __future__ import annotations

import pytest

from rsft.core.config import build_config
from rsft.core.errors import ConfigError
from rsft.learning.monitoring.triggers import EntropyCollapse, RewardHacking, StalledGain, UniformGroups


def rows(*rounds, base=0.05):
    out = [{"round": "base", "eval": {"greedy_pass@1": base}}]
    for i, r in enumerate(rounds):
        out.append({"round": i, **r})
    return out


def test_entropy_collapse_compares_the_student_with_itself_when_a_teacher_sampled_round_0():
    """A confident teacher's round 0 (0.9) against the student's own rounds (0.5, 0.3, 0.06): measured from
    the teacher the fall is 93% and would fire; from the student's first round it is 88%: not yet. A
    round the teacher sampled, however low its entropy, says nothing about the student."""
    t = EntropyCollapse()
    history = rows({"entropy_mean": 0.9, "sampler": "teacher"}, {"entropy_mean": 0.5, "sampler": "policy"},
                   {"entropy_mean": 0.3, "sampler": "policy"}, {"entropy_mean": 0.06, "sampler": "policy"})
    assert t(history) is None
    fell = EntropyCollapse(min=None)(rows({"entropy_mean": 0.9, "sampler": "teacher"},
                                          {"entropy_mean": 0.5, "sampler": "policy"},
                                          {"entropy_mean": 0.04, "sampler": "policy"}))
    assert "fell 92% from round 1" in fell  # 1 - 0.04/0.5, from the student's first round
    assert t(rows({"entropy_mean": 0.01, "sampler": "teacher"})) is None  # every round a teacher's: never
    assert EntropyCollapse(min=None)(rows({"entropy_mean": 0.9, "sampler": "teacher"},
                                          {"entropy_mean": 0.05, "sampler": "policy"})) is None  # one policy round


def test_entropy_collapse_by_floor_and_by_fall():
    t = EntropyCollapse(min=0.05, drop=0.9)
    assert t(rows({"entropy_mean": 0.8})) is None
    assert "below 0.05" in t(rows({"entropy_mean": 0.04}))
    assert "fell 91%" in t(rows({"entropy_mean": 0.8}, {"entropy_mean": 0.3}, {"entropy_mean": 0.072}))
    assert t(rows({"entropy_mean": 0.8}, {"entropy_mean": 0.09})) is None  # fell 88.75%: not yet
    assert t(rows({"entropy_mean": None})) is None  # an engine that does not measure it never fires


def test_stalled_gain_needs_every_recent_round_flat():
    t = StalledGain(rounds=2, min_gain=0.01)
    ev = lambda p: {"eval": {"greedy_pass@1": p}}  # noqa: E731
    assert t(rows(ev(0.3), ev(0.305), ev(0.31))) == (
        "held-out greedy pass@1 gained less than 0.01 in each of the last 2 rounds (+0.005, +0.005)")
    assert t(rows(ev(0.3), ev(0.5), ev(0.505))) is None  # one flat round is not a stall
    assert t(rows(ev(0.06))) is None  # too few rounds to say


def test_uniform_groups():
    assert UniformGroups(max_share=0.9)(rows({"uniform_share": 0.95})) == "95% of prompts got the same reward for every sample"
    assert UniformGroups(max_share=0.9)(rows({"uniform_share": 0.85})) is None


def test_reward_hacking_when_the_selection_score_rises_and_the_judge_does_not():
    t = RewardHacking()
    a = {"selection_score": -2.5, "eval": {"greedy_pass@1": 0.07}, "judge_precision_kept": 0.072}
    b = {"selection_score": 1.2, "eval": {"greedy_pass@1": 0.068}, "judge_precision_kept": 0.072}
    assert "rose -2.500 -> 1.200" in t(rows(a, b))
    c = {"selection_score": 1.2, "eval": {"greedy_pass@1": 0.20}, "judge_precision_kept": 0.072}
    assert t(rows(a, c)) is None  # the judge kept up
    d = {"selection_score": -2.6, "eval": {"greedy_pass@1": 0.07}, "judge_precision_kept": 0.03}
    assert "precision on kept samples fell 7.2% -> 3.0%" in t(rows(a, d))
    assert "accepts only 3%" in RewardHacking(min_precision=0.05)(rows(d))


def test_triggers_come_from_the_config_with_their_options_checked(tmp_path, monkeypatch):
    (tmp_path / "my_trig.py").write_text("def late(history, after: int = 1):\n"
                                         "    return 'late' if len(history) - 1 > after else None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = build_config({"monitor": {"action": "stop", "triggers": [{"trigger": "my_trig:late", "after": 2},
                                                                  {"trigger": "stalled_gain", "rounds": 3}]}})
    user, stall = cfg.monitor.triggers
    assert user(rows({}, {})) is None and user(rows({}, {}, {})) == "late" and stall.rounds == 3
    for bad, needle in [({"trigger": "entropy_colapse"}, "unknown monitor 'entropy_colapse'"),
                        ({"trigger": "stalled_gain", "round": 2}, "monitor.triggers.0.round"),
                        ({"trigger": "my_trig:late", "afterr": 2}, "monitor.triggers.0.afterr"),
                        ({"trigger": "stalled_gain", "action": "explode"}, "monitor.triggers.0.action")]:
        with pytest.raises(ConfigError, match=needle):
            build_config({"monitor": {"triggers": [bad]}})
