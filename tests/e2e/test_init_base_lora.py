"""ReST-EM style rounds (every round restarts from the base) with LoRA, through the real loop."""

from __future__ import annotations

import json

import yaml

from rsft.config import build_config
from rsft.rounds import run
from tests.conftest import ROOT


def test_init_base_with_lora(tmp_path):
    data = yaml.safe_load((ROOT / "tests" / "e2e" / "mini.yaml").read_text())
    data.update({"output_dir": str(tmp_path), "name": "restem"})
    data["train"].update({"init": "base", "lora": {"r": 4, "alpha": 8}, "learning_rate": 0.01})
    data["eval"] = {"enabled": False}
    run_dir = run(build_config(data))
    base = str(run_dir / "base-model")
    for r in (0, 1):
        rd = run_dir / f"round-00{r}"
        assert json.loads((rd / "train.json").read_text())["init"] == base
        assert (rd / "model-adapter" / "adapter_config.json").exists()
        assert (rd / "model" / "config.json").exists() and not (rd / "model" / "adapter_config.json").exists()
    # round 1 sampled from round 0's model but trained from the base
    assert (run_dir / "round-001" / "samples.jsonl").read_text() != (run_dir / "round-000" / "samples.jsonl").read_text()
