"""Trackers are a registry kind: a user's 'module:Class' gets every round's numbers; TRL gets only the ones it knows."""

from __future__ import annotations

import pytest

from rsft.core.config import build_config
from rsft.core.errors import ConfigError
from rsft.learning.monitoring.trackers import log_round, train_env, trl_names

USER_TRACKER = '''
SEEN = []

class Memory:
    library = None
    trl_name = None

    def train_env(self, run_dir, label):
        return {"MEMORY_LABEL": label}

    def log_round(self, run_dir, values, step):
        SEEN.append((step, values))
'''


def test_a_user_tracker_gets_the_rounds_numbers_and_trl_is_not_told_of_it(tmp_path, monkeypatch):
    (tmp_path / "my_tracker.py").write_text(USER_TRACKER)
    monkeypatch.chdir(tmp_path)
    cfg = build_config({"report_to": ["my_tracker:Memory", "tensorboard"]})
    assert trl_names(cfg.report_to) == ("tensorboard",)  # TRL's report_to would refuse a name it does not know
    env = train_env(cfg.report_to, tmp_path / "run", "round-000-train")
    assert env["MEMORY_LABEL"] == "round-000-train" and env["TENSORBOARD_LOGGING_DIR"].endswith("round-000-train")
    row = {"round": 2, "seconds": {"sample": 1.0}, "kept": 7, "eval": {"greedy_pass@1": 0.25}, "note": "x"}
    log_round(["my_tracker:Memory"], tmp_path / "run", row, 2)
    import my_tracker

    assert my_tracker.SEEN == [(2, {"kept": 7.0, "eval/greedy_pass@1": 0.25})]  # no round, no seconds, no text


def test_something_that_is_not_a_tracker_is_refused_when_the_config_loads(tmp_path, monkeypatch):
    (tmp_path / "not_tracker.py").write_text("class Thing:\n    pass\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"key 'report_to.0': 'not_tracker:Thing' is not a tracker"):
        build_config({"report_to": ["not_tracker:Thing"]})
    with pytest.raises(ConfigError, match=r"key 'report_to.1': unknown tracker 'tensorbord'"):
        build_config({"report_to": ["wandb", "tensorbord"]})
