"""`rsft eval`: held-out metrics of a model directory on a config's task, or of a run's newest (or given) round."""

from __future__ import annotations

from pathlib import Path

from rsft.core.config import load_config
from rsft.core.progress import quiet_hf
from rsft.core.rundir.layout import RunDir
from rsft.stages.evaluate import eval_model
from rsft.stages.run import Run


def latest_model(run: Run) -> tuple[str, int]:
    """The newest trained model of a run and its round (-1 for the base)."""
    trained = [rd for rd in run.layout.rounds() if rd.done("train")]
    return (str(trained[-1].model), trained[-1].index) if trained else (run.base_model, -1)


def evaluate_model(target: str | Path, config: str | Path | None = None, overrides: list[str] = (),
                   round_index: int | None = None) -> dict[str, float]:
    """Held-out metrics of a model directory (on the config's task) or of a run's newest/given round."""
    quiet_hf()
    path = Path(target)
    layout = RunDir(path)
    if layout.config.is_file():
        run = Run(load_config(layout.config, overrides), path)
        if round_index is None:
            model, round_index = latest_model(run)
        else:
            model = str(run.round(round_index).model)
    else:
        cfg = load_config(config, overrides)
        run, model, round_index = Run(cfg, cfg.run_dir), str(path), round_index or 0
    from rsft.inputs.data.locate import check_prompt_lengths, prompt_source
    from rsft.inputs.modeling import context_length, load_tokenizer, read_config

    new_tokens = run.cfg.eval.max_new_tokens or run.cfg.sampling.max_new_tokens
    check_prompt_lengths(run.task.eval, load_tokenizer(model), context_length(read_config(model)), new_tokens,
                         "task.eval", lambda i: prompt_source(run.cfg.task, "eval", i))
    try:
        return eval_model(run, model, round_index)
    finally:
        run.release_engines()
