"""The eval stage: held-out metrics of the round's model (and of the base, before round 0).

It uses `eval.engine` (default: the sampling engine in the checkpoint's own
precision), the rounds' sampling parameters and the judge (`eval.scorer`, else
the run's scorer); the metrics themselves are `rsft.learning.evaluation`'s.
"""

from __future__ import annotations

from rsft.core.rundir.files import atomic_write_json
from rsft.stages.run import Run


def eval_model(run: Run, model_path: str, round_index: int) -> dict[str, float]:
    """Held-out metrics of `model_path`; each prompt's greedy outcome goes beside them (``eval-greedy.jsonl``,
    the base's ``base-eval-greedy.jsonl``), for `rsft compare`."""
    from rsft.learning.evaluation import evaluate

    out = run.layout.base_eval_greedy if round_index < 0 else run.round(round_index).eval_greedy
    return evaluate(run.eval_engine(model_path), run.task.eval, run.eval_scorer, run.cfg.eval,
                    run.sampling_params(round_index), round_index=round_index,
                    batch_size=run.cfg.sampling.batch_size, timeout=run.cfg.scoring.timeout, greedy_out=out)


def eval_stage(run: Run, r: int) -> None:
    rd = run.round(r)
    metrics = eval_model(run, str(rd.model), r) if run.cfg.eval.enabled and run.task.eval else {}
    atomic_write_json(rd.eval_file, metrics)


def eval_base_stage(run: Run) -> None:
    """The base model's held-out metrics, into ``base-eval.json`` (nothing when eval is off or has no prompts)."""
    if run.cfg.eval.enabled and run.task.eval:
        atomic_write_json(run.layout.base_eval, eval_model(run, run.base_model, -1))
