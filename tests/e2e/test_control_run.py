"""`rsft run --control random` on the tiny model: the control shares the run's base and round-0 samples, keeps
as many samples of each prompt as the rules did but at random, and `rsft compare` sets the two side by side."""

from __future__ import annotations

import json
from collections import Counter

from rsft.core.rundir.files import read_json, read_jsonl
from tests.conftest import ROOT, invoke

MINI = ROOT / "tests" / "e2e" / "mini.yaml"


def kept_per_prompt(rd):
    return Counter({g["prompt"]["id"]: len(g["samples"]) for g in read_jsonl(rd / "kept.jsonl")})


def test_a_run_and_its_matched_random_control(tmp_path):
    code, out, err = invoke(["run", str(MINI), f"output_dir={tmp_path}", "rounds=1", "--control", "random"], tmp_path)
    assert code == 0, err
    main, control = tmp_path / "mini", tmp_path / "mini-control-random"
    assert f"control run directory: {control}" in out
    assert "round 0's samples and scores are the run's own" in err + out
    m0, c0 = main / "round-000", control / "round-000"
    assert (m0 / "scored.jsonl").read_bytes() == (c0 / "scored.jsonl").read_bytes()  # the same samples
    assert (c0 / "scored.jsonl").stat().st_ino == (m0 / "scored.jsonl").stat().st_ino  # linked, not redrawn
    assert kept_per_prompt(m0) == kept_per_prompt(c0)  # the same prompts, the same counts
    ms, cs = read_json(m0 / "selection.json"), read_json(c0 / "selection.json")
    assert cs["control"] == "random" and ms.get("control") is None
    # the rules keep each prompt's first two distinct samples among its best (the lowest indices, as every sample
    # of this barely warm-started model scores the same); the control's two are drawn at random
    chosen = {g["prompt"]["id"]: {s["index"] for s in g["samples"]} for g in read_jsonl(m0 / "kept.jsonl")}
    drawn = {g["prompt"]["id"]: {s["index"] for s in g["samples"]} for g in read_jsonl(c0 / "kept.jsonl")}
    assert sum(chosen[p] != drawn[p] for p in chosen) >= len(chosen) // 2
    assert cs["selection_score"] <= ms["selection_score"]
    assert read_json(c0 / "metrics.json")["control"] == "random"
    assert json.loads((main / "control.json").read_text())["run"] == str(control)
    assert "greedy pass@1" in out and "mini − mini-control-random" in out and "over 16 prompts" in out

    page = tmp_path / "compare.html"
    code, out, err = invoke(["compare", str(main), str(control), "--report", str(page)], tmp_path)
    assert code == 0, err
    assert "mini-control-random − mini" in out and "interval" in out and "<svg" in page.read_text()


def test_compare_needs_two_runs_and_per_prompt_results(tmp_path):
    code, _, err = invoke(["compare", str(tmp_path)], tmp_path)
    assert code != 0 and "expected two or more run directories, got 1" in err
    code, _, err = invoke(["compare", str(tmp_path), str(tmp_path)], tmp_path)
    assert code != 0 and "not a run directory" in err and "Traceback" not in err
