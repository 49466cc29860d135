"""Opening a run: a resume keeps the run's own config for what the user did not write."""

from __future__ import annotations

import json

import pytest
import yaml

from rsft.core.config import build_config
from rsft.core.errors import ConfigError
from rsft.loop.rounds import open_run


def user_config(tmp_path, model_dir, **extra):
    (tmp_path / "t.jsonl").write_text(json.dumps({"prompt": "1+2=", "answer": 3}) + "\n")
    return build_config({"name": "r", "output_dir": str(tmp_path / "runs"), "model": {"path": str(model_dir)},
                         "task": {"name": "dataset", "train": str(tmp_path / "t.jsonl")}, "scorer": "addition",
                         "sampling": {"max_new_tokens": 8}, **extra})


def test_a_default_that_changed_since_the_run_started_does_not_stop_its_resume(tmp_path, model_dir):
    run = open_run(user_config(tmp_path, model_dir))
    cfg_path = run.dir / "config.yaml"
    stored = yaml.safe_load(cfg_path.read_text())
    stored["selection"]["rules"] = [{"rule": "passes", "min": 1.0}, {"rule": "dedup", "key": "normalized"},
                                    {"rule": "cap", "n": 10}]  # the default chain of an older rsft
    cfg_path.write_text(yaml.safe_dump(stored))
    (run.dir / "round-000").mkdir()
    (run.dir / "round-000" / "samples.jsonl").write_text("{}\n")  # the run has produced something
    resumed = open_run(user_config(tmp_path, model_dir, rounds=4))
    assert [r.rule for r in resumed.cfg.selection.rules] == ["passes", "dedup", "cap"]  # the run's own
    assert resumed.cfg.rounds == 4 and yaml.safe_load(cfg_path.read_text())["rounds"] == 4
    with pytest.raises(ConfigError, match="different config"):  # what the user does write must agree
        open_run(user_config(tmp_path, model_dir, selection={"rules": [{"rule": "top_k"}]}))
