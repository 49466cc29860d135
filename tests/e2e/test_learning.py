"""Rejection sampling does the work: held-out accuracy rises round over round on the real tiny model."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ROOT, run_cli

# the whole module is the slow tier: its run (a warm start, then 3 rounds) takes 3 to 10 minutes on 2 cores,
# and CI ran the default tier past 15 minutes with it; the default tier's 3-round run is the README's
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    out = tmp_path_factory.mktemp("learn")
    run_cli("run", str(ROOT / "tests" / "e2e" / "learn.yaml"), f"output_dir={out}", check=True)
    return out / "learn"


GAIN = 0.15  # see test_held_out_greedy_accuracy_rises


def curve_of(run_dir):
    rows = json.loads(run_cli("metrics", str(run_dir), "--json", check=True).stdout)
    return [r["eval"]["greedy_pass@1"] for r in rows], rows


def test_held_out_greedy_accuracy_rises(learned):
    """Held-out greedy pass@1 rises by at least GAIN = 15 points over 3 rounds, from a base of at most 25%.

    A tiny model's learning curve is chaotic: the last bits of a float differ between CPUs (AVX2 against
    AVX-512), and the curve then differs as much as it does between seeds. So the margin is set from seeds:
    learn.yaml with seeds 1..6 on an AMD EPYC (AVX2) gained +65, +25.5, +67, +58.5, +29 and +56.5 points
    (base 10.5-23.5%); the lowest is 10 points above GAIN. The earlier config (500 prompts, 150 fixed steps
    a round) gained only +9.5 on that CPU, which this test fails. test_learning_holds_over_seeds (slow)
    asks the same of three seeds, and +30 of their median."""
    curve, rows = curve_of(learned)
    assert len(curve) == 4, curve  # base and 3 rounds
    assert curve[0] <= 0.25 and curve[-1] >= curve[0] + GAIN, curve
    assert [r["acceptance_rate"] for r in rows[1:]] == sorted(r["acceptance_rate"] for r in rows[1:])


@pytest.mark.slow
def test_learning_holds_over_seeds(tmp_path):
    """Three more seeds of the same run: each gains at least GAIN, their median at least 30 points."""
    gains = []
    for seed in (2, 3, 4):
        run_cli("run", str(ROOT / "tests" / "e2e" / "learn.yaml"), f"output_dir={tmp_path}", f"seed={seed}",
                f"name=s{seed}", check=True)
        curve, _ = curve_of(tmp_path / f"s{seed}")
        assert curve[0] <= 0.25, curve
        gains.append(curve[-1] - curve[0])
    assert min(gains) >= GAIN and sorted(gains)[1] >= 0.30, gains


def test_what_is_trained_on_is_verified_and_complete(learned):
    for r in range(3):
        rows = [json.loads(x) for x in (learned / f"round-00{r}" / "selected.jsonl").read_text().splitlines()]
        kept = [json.loads(x) for x in (learned / f"round-00{r}" / "kept.jsonl").read_text().splitlines()]
        assert rows and all(s["finish_reason"] == "stop" for g in kept for s in g["samples"])
        for row in rows:  # checked again here by plain arithmetic, independently of rsft's verifier
            a, b = row["prompt"][:-1].split("+")
            total = int(a[::-1]) + int(b[::-1])
            assert row["completion"] == str(total).zfill(len(a) + 1)[::-1], row


@pytest.mark.slow
def test_the_demo_reaches_95_percent_from_a_low_warm_start(tmp_path):
    """The README's demo, as `make demo` runs it (about 2 minutes): a warm start at <= 10%, at least 3
    rounds, >= 95% held-out greedy pass@1 at the end (the run time is BENCHMARKS.md's, not a test's)."""
    run_cli("demo", f"output_dir={tmp_path}", check=True, timeout=1800)
    rows = json.loads(run_cli("metrics", str(tmp_path / "demo"), "--json", check=True).stdout)
    curve = [r["eval"]["greedy_pass@1"] for r in rows]
    assert len(curve) >= 4 and curve[0] <= 0.10 and curve[-1] >= 0.95, curve


def test_a_teacher_samples_round_0_and_the_student_learns_from_it(learned, tmp_path):
    """Off-policy distillation: the learned run's round-2 model (teacher) samples round 0 for the warm-start
    model (student); the teacher's verified samples raise the student, and round 1 samples from the student.

    Margins from seeds 1, 2 and 5 of learn.yaml on an AMD EPYC: round 0's acceptance rose +0.43, +0.15 and
    +0.43 over the student's own, its greedy pass@1 +0.40, +0.205 and +0.195; the test asks +0.10 of each."""
    base = json.loads((learned / "round-000" / "metrics.json").read_text())  # the student sampling for itself
    teacher = learned / "round-002" / "model"
    run_cli("run", str(ROOT / "tests" / "e2e" / "learn.yaml"), f"output_dir={tmp_path}", "name=student", "rounds=2",
            f"model.path={learned / 'base-model'}", "warm_start.enabled=false", f"sampling.model={teacher}",
            check=True)
    rows = json.loads(run_cli("metrics", str(tmp_path / "student"), "--json", check=True).stdout)
    assert rows[1]["acceptance_rate"] >= base["acceptance_rate"] + 0.1, (rows[1], base)  # the teacher's samples
    assert rows[1]["eval"]["greedy_pass@1"] >= rows[0]["eval"]["greedy_pass@1"] + 0.1, rows
    # round 1 is on-policy again: the student samples, below the teacher's acceptance
    assert rows[2]["acceptance_rate"] < rows[1]["acceptance_rate"], rows
    assert [r["sampler"] for r in rows[1:]] == ["teacher", "policy"]  # the entropy trigger compares policy rounds
