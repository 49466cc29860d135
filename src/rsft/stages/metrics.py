"""The metrics stage: the round's records and stage files combined into ``metrics.json``, one row of
`rsft.core.metrics_schema` (which `rsft.core.rundir.rows.round_rows` collects for tables and `rsft metrics`).

It reads what the earlier stages wrote (the scored samples, the select stage's counts, the train stage's
result, the held-out eval, the stage times) and selects nothing again.
"""

from __future__ import annotations

from rsft.core import metrics_schema as M
from rsft.core.rundir.files import atomic_write_json, iter_groups, read_json
from rsft.parts.metrics import round_metrics
from rsft.stages.run import Run


def metrics_stage(run: Run, r: int) -> None:
    rd = run.round(r)
    m = round_metrics(iter_groups(rd.scored), run.cfg.accept_min)
    train = read_json(rd.train_file)
    sel = read_json(rd.selection_file)  # the select stage's counts, under the names the row gives them
    times = rd.times()
    m.update({
        M.ROUND: r,
        M.SAMPLER: M.TEACHER if run.teacher_samples(r) else M.POLICY,  # whose entropy entropy_mean is
        M.KEPT: sel[M.KEPT] if M.KEPT in sel else sum(len(g.samples) for g in iter_groups(rd.kept)),  # older runs
        M.SURVIVORS: sel[M.SURVIVORS],
        M.TRAIN_ROWS: sel["rows"] + sel[M.REPLAYED],
        M.DECONTAMINATED: sel.get(M.DECONTAMINATED, 0),
        M.SELECTION_SCORE: sel.get(M.SELECTION_SCORE),
        M.JUDGE_PRECISION_KEPT: sel.get(M.JUDGE_PRECISION_KEPT),
        M.REPLAYED: sel[M.REPLAYED],
        **{k: sel[k] for k in (M.KEPT_COVERAGE, M.DISTINCT_AFTER, M.RATIONALIZED, M.RATIONALIZE_LEAKS, M.CONTROL)
           if sel.get(k) is not None},  # absent in older runs' selection.json
        M.TRAIN_LOSS: train["loss"],
        M.TRAIN_STEPS: train["steps"],
        M.SECONDS: times,
        M.SECONDS_TOTAL: sum(times.values()),
        M.TOKENS_PER_S: m[M.TOKENS_GENERATED] / times["sample"] if times.get("sample") else None,
        M.EVAL: read_json(rd.eval_file) if rd.eval_file.exists() else {},
    })
    atomic_write_json(rd.metrics_file, m)
