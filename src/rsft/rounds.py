"""The round loop: sample → score → select → train → evaluate, then the next round.

`run` is the whole of rejection-sampling fine-tuning. It checks the config and
writes it first, prepares the base model (build the tiny model and/or
warm-start it, when configured), evaluates the base, then runs each round's
stages in order. Every stage skips itself when its done-marker exists, so
calling `run` again on the same directory resumes at the first unfinished
stage. The stages themselves are in `rsft.stages`; this file only orders them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rsft.config import RunConfig, dump_config, load_config
from rsft.errors import ConfigError
from rsft.progress import quiet_hf, table_console
from rsft.rundir import atomic_write_text
from rsft.sampling.engines import check_engine_options
from rsft.stages.metrics import round_rows
from rsft.stages.run import Run
from rsft.stages.runner import check_ready, run_base_stage, run_stage


def run(cfg: RunConfig) -> Path:
    """Rejection-sampling fine-tuning, round after round; resumes an existing run directory."""
    quiet_hf()
    run = open_run(cfg)
    run_base_stage(run, "base")
    run_base_stage(run, "base-eval")
    for r in range(cfg.rounds):
        run_stage(run, r, "sample")
        run_stage(run, r, "score")
        run_stage(run, r, "select")
        run_stage(run, r, "train")
        run_stage(run, r, "eval")
        run_stage(run, r, "metrics")
        print_table(run.dir, f"rsft · {run.dir} · after round {r}")
    return run.dir


def run_from_file(config_path: str | Path | None, overrides: list[str] = ()) -> Path:
    return run(load_config(config_path, overrides))


def open_run(cfg: RunConfig) -> Run:
    """Create the run directory with its resolved config, or reopen it for a resume."""
    run_dir = cfg.run_dir
    cfg_path = run_dir / "config.yaml"
    write = changed = True
    if cfg_path.exists():
        old = load_config(cfg_path).model_dump(mode="json")
        new = cfg.model_dump(mode="json")
        write = old != new
        old.pop("rounds"), new.pop("rounds")  # more rounds is a resume, not a change
        produced = [f for f in run_dir.iterdir() if f.name not in ("config.yaml", "stage_times.json")
                    and not f.name.endswith(".done") and not f.name.startswith(".")]
        changed = old != new
        if changed and produced:  # with nothing produced yet (an early failure), the new config replaces it
            diff = _first_difference(old, new)
            raise ConfigError(f"{cfg_path}: this run was started with a different config ({diff}); "
                              "resume with the same config or choose a new name=")
    run = Run(cfg, run_dir)
    if changed:  # a bad task, scorer or engine option fails here, before the config is written
        run.task, run.scorer  # noqa: B018
        if cfg.eval.enabled:
            run.eval_scorer  # noqa: B018
        check_engine_options(cfg.sampling.engine, cfg.sampling.engine_options)
    if write:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cfg_path, dump_config(cfg))
    return run


def _first_difference(old: Any, new: Any, key: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new)):
            if old.get(k) != new.get(k):
                return _first_difference(old.get(k), new.get(k), f"{key}.{k}" if key else k)
    return f"{key}: {old!r} then, {new!r} now"


def print_table(run_dir: Path, title: str | None = None, wide: bool = False) -> None:
    """The run's metrics table on stdout: compact (80 columns) by default, every column with `wide`."""
    from rsft.metrics import round_table

    table_console.print(round_table(round_rows(run_dir), title or f"rsft · {run_dir}", wide=wide))


def run_round_stage(run_dir: str | Path, r: int, stage: str, force: bool = False) -> bool:
    """Run one stage of round r on an existing run directory; True if it ran, False if already done."""
    quiet_hf()
    run = Run.open(run_dir)
    check_ready(run, r, stage)
    run_base_stage(run, "base")
    return run_stage(run, r, stage, force=force)
