"""The reward-hacking metrics on a run with a known answer: the score stage's judge pass, and what the
select and metrics stages make of it (`judge_rank_correlation`, `judge_precision_kept`, `selection_score`,
`uniform_share`), every expected value worked out by hand below, ties included.

The stages run for real on a real run directory; only the engine is the scripted `fake` one, so the
samples (and with them every score) are fixed in advance. `rm` stands in for a reward model, `judge` for
a verifier (`eval.scorer`), both table look-ups.
"""

from __future__ import annotations

import json
import math

import pytest

from rsft.parts.metrics import spearman

OUTPUTS = {"A": ["a1", "a2", "a3", "a4"], "B": ["b1", "b2", "b3", "b4"], "C": ["c1", "c2", "c3", "c4"]}
RM = {"a1": 0.9, "a2": 0.9, "a3": 0.5, "a4": 0.1, "b1": 0.8, "b2": 0.3, "b3": 0.3, "b4": 0.3,
      "c1": 0.5, "c2": 0.5, "c3": 0.5, "c4": 0.5}
JUDGE = {"a1": 0.0, "a2": 1.0, "a3": 1.0, "a4": 0.0, "b1": 1.0, "b2": 0.0, "b3": 1.0, "b4": 0.0,
         "c1": 1.0, "c2": 1.0, "c3": 1.0, "c4": 1.0}


def rm(prompts, completions, **kwargs):
    return [RM[c] for c in completions]


def judge(prompts, completions, **kwargs):
    return [JUDGE[c] for c in completions]


def test_spearman_averages_tied_ranks():
    """By hand: xs ranks (1-based, ties averaged) [1.5, 1.5, 3, 4], ys [1, 2.5, 2.5, 4]; both means 2.5;
    deviations [-1, -1, .5, 1.5] and [-1.5, 0, 0, 1.5]; sum of products 1.5 + 2.25 = 3.75; norms
    sqrt(1 + 1 + .25 + 2.25) = sqrt(4.5) and sqrt(2.25 + 2.25) = sqrt(4.5): rho = 3.75 / 4.5."""
    assert spearman([1, 1, 2, 3], [10, 20, 20, 30]) == pytest.approx(3.75 / 4.5)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) is None  # constant: no ranking to correlate


def test_the_reward_hacking_metrics_of_a_run_with_a_known_answer(tmp_path, model_dir, monkeypatch):
    from rsft.core.config import build_config
    from rsft.loop.rounds import open_run
    from rsft.stages.runner import run_stage

    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "hack_scorers.py").write_text(
        "from tests.learning.monitoring.test_reward_hacking_metrics import rm, judge\n")
    rows = [{"prompt": f"question {k}", "fake": v} for k, v in OUTPUTS.items()]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "eval.jsonl").write_text(json.dumps({"prompt": "held out", "fake": ["a2"]}) + "\n")
    cfg = build_config({
        "name": "hack", "output_dir": str(tmp_path / "runs"), "model": {"path": str(model_dir)},
        "task": {"name": "dataset", "train": str(tmp_path / "train.jsonl"), "eval": str(tmp_path / "eval.jsonl")},
        "scorer": "hack_scorers:rm", "eval": {"scorer": "hack_scorers:judge", "n": 1, "k": [1]},
        "sampling": {"engine": "fake", "n": 4, "max_new_tokens": 8},
        "selection": {"decontaminate": None, "rules": [{"rule": "passes", "min": 0.5}, {"rule": "top_k", "k": 2}]},
        "monitor": {"triggers": [{"trigger": "reward_hacking"}]},
        "train": {"max_steps": 1, "batch_size": 2},
    })
    assert cfg.judge_samples  # a reward_hacking trigger and an eval.scorer that differs from the scorer
    run = open_run(cfg)
    for stage in ("sample", "score", "select", "train", "eval", "metrics"):
        run_stage(run, 0, stage)
    scored = [json.loads(x) for x in run.round(0).scored.read_text().splitlines()]
    # the score stage's judge pass: every sample carries the judge's verdict beside the rm's value
    for g in scored:
        for s, c in zip(g["samples"], g["scores"], strict=True):
            assert (c["value"], c["parts"]["judge"]) == (RM[s["text"]], JUDGE[s["text"]])
    m = json.loads(run.round(0).metrics_file.read_text())
    # kept (passes 0.5, then the top 2 of each group): a1, a2 (0.9, 0.9); b1 (0.8, the only pass); two of
    # C's four 0.5s
    assert m["kept"] == 5
    assert m["selection_score"] == pytest.approx((0.9 + 0.9 + 0.8 + 0.5 + 0.5) / 5)
    # the judge accepts a2, b1 and both C samples, not a1: 4 of 5
    assert m["judge_precision_kept"] == pytest.approx(4 / 5)
    # A and B got several rewards, C one reward for all four samples: 1 of 3 groups
    assert m["uniform_share"] == pytest.approx(1 / 3)
    # Spearman over all 12 (rm, judge) pairs. rm's ranks, ties averaged: a4 1; b2, b3, b4 3; a3 and the
    # four C's 7; b1 10; a1, a2 11.5. The judge's: its four 0s (a1, a4, b2, b4) 2.5, its eight 1s 8.5.
    # Both means 6.5. rm deviations: a1 5, a2 5, a3 .5, a4 -5.5, b1 3.5, b2..b4 -3.5, C .5 each; the
    # judge's: -4 for a 0, +2 for a 1. Sum of products: -20 + 10 + 1 + 22 + 7 + 14 - 7 + 14 + 4 = 45;
    # squared deviations: 130.5 and 4 * 16 + 8 * 4 = 96.
    # (0.4020; Pearson on the raw values would give 0.3197)
    assert m["judge_rank_correlation"] == pytest.approx(45 / math.sqrt(130.5 * 96), abs=1e-12)
