"""The round loop: sample → score → select → train → evaluate, then the next round.

`run` is the whole of rejection-sampling fine-tuning. It writes the resolved
config first, prepares the base model (build the tiny model and/or warm-start
it, when configured), evaluates the base, then runs each round's stages in
order. Every stage skips itself when its done-marker exists, so calling `run`
again on the same directory resumes at the first unfinished stage.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rsft.config import RunConfig, dump_config, load_config
from rsft.errors import ConfigError
from rsft.progress import quiet_hf, table_console
from rsft.rundir import atomic_write_json, atomic_write_text, replace_dir, round_dirs
from rsft.sampling.base import check_engine_options
from rsft.stages import ROUND_STAGES, Run, eval_model, run_stage


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
        produced = {f.name for f in run_dir.iterdir()} - {"config.yaml"}
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


def prepare_base(run: Run) -> None:
    """Build the tiny model and/or warm-start the base into RUN/base-model (once)."""
    if (run.dir / "base.done").exists() or run.base_model == run.cfg.model.path:
        return
    from rsft.tasks.tiny_model import build_tiny
    from rsft.training.warm_start import warm_start

    t0 = time.perf_counter()
    base = run.dir / "base-model"
    init = run.cfg.model.path
    if init == "tiny":
        if run.task.alphabet is None:
            raise ConfigError(f"key 'model.path': 'tiny' needs a task with a character alphabet, "
                              f"task {run.task.name!r} has none; give a model path")
        init = str(build_tiny(run.dir / "base-init", run.task.alphabet, run.cfg.model.tiny, run.cfg.seed))
    info: dict[str, Any] = {"init": init}
    ws = run.cfg.warm_start
    if ws.enabled:
        info["warm_start"] = warm_start(init, base, run.task.gold, run.task.eval, run.scorer, ws,
                                        run.cfg.sampling.max_new_tokens, seed=run.cfg.seed)
    else:
        replace_dir(Path(init), base)
    info["seconds"] = round(time.perf_counter() - t0, 3)
    atomic_write_json(run.dir / "base.json", info)
    atomic_write_text(run.dir / "base.done", "")


def eval_base(run: Run) -> None:
    if (run.dir / "base-eval.done").exists() or not run.cfg.eval.enabled or not run.task.eval:
        return
    atomic_write_json(run.dir / "base-eval.json", eval_model(run, run.base_model, -1))
    atomic_write_text(run.dir / "base-eval.done", "")


def round_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The base model's eval and every finished round's metrics, for tables and `rsft metrics`."""
    rows = []
    base_eval = run_dir / "base-eval.json"
    if base_eval.exists():
        rows.append({"round": "base", "eval": json.loads(base_eval.read_text())})
    for rd in round_dirs(run_dir):
        if rd.metrics_file.exists():
            rows.append(json.loads(rd.metrics_file.read_text()))
    return rows


def print_table(run_dir: Path, title: str | None = None) -> None:
    from rsft.metrics import round_table

    table_console.print(round_table(round_rows(run_dir), title or f"rsft · {run_dir}"))


def run(cfg: RunConfig) -> Path:
    """Rejection-sampling fine-tuning, round after round; resumes an existing run directory."""
    quiet_hf()
    run = open_run(cfg)
    prepare_base(run)
    eval_base(run)
    for r in range(cfg.rounds):
        for name, stage in ROUND_STAGES:
            run_stage(run, r, name, stage)
        print_table(run.dir, f"rsft · {run.dir} · after round {r}")
    return run.dir


def run_from_file(config_path: str | Path | None, overrides: list[str] = ()) -> Path:
    return run(load_config(config_path, overrides))


def run_round_stage(run_dir: str | Path, r: int, stage: str, force: bool = False) -> bool:
    """Run one stage of round r on an existing run directory; True if it ran, False if already done."""
    from rsft.errors import RsftError

    run = Run.open(run_dir)
    names = [name for name, _ in ROUND_STAGES]
    if stage not in names:
        raise RsftError(f"unknown stage {stage!r}, expected one of {names}")
    before = names[: names.index(stage)]
    if r > 0 and not run.round(r - 1).done("train") and stage == "sample":
        raise RsftError(f"round {r}: round {r - 1} has no trained model yet; run its stages first")
    for prev in before:
        if not run.round(r).done(prev):
            raise RsftError(f"round {r}: stage '{prev}' has not finished; run `rsft {prev} {run_dir} --round {r}` first")
    quiet_hf()
    prepare_base(run)
    return run_stage(run, r, stage, dict(ROUND_STAGES)[stage], force=force)


def latest_model(run: Run) -> tuple[str, int]:
    """The newest trained model of a run and its round (-1 for the base)."""
    trained = [rd for rd in round_dirs(run.dir) if rd.done("train")]
    return (str(trained[-1].model), trained[-1].index) if trained else (run.base_model, -1)


def evaluate_model(target: str | Path, config: str | Path | None = None, overrides: list[str] = (),
                   round_index: int | None = None) -> dict[str, float]:
    """Held-out metrics of a model directory (on the config's task) or of a run's newest/given round."""
    quiet_hf()
    path = Path(target)
    if (path / "config.yaml").is_file():
        run = Run(load_config(path / "config.yaml", overrides), path)
        if round_index is None:
            model, round_index = latest_model(run)
        else:
            model = str(run.round(round_index).model)
    else:
        cfg = load_config(config, overrides)
        run, model, round_index = Run(cfg, cfg.run_dir), str(path), round_index or 0
    return eval_model(run, model, round_index)
