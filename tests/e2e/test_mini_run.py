"""A whole 2-round run through the CLI on the real tiny model: every stage, no fake engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT, invoke, run_cli

MINI = ROOT / "tests" / "e2e" / "mini.yaml"


@pytest.fixture(scope="module")
def mini_run(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("mini")
    proc = run_cli("run", str(MINI), f"output_dir={out}", check=True)
    return out / "mini", proc.stdout


def test_every_stage_wrote_its_files(mini_run):
    run_dir, _ = mini_run
    assert (run_dir / "config.yaml").exists() and (run_dir / "base-model" / "config.json").exists()
    for r in (0, 1):
        rd = run_dir / f"round-00{r}"
        for name in ("samples.jsonl", "scored.jsonl", "selected.jsonl", "kept.jsonl", "eval.json", "metrics.json",
                     "model/config.json", "model/tokenizer.json"):
            assert (rd / name).exists(), rd / name
        for stage in ("sample", "score", "select", "train", "eval", "metrics"):
            assert (rd / f"{stage}.done").exists()
        assert not (rd / "model-work").exists()


def test_samples_are_grouped_by_prompt(mini_run):
    run_dir, _ = mini_run
    lines = [json.loads(x) for x in (run_dir / "round-000" / "samples.jsonl").read_text().splitlines()]
    assert len(lines) == 48
    for g in lines:
        assert [s["index"] for s in g["samples"]] == [0, 1, 2, 3]
        assert all(s["prompt_id"] == g["prompt"]["id"] for s in g["samples"])
        assert all(s["finish_reason"] in ("stop", "length") and s["token_ids"] for s in g["samples"])


def test_selected_is_trl_prompt_completion(mini_run):
    run_dir, _ = mini_run
    rows = [json.loads(x) for x in (run_dir / "round-000" / "selected.jsonl").read_text().splitlines()]
    assert rows and all(isinstance(r["prompt"], str) and isinstance(r["completion"], str) for r in rows)
    per_prompt: dict[str, int] = {}
    for r in rows:
        per_prompt[r["prompt_id"]] = per_prompt.get(r["prompt_id"], 0) + 1
    assert max(per_prompt.values()) <= 2  # top_k: 2


def test_round_two_replays_earlier_rounds(mini_run):
    run_dir, _ = mini_run
    m1 = json.loads((run_dir / "round-001" / "metrics.json").read_text())
    rows = [json.loads(x) for x in (run_dir / "round-001" / "selected.jsonl").read_text().splitlines()]
    assert m1["replayed"] == sum(1 for r in rows if r.get("round") == 0) > 0
    train = json.loads((run_dir / "round-001" / "train.json").read_text())
    assert train["init"].endswith("round-000/model")  # init: previous


def test_metrics_cover_the_round(mini_run):
    run_dir, stdout = mini_run
    m = json.loads((run_dir / "round-001" / "metrics.json").read_text())
    for key in ("acceptance_rate", "coverage", "distinct_accepted_per_prompt", "reward_mean", "reward_max_mean",
                "reward_median_mean", "entropy_mean", "tokens_generated", "tokens_per_s", "scorer_errors"):
        assert key in m, key
    assert set(m["seconds"]) >= {"sample", "score", "select", "train", "eval"}
    assert {"greedy_pass@1", "pass@1", "pass@4", "maj@4"} <= set(m["eval"])
    assert m["samples"] == 48 * 4 and m["tokens_generated"] > 0
    assert "greedy pass@1" in stdout and "after round 1" in stdout


def test_metrics_command_prints_json(mini_run):
    run_dir, _ = mini_run
    proc = run_cli("metrics", str(run_dir), "--json", check=True)
    rows = json.loads(proc.stdout)
    assert [r["round"] for r in rows] == ["base", 0, 1]


def test_eval_command_on_run_and_on_model(mini_run):
    run_dir, _ = mini_run
    on_run = json.loads(run_cli("eval", str(run_dir), "--json", check=True).stdout)
    saved = json.loads((run_dir / "round-001" / "eval.json").read_text())
    assert on_run["greedy_pass@1"] == saved["greedy_pass@1"]
    rc, out, err = invoke(["eval", str(run_dir / "round-001" / "model"), "--config", str(MINI), "--json"],
                          run_dir.parent)  # the CLI's entry point in this process
    assert rc == 0, err
    assert json.loads(out)["greedy_pass@1"] == saved["greedy_pass@1"]


def test_rerun_is_a_no_op_resume(mini_run):
    run_dir, _ = mini_run
    before = (run_dir / "round-001" / "metrics.json").read_text()
    run_cli("run", str(MINI), f"output_dir={run_dir.parent}", check=True)
    assert (run_dir / "round-001" / "metrics.json").read_text() == before
