"""Soft-label Bradley-Terry reward-model training on a tiny model built from config."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch

from rsft.learning.training.preference import RewardModelTraining, load_pairs, soft_bt_loss, train_reward_model
from rsft.parts.scoring.spec import build_scorer
from tests.conftest import make_model_dir


def test_loss_reduces_to_bradley_terry_and_honours_soft_labels():
    delta = torch.tensor([0.3, -1.2, 2.0])
    hard = soft_bt_loss(delta, torch.ones(3), torch.zeros(3))
    assert hard.item() == pytest.approx(-torch.nn.functional.logsigmoid(delta).mean().item())
    with_margin = soft_bt_loss(delta, torch.ones(3), torch.full((3,), 0.5))
    assert with_margin.item() == pytest.approx(-torch.nn.functional.logsigmoid(delta - 0.5).mean().item())
    # hp = 0.5: the loss is minimised at delta = 0, and its gradient there is zero
    d = torch.zeros(1, requires_grad=True)
    soft_bt_loss(d, torch.tensor([0.5]), torch.zeros(1)).backward()
    assert d.grad.item() == pytest.approx(0.0)
    # hp = 0.8: minimised where sigma(delta) = 0.8
    grid = torch.linspace(-4, 4, 801)
    losses = torch.stack([soft_bt_loss(g.view(1), torch.tensor([0.8]), torch.zeros(1)) for g in grid])
    assert torch.sigmoid(grid[losses.argmin()]).item() == pytest.approx(0.8, abs=0.01)


def synthetic_pairs(path, n, p, seed=0, margin=None):
    """chosen: digits only; rejected: the same with one digit replaced by a letter."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        good = "".join(rng.choice("0123456789") for _ in range(6))
        j = rng.randrange(6)
        bad = good[:j] + rng.choice("abc") + good[j + 1:]
        rows.append({"prompt": f"{i % 50}+{i % 7}=", "chosen": good, "rejected": bad, "p": p,
                     **({"margin": margin} if margin is not None else {})})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("pol") / "m", alphabet="0123456789+=abc", init_range=0.02)


def train(tmp_path, policy, p, margin=None, use_margin=None, seed=0, name=None):
    pairs = synthetic_pairs(tmp_path / f"pairs{p}-{margin}.jsonl", 600, p, margin=margin)
    cfg = RewardModelTraining(init=str(policy), learning_rate=3e-3, max_steps=80, batch_size=32, eval_fraction=0.2,
                              use_margin=use_margin, seed=seed)
    return train_reward_model(pairs, tmp_path / (name or f"rm{p}"), cfg)


def test_hard_labels_raise_held_out_accuracy(tmp_path, policy):
    report = train(tmp_path, policy, 1.0)
    assert report["eval_pairs"] > 50 and report["train_pairs"] > 400
    assert report["eval_before"]["accuracy"] < 0.8 and report["eval"]["accuracy"] >= 0.9
    assert report["eval"]["mean_predicted"] > 0.8  # calibrated towards hp = 1
    assert sum(b["pairs"] for b in report["eval"]["calibration"]) == report["eval_pairs"]
    # the output directory is a reward-model scorer that ranks the held-out kind of pair
    scorer = build_scorer({"name": "reward_model", "kwargs": {"path": str(tmp_path / "rm1.0")}})
    good, bad = scorer(prompts=["3+4=", "3+4="], completions=["123456", "12a456"])
    assert good.value > bad.value


@pytest.mark.slow  # a minute; test_cli_trains_on_half_labels_and_reports_no_accuracy keeps half labels in the default tier
def test_half_labels_keep_reward_gaps_near_zero(tmp_path, policy):
    report = train(tmp_path, policy, 0.5)
    hard = train(tmp_path, policy, 1.0)
    assert report["eval"]["mean_abs_gap"] < 0.25
    assert hard["eval"]["mean_abs_gap"] > 4 * report["eval"]["mean_abs_gap"]
    assert abs(report["eval"]["mean_predicted"] - 0.5) < 0.06


