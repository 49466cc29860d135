"""Adaptive allocation through the real loop and the real tiny model (no fake engine)."""

from __future__ import annotations

import json

import pytest
import yaml

from rsft.config import build_config
from rsft.rounds import run
from rsft.rundir import read_jsonl
from tests.conftest import ROOT


def mini(tmp_path, name, sampling):
    data = yaml.safe_load((ROOT / "tests" / "e2e" / "mini.yaml").read_text())
    data.update({"output_dir": str(tmp_path), "name": name, "rounds": 1, "eval": {"enabled": False}})
    data["selection"]["rules"] = [{"rule": "passes", "min": 0.0}, {"rule": "dedup"}]
    data["sampling"].update(sampling)
    return run(build_config(data)) / "round-000"


@pytest.mark.parametrize("allocation", ["early_stop", "gvm"])
def test_adaptive_allocation_round(tmp_path, allocation):
    # accept_min 1.0 on addition: few samples are accepted, so prompts get different sample counts
    sampling = {"allocation": allocation, "n": 6, "wave": 2, "target_accepted": 1, "presample": 2,
                "accept_min": 1.0, "engine": "transformers"}
    rd = mini(tmp_path, allocation, sampling)
    groups = list(read_jsonl(rd / "scored.jsonl"))
    counts = [len(g["samples"]) for g in groups]
    assert all(len(g["scores"]) == len(g["samples"]) for g in groups)
    assert all([s["index"] for s in g["samples"]] == list(range(len(g["samples"]))) for g in groups)
    m = json.loads((rd / "metrics.json").read_text())
    assert m["samples"] == sum(counts) and m["samples_per_prompt_max"] == max(counts)
    if allocation == "early_stop":
        assert set(counts) <= {2, 4, 6}
    else:
        plan = json.loads((rd / "allocation.json").read_text())
        assert min(counts) >= 2 and sum(counts) == 2 * len(groups) + plan["extra_samples"]
        assert plan["budget_tokens"] >= plan["presample_tokens"]
