"""The train stage: SFT on selected.jsonl, from the previous round's model (or the base), into ``model/``.

Checkpoints go to ``model-work/`` while it trains, so a killed stage resumes
from the last one (`rsft.learning.training.sft`). ``train.json`` records the result and
the plan it trained by: the step count and the precision the settings resolved
to on this machine (`rsft.learning.training.job`).
"""

from __future__ import annotations

from rsft.core.rundir.files import atomic_write_json, read_jsonl
from rsft.stages.run import Run


def train_stage(run: Run, r: int) -> None:
    from rsft.learning.monitoring.trackers import train_env, trl_names
    from rsft.learning.training.job import TrainJob
    from rsft.learning.training.sft import train_sft

    rd = run.round(r)
    rows = list(read_jsonl(rd.selected))
    init = run.base_model if (run.cfg.train.init == "base" or r == 0) else run.policy(r)
    job = TrainJob(init, rd.model, run.cfg.train, seed=run.cfg.seed + r, dtype=run.cfg.model.dtype,
                   label=f"round {r} train", report_to=trl_names(run.cfg.report_to))
    result = train_sft(job, rows, tracker_env=train_env(run.cfg.report_to, run.dir, f"round-{r:03d}-train"))
    atomic_write_json(rd.train_file, {
        "init": init, "steps": result.steps, "loss": result.loss, "rows": result.rows,
        "seconds": round(result.seconds, 3),
        "plan": result.plan.to_json() if result.plan is not None else None,
    })
