"""The round loop: sample → score → select → train → evaluate, then the next round.

`run` is the whole of rejection-sampling fine-tuning. It checks the config and
writes it first, prepares the base model (build the tiny model and/or
warm-start it, when configured), evaluates the base, then runs each round's
stages in order. Every stage skips itself when its done-marker exists, so
calling `run` again on the same directory resumes at the first unfinished
stage. The stages themselves are in `rsft.stages`; this file only orders them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from rsft.core.config import RunConfig, build_config, dump_config, load_config, merged
from rsft.core.errors import ConfigError, RsftError
from rsft.core.progress import notice, quiet_hf, table_console
from rsft.core.rundir.files import atomic_write_text, remove_stale_temps
from rsft.core.rundir.layout import RunDir, is_done_marker, round_dirs
from rsft.core.rundir.rows import round_rows
from rsft.core.runlock import LOCK_FILE, acquire, release
from rsft.loop.preflight import check_run
from rsft.stages.monitor import monitor_action
from rsft.stages.run import Run
from rsft.stages.runner import check_ready, run_base_stage, run_stage, skipped


def run(cfg: RunConfig) -> Path:
    """Rejection-sampling fine-tuning, round after round; resumes an existing run directory."""
    quiet_hf()
    run = open_run(cfg)
    try:
        run_base_stage(run, "base")
        run_base_stage(run, "base-eval")
        for r in range(cfg.rounds):
            run_stage(run, r, "sample")
            run_stage(run, r, "score")
            run_stage(run, r, "rationalize")  # only with selection.rationalize (STaR)
            run_stage(run, r, "select")
            run_stage(run, r, "train")
            run_stage(run, r, "eval")
            run_stage(run, r, "metrics")
            run_stage(run, r, "monitor")
            print_table(run.dir, f"rsft · {run.dir} · after round {r}")
            write_report_if_asked(run)
            if ended_by_monitor(run, r):
                break
    finally:
        run.release_engines()
        release(run.lock)
    return run.dir


def ended_by_monitor(run: Run, r: int) -> bool:
    """A stop or graduate action ends the run after round r (a finished run; say so once more on a resume)."""
    action = monitor_action(run, r).action
    if action in ("stop", "graduate"):
        where = f"; its GRPO hand-off is in {run.layout.graduate.path} (rsft graduate {run.dir})" if action == "graduate" else ""
        notice(f"the monitor ended this run after round {r} ({action}){where}")
        return True
    return False


_NO_REPORT_SAID: set[Path] = set()


def write_report_if_asked(run: Run) -> None:
    """RUN/report.html after every round, when `report` is on and matplotlib is installed (said once if not)."""
    if not run.cfg.report:
        return
    if importlib.util.find_spec("matplotlib") is None:
        if run.dir not in _NO_REPORT_SAID:
            notice("report: matplotlib is not installed, so RUN/report.html is not written (pip install 'rsft[report]')")
            _NO_REPORT_SAID.add(run.dir)
        return
    from rsft.learning.monitoring.report import write_report

    write_report(run.dir)


def run_from_file(config_path: str | Path | None, overrides: list[str] = ()) -> Path:
    return run(load_config(config_path, overrides))


def open_run(cfg: RunConfig) -> Run:
    """Create the run directory with its resolved config, or reopen it for a resume.

    On a resume, the keys the user gave (file and overrides) must agree with the run's own config.yaml,
    except `rounds`, which may grow; every other key keeps the run's own value, so a default that changed
    in a newer rsft does not stop an older run. Everything checkable is checked first (`rsft.loop.preflight`),
    on a fresh run and on a resume, so a mistake leaves no run directory behind and costs no work. Then
    it takes the run directory's lock (`rsft.core.runlock`): a second rsft process on the same directory is
    refused in one line before it changes anything; `run` gives the lock back when it ends."""
    run_dir = cfg.run_dir
    layout = RunDir(run_dir)
    cfg_path = layout.config
    bookkeeping: list[Path] = []
    if cfg_path.is_file():
        stored = load_config(cfg_path)
        resumed = build_config(merged(stored._given, cfg._given), source=str(cfg_path))
        old, new = stored.model_dump(mode="json"), resumed.model_dump(mode="json")
        old.pop("rounds"), new.pop("rounds")  # more rounds is a resume, not a change
        # where the work runs: the files are the same with or without Ray, on any number of training processes
        for where in (old, new):
            where.pop("ray", None)
            where["train"].pop("processes", None), where["train"].pop("launcher", None)
        bookkeeping = [f for f in run_dir.iterdir() if f == layout.stage_times or is_done_marker(f)
                       or f.name.startswith(".")]
        produced = [f for f in run_dir.iterdir() if f.name not in (cfg_path.name, LOCK_FILE) and f not in bookkeeping]
        if old != new and produced:
            diff = _first_difference(old, new)
            raise ConfigError(f"{cfg_path}: this run was started with a different config ({diff}); "
                              "resume with the same config or choose a new name= (the demo: --fresh)")
        if old == new:
            bookkeeping = []  # a plain resume: the markers are the run's progress
            started = [rd.index for rd in round_dirs(run_dir) if rd.path.exists() and any(rd.path.iterdir())]
            if started and resumed.rounds <= max(started):
                raise ConfigError(f"key 'rounds': {cfg_path.parent} has already started round {max(started)}; "
                                  f"rounds={resumed.rounds} would go back (resume with rounds >= {max(started) + 1}, "
                                  "or choose a new name=)")
            cfg = resumed
        # else: nothing produced yet (an early failure): the new config replaces it, markers and all
    run = Run(cfg, run_dir)
    check_run(run)
    run.lock = acquire(run_dir)
    for f in bookkeeping:
        f.unlink(missing_ok=True)
    clean_after_kill(run_dir)
    if not cfg_path.is_file() or load_config(cfg_path).model_dump(mode="json") != cfg.model_dump(mode="json"):
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cfg_path, dump_config(cfg))
    return run


def clean_after_kill(run_dir: Path) -> None:
    """Remove the temporary files of atomic writes a kill interrupted (``.NAME.*.tmp`` in the run
    directory and its rounds): they are never read, and would otherwise pile up, resume after resume."""
    if run_dir.is_dir():
        remove_stale_temps(run_dir)
        for rd in round_dirs(run_dir):
            remove_stale_temps(rd.path)


def _first_difference(old: Any, new: Any, key: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new)):
            if old.get(k) != new.get(k):
                return _first_difference(old.get(k), new.get(k), f"{key}.{k}" if key else k)
    return f"{key}: {old!r} then, {new!r} now"


def print_table(run_dir: Path, title: str | None = None, wide: bool = False) -> None:
    """The run's metrics table on stdout: compact (80 columns) by default, every column with `wide`."""
    from rsft.parts.metrics_table import round_table

    table_console.print(round_table(round_rows(run_dir), title or f"rsft · {run_dir}", wide=wide))


def run_round_stage(run_dir: str | Path, r: int, stage: str, force: bool = False) -> bool:
    """Run one stage of round r on an existing run directory; True if it ran, False if already done."""
    quiet_hf()
    run = Run.open(run_dir)
    check_ready(run, r, stage)
    if skipped(run, stage):
        raise RsftError(f"{run.layout.config}: selection.rationalize is not set, so round {r} has nothing to "
                        "rationalize")
    check_run(run)
    lock = acquire(run.dir)
    try:
        clean_after_kill(run.dir)
        run_base_stage(run, "base")
        return run_stage(run, r, stage, force=force)
    finally:
        run.release_engines()
        release(lock)
