"""The train stage after a kill between putting model/ in place and writing train.json: it records the
round's real steps and loss (not 0.0) and does not train again; `--force` does train again."""

from __future__ import annotations

import json

from rsft.core.config import build_config
from rsft.core.records import Prompt
from rsft.core.rundir.files import atomic_write_jsonl
from rsft.inputs.data.formats import sft_row
from rsft.stages.run import Run
from rsft.stages.runner import run_stage
from rsft.stages.train import train_stage


def test_a_round_killed_before_train_json_records_the_same_result(model_dir, tmp_path):
    cfg = build_config({"output_dir": str(tmp_path), "model": {"path": str(model_dir)},
                        "train": {"max_steps": 5, "batch_size": 8, "learning_rate": 3e-3, "save_steps": 2}})
    run = Run(cfg, cfg.run_dir)
    rd = run.round(0)
    rd.path.mkdir(parents=True)
    atomic_write_jsonl(rd.selected, [sft_row(Prompt(str(i), text=f"{i}+{i}="), str(2 * i)) for i in range(24)])
    train_stage(run, 0)
    first = json.loads((rd.path / "train.json").read_text())
    (rd.path / "train.json").unlink()  # the kill: model/ is in place, train.json was never written
    stamp = (rd.model / "model.safetensors").stat().st_mtime_ns
    train_stage(run, 0)
    again = json.loads((rd.path / "train.json").read_text())
    assert (again["steps"], again["loss"], again["rows"]) == (first["steps"], first["loss"], first["rows"]) == \
        (5, first["loss"], 24)
    assert again["loss"] > 0 and (rd.model / "model.safetensors").stat().st_mtime_ns == stamp
    for stage in ("sample", "score", "select", "train"):
        (rd.path / f"{stage}.done").write_text("")
    run_stage(run, 0, "train", force=True)
    assert (rd.model / "model.safetensors").stat().st_mtime_ns != stamp  # forced: trained again
