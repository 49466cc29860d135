"""Selection science, rule by rule: the pass-rate band, the diverse tie-break, the matched random control, the
paired bootstrap interval rsft compare reports, and the rationalization's hint and leak check."""

from __future__ import annotations

import pytest

from rsft.core.config import build_config
from rsft.core.errors import ConfigError
from rsft.core.records import Group, Prompt, Sample, Score
from rsft.learning.monitoring.compare import paired_bootstrap
from rsft.parts.selection import DiverseRule, PassRateRule, build_rule
from rsft.stages.rationalize import hinted, leaked
from rsft.stages.select import RandomControl


def group(values, texts=None, pid="p"):
    texts = texts or [f"t{i}" for i in range(len(values))]
    samples = tuple(Sample(pid, i, t) for i, t in enumerate(texts))
    scores = tuple(Score(v) if v is not None else Score(None, error="boom") for v in values)
    return Group(Prompt(pid, text="q"), samples, scores)


@pytest.mark.parametrize(("low", "high", "kept"), [(0.2, 0.8, 5), (0.5, 1.0, 0), (0.4, 0.4, 5), (0.0, 0.39, 0)])
def test_pass_rate_keeps_the_whole_group_when_its_rate_is_in_the_band(low, high, kept):
    g = group([1.0, 1.0, 0.0, 0.0, 0.0])  # rate 2/5 = 0.4
    assert len(PassRateRule(min=low, max=high)(g).samples) == kept


def test_pass_rate_threshold_decides_what_passes():
    g = group([0.6, 0.6, 0.6, 0.1])  # at threshold 0.5: rate 0.75; at 1.0: rate 0
    assert len(PassRateRule(min=0.7, max=0.8, threshold=0.5)(g).samples) == 4
    assert len(PassRateRule(min=0.7, max=0.8)(g).samples) == 0


def test_pass_rate_after_a_rule_that_keeps_by_score_is_refused_when_the_config_loads():
    with pytest.raises(ConfigError, match=r"selection.rules.1.*pass_rate after passes"):
        build_config({"selection": {"rules": [{"rule": "passes"}, {"rule": "pass_rate", "min": 0.2}]}})
    with pytest.raises(ConfigError, match=r"selection.rules.0.max"):
        build_config({"selection": {"rules": [{"rule": "pass_rate", "min": 0.9, "max": 0.2}]}})
    cfg = build_config({"selection": {"rules": [{"rule": "pass_rate", "min": 0.2, "max": 0.8}, {"rule": "passes"}]}})
    assert [r.rule for r in cfg.selection.rules] == ["pass_rate", "passes"]


def test_diverse_prefers_among_equals_the_sample_least_like_those_kept():
    texts = ["five plus seven is 12", "five plus seven is 12.", "Five plus seven is 12 ", "add 7 to 5: that gives 12"]
    g = group([1.0, 1.0, 1.0, 1.0], texts)
    kept = [s.text for s in DiverseRule(n=2)(g).samples]
    assert kept == ["five plus seven is 12", "add 7 to 5: that gives 12"]  # cap(2) would keep the first two
    assert [s.text for s in build_rule({"rule": "cap", "n": 2})(g).samples] == texts[:2]


def test_diverse_never_keeps_a_worse_score_for_variety():
    g = group([1.0, 1.0, 0.5], ["same answer", "same answer!", "something else entirely"])
    assert [s.text for s in DiverseRule(n=2)(g).samples] == ["same answer", "same answer!"]


def test_diverse_on_the_answer_key():
    g = group([1.0, 1.0, 1.0], ["a", "b", "c"])
    g = Group(g.prompt, g.samples, (Score(1.0, answer="12"), Score(1.0, answer="12"), Score(1.0, answer="twelve")))
    assert [s.text for s in DiverseRule(n=2, key="answer")(g).samples] == ["a", "c"]


def test_diverse_key_names_are_checked():
    with pytest.raises(ConfigError, match=r"selection.rules.0.key"):
        build_config({"selection": {"rules": [{"rule": "diverse", "key": "nope"}]}})


def test_random_control_keeps_the_chains_count_drawn_from_every_scored_sample():
    g = group([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, None, 0.0])  # one error: never drawn
    draws = [RandomControl(seed, 0)(g, 3) for seed in range(40)]
    assert all(len(d.samples) == 3 for d in draws)
    assert all(6 not in {s.index for s in d.samples} for d in draws)
    assert RandomControl(0, 0)(g, 3) == draws[0]  # seeded: the same draw again
    failures = sum(c.value == 0.0 for d in draws for c in d.scores)
    assert failures > 60  # of 120 draws, 6 in 7 of the pool are failures: a control that kept the best would have 80
    assert len({tuple(s.index for s in d.samples) for d in draws}) > 10
    assert len(RandomControl(0, 0)(g, 20).samples) == 7  # never more than the pool


def test_paired_bootstrap_matches_the_hand_computed_binomial_interval():
    # differences 1,1,1,1,0: a resampled mean is Binomial(5, 0.8)/5. P(mean <= 0.2) = 0.0067 and
    # P(mean <= 0.4) = 0.0579, so the 2.5% quantile is 0.4; P(mean = 1) = 0.328, so the 97.5% one is 1.0
    iv = paired_bootstrap([0, 0, 0, 0, 0], [1, 1, 1, 1, 0], resamples=20_000, seed=1)
    assert iv.diff == pytest.approx(0.8)
    assert (iv.low, iv.high) == (pytest.approx(0.4), pytest.approx(1.0))
    assert not iv.contains_zero and iv.verdict() == "better"


def test_paired_bootstrap_pairs_the_prompts():
    # b is a plus one prompt solved more, on 50 prompts: unpaired, 0.02 would be noise; paired, every
    # difference is 0 but one, so the interval is [0, 0.06] at most and contains 0 only at its edge
    a = [1.0] * 25 + [0.0] * 25
    b = a[:]
    b[30] = 1.0
    iv = paired_bootstrap(a, b, resamples=5000)
    assert iv.diff == pytest.approx(0.02) and iv.low == 0.0 and iv.high <= 0.06
    assert iv.contains_zero and iv.verdict().startswith("no difference")


def test_hinted_prompt_rewrites_the_last_user_turn_only():
    p = Prompt("1", messages=({"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2?"}),
               fields={"answer": "4"})
    h = hinted(p, "{prompt} (the answer is {answer})", "answer")
    assert h.messages[0] == p.messages[0] and h.messages[1]["content"] == "2+2? (the answer is 4)"
    assert h.id == p.id and h.fields == p.fields
    with pytest.raises(Exception, match="no field 'gold'"):
        hinted(p, "{prompt}{answer}", "gold")


@pytest.mark.parametrize(("text", "why"), [
    ("Using the hint, 4.", "mentions the hint"),
    ("The answer is 4.\nBecause 2 and 2 make 4.", "states the answer before its reasoning"),
    ("2 and 2 make 4.\n#### 4", None),
    ("4.\nTwo and two make four.", "states the answer before its reasoning"),
    ("**Answer: 4**\n2+2=4", "states the answer before its reasoning"),
    ("4", None),
])
def test_leak_check(text, why):
    assert leaked(text, "4") == why
