"""The metrics stage: the round's records and stage files combined into ``metrics.json`` (which
`rsft.rundir.round_rows` collects for tables and `rsft metrics`).

It reads what the earlier stages wrote (scored.jsonl, selection.json,
train.json, eval.json, stage_times.json) and selects nothing again.
"""

from __future__ import annotations

from typing import Any

from rsft.metrics import round_metrics
from rsft.rundir import atomic_write_json, iter_groups, read_json
from rsft.stages.run import Run


def metrics_stage(run: Run, r: int) -> None:
    rd = run.round(r)
    m = round_metrics(iter_groups(rd.scored), run.cfg.accept_min)
    train = read_json(rd.path / "train.json")
    sel = read_json(rd.path / "selection.json")
    times = rd.times()
    m.update({
        "round": r,
        "sampler": "teacher" if run.teacher_samples(r) else "policy",  # whose entropy entropy_mean is
        "kept": sel["kept"] if "kept" in sel else sum(len(g.samples) for g in iter_groups(rd.kept)),  # older runs
        "survivors": sel["survivors"],
        "train_rows": sel["rows"] + sel["replayed"],
        "decontaminated": sel.get("decontaminated", 0),
        "selection_score": sel.get("selection_score"),
        "judge_precision_kept": sel.get("judge_precision_kept"),
        "replayed": sel["replayed"],
        "train_loss": train["loss"],
        "train_steps": train["steps"],
        "seconds": times,
        "seconds_total": sum(times.values()),
        "tokens_per_s": m["tokens_generated"] / times["sample"] if times.get("sample") else None,
        "eval": read_json(rd.eval_file) if rd.eval_file.exists() else {},
    })
    atomic_write_json(rd.metrics_file, m)