def test_bad_pairs_file_names_the_line(tmp_path):
    from rsft.core.errors import DataError

    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a", "chosen": "b"}\n')
    with pytest.raises(DataError, match=r"p\.jsonl:2: missing column 'rejected'"):
        load_pairs(f)
    f.write_text('{"prompt": "a", "chosen": "b", "rejected": "c", "p": 1.5}\n')
    with pytest.raises(DataError, match=r"p\.jsonl:1: 'p' must be a probability"):
        load_pairs(f)


def test_cli_trains_on_half_labels_and_reports_no_accuracy(tmp_path, policy):
    from tests.conftest import run_cli

    pairs = synthetic_pairs(tmp_path / "half.jsonl", 60, 0.5)
    proc = run_cli("reward-model", "train", str(pairs), "--init", str(policy), "--output", str(tmp_path / "rm"),
                   "--max-steps", "2", "--batch-size", "8", "--eval-fraction", "0.3", check=True)
    assert "accuracy n/a (every pair has p = 0.5)" in proc.stdout and (tmp_path / "rm" / "config.json").exists()
    missing = run_cli("reward-model", "train", str(tmp_path / "nope.jsonl"), "--init", str(policy),
                      "--output", str(tmp_path / "rm2"))
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert missing.stderr.strip() == f"rsft: error: {tmp_path / 'nope.jsonl'}: no such file"


def test_training_truncates_long_texts_from_the_left_like_the_scorer(policy):
    from transformers import AutoTokenizer

    from rsft.core.records import PreferencePair
    from rsft.learning.training.preference import PairCollator

    collator = PairCollator(AutoTokenizer.from_pretrained(policy), max_length=6)
    batch = collator([PreferencePair("1+2+3+4+5+6=", "21", "2a")])
    chosen, rejected = batch["input_ids"]  # [T], [T]
    assert not torch.equal(chosen, rejected)  # the completions, at the end, survive truncation


def test_a_soft_label_and_a_margin_are_not_counted_twice(tmp_path, policy):
    from rsft.core.errors import DataError

    p = 1 / (1 + math.exp(-1.0 / 0.5))  # what `export pairs --tau 0.5` writes for a reward gap of 1: 0.881
    with pytest.raises(DataError, match="both a soft label 'p' and a 'margin'"):
        train(tmp_path, policy, p, margin=1.0)
    # chosen on purpose: the loss fits sigma(delta - m) = p, and that is what the calibration reports
    both = train(tmp_path, policy, p, margin=1.0, use_margin=True, name="both")
    assert both["eval"]["mean_predicted"] == pytest.approx(p, abs=0.03)
    assert both["eval"]["mean_abs_gap"] > 2.5  # delta itself sits near m + logit(p) = 3, counted twice
    # the soft label alone: sigma(delta) = p
    alone = train(tmp_path, policy, p, name="alone")
    assert alone["eval"]["mean_predicted"] == pytest.approx(p, abs=0.03)
    assert alone["eval"]["mean_abs_gap"] < 2.5


def test_the_seed_fixes_the_new_score_head(tmp_path, policy):
    pairs = synthetic_pairs(tmp_path / "pairs.jsonl", 64, 1.0)
    reports = []
    for name in ("a", "b"):
        cfg = RewardModelTraining(init=str(policy), max_steps=2, batch_size=16, eval_fraction=0.25, seed=5)
        reports.append(train_reward_model(pairs, tmp_path / name, cfg))
    assert reports[0]["eval_before"] == reports[1]["eval_before"] and reports[0]["train_loss"] == reports[1]["train_loss"]
    from safetensors.torch import load_file

    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("row, needle", [
    ({"prompt": "a", "chosen": "b", "rejected": "c", "margin": "big"}, "'margin' must be a number"),
    ({"prompt": "a", "chosen": "b", "rejected": "c", "p": "0.5"}, "'p' must be a number"),
])
def test_non_numeric_labels_name_the_line(tmp_path, row, needle):
    from rsft.core.errors import DataError

    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match=needle):
        load_pairs(f)
