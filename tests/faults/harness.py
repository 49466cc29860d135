"""Kill `rsft run` with SIGKILL at a chosen point, resume it, and compare every artefact with an
uninterrupted run.

A kill point is a stage and a fraction of it: the harness starts the run, waits until the stage
starts (the previous stage's done-marker appears), waits until the stage is that fraction through (by
what it has written, where it writes as it goes; else by that fraction of the control run's duration),
and kills the whole process group (the CLI, its sandboxes, its
training workers). It then runs the same command to completion and compares the two run directories
file by file: the same files, byte-identical, except the ones that legitimately differ (`VOLATILE`):
wall-clock timings, and the report, which plots them. Every round's samples and scores must hold
each train prompt exactly once, in order.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rsft.core.rundir.files import read_jsonl
from rsft.parts.distributed.reaper import session_processes

ROUND_STAGES = ("sample", "score", "select", "train", "eval", "metrics", "monitor")
# files whose bytes may differ between two runs of the same config, and why
VOLATILE_FILES = {"stage_times.json": "wall-clock seconds per stage", "report.html": "plots the stage timings",
                  "rsft.lock": "the pid and command of the process that last held the run (rsft.core.runlock)"}
# inside JSON files: wall-clock figures, the training inputs' fingerprint (it hashes the init model's
# absolute path, which differs between the two run directories compared here), and the checkpoint step a
# training resumed from (a record of the resume itself)
VOLATILE_KEYS = {"seconds", "seconds_total", "tokens_per_s", "train_runtime", "train_samples_per_second",
                 "train_steps_per_second", "fingerprint", "resumed_from"}


@dataclass(frozen=True)
class KillPoint:
    stage: str  # "base", "base-eval" or "r<N>:<stage>"
    fraction: float  # of the stage's duration in the control run

    def __str__(self) -> str:
        return f"{self.stage}@{self.fraction:.2f}"


def stages(rounds: int) -> list[str]:
    return ["base", "base-eval"] + [f"r{r}:{s}" for r in range(rounds) for s in ROUND_STAGES]


def done_marker(run: Path, stage: str) -> Path:
    if ":" not in stage:
        return run / f"{stage}.done"
    r, name = stage.split(":")
    return run / f"round-{int(r[1:]):03d}" / f"{name}.done"


def started(run: Path, stage: str, order: list[str]) -> bool:
    """A stage has started once the stage before it is done (the first once the config is written)."""
    i = order.index(stage)
    return (run / "config.yaml").exists() if i == 0 else done_marker(run, order[i - 1]).exists()


def durations(run: Path, rounds: int) -> dict[str, float]:
    """Each stage's seconds in a finished run (its stage_times.json files)."""
    out = dict(json.loads((run / "stage_times.json").read_text()))
    for r in range(rounds):
        for name, secs in json.loads((run / f"round-{r:03d}" / "stage_times.json").read_text()).items():
            out[f"r{r}:{name}"] = secs
    return out


class Harness:
    """One config, run by the CLI in `cwd` (where the config's `module:function` files live)."""

    def __init__(self, config: Path, cwd: Path, rounds: int, overrides: list[str] = ()) -> None:
        self.config, self.cwd, self.rounds, self.overrides = config, cwd, rounds, list(overrides)

    def command(self, out: Path) -> list[str]:
        return [sys.executable, "-m", "rsft.cli", "run", str(self.config), f"output_dir={out}", *self.overrides]

    def run(self, out: Path) -> Path:
        proc = subprocess.run(self.command(out), cwd=self.cwd, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return self.run_dir(out)

    def run_dir(self, out: Path) -> Path:
        return next(p.parent for p in out.glob("*/config.yaml"))

    def kill_at(self, out: Path, point: KillPoint, seconds: float, order: list[str], target: str = "driver",
                ready: Callable[[Path], bool] | None = None) -> str:
        """Start a run, kill it at `point`; return the first stage that was not done when it died ("finished"
        when every stage was done, e.g. while it wrote the report).

        `target` "driver" kills the run's whole process group; "actor" kills one Ray actor's process and lets
        the run go on (it must then finish by itself). `ready(run_dir)`, when given, must also hold once the
        stage has started before the clock starts (e.g. the first samples written by Ray actors)."""
        proc = subprocess.Popen(self.command(out), cwd=self.cwd, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        deadline = time.monotonic() + 600
        while True:
            run = next((p.parent for p in out.glob("*/config.yaml")), out / "none")
            if started(run, point.stage, order) and (ready is None or ready(run)):
                break
            assert proc.poll() is None, f"the run finished before {point}"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        self._wait_into(run, point, seconds, proc)
        if target == "actor":
            actor = _ray_actor_pid(proc.pid, deadline)
            died = next((s for s in order if not done_marker(run, s).exists()), "finished")
            os.kill(actor, signal.SIGKILL)
            _, err = proc.communicate()
            assert proc.returncode == 0, f"the run did not survive the loss of an actor: {err[-2000:]}"
            return died
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:  # it had just exited: every stage is done
            pass
        proc.wait()
        return next((s for s in order if not done_marker(run, s).exists()), "finished")


    @staticmethod
    def _wait_into(run: Path, point: KillPoint, seconds: float, proc: subprocess.Popen) -> None:
        """Wait until the stage is `point.fraction` of the way through: by its own progress where it has one
        (`stage_progress`: the groups written, the checkpoints saved), else by the control run's clock. A clock
        alone misses on a loaded machine: a control that ran slow makes the kill land after the stage."""
        if stage_progress(run, point.stage) is None:
            time.sleep(point.fraction * seconds)
            return
        deadline = time.monotonic() + 600
        while ((stage_progress(run, point.stage) or 0.0) < point.fraction and proc.poll() is None
               and not done_marker(run, point.stage).exists()):
            assert time.monotonic() < deadline
            time.sleep(0.002)


def stage_progress(run: Path, stage: str) -> float | None:
    """How far a running stage is, from what it has written: the share of train prompts sampled or scored,
    or of `train.max_steps` checkpointed; None for the other stages (and the base's)."""
    if ":" not in stage:
        return None
    import yaml

    r, name = stage.split(":")
    rd = run / f"round-{int(r[1:]):03d}"
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    if name in ("sample", "score"):
        path = rd / ("samples.jsonl" if name == "sample" else "scored.jsonl")
        lines = path.read_bytes().count(b"\n") if path.exists() else 0
        n = (cfg.get("task") or {}).get("params", {}).get("n_train")
        return lines / n if n else None
    if name == "train":
        if not (cfg.get("train") or {}).get("max_steps"):
            return None
        steps = [int(p.name.split("-")[1]) for p in (rd / "model-work").glob("checkpoint-*")] if rd.exists() else []
        return max(steps, default=0) / cfg["train"]["max_steps"]
    return None


def _ray_actor_pid(driver: int, deadline: float) -> int:
    """The process of one of this run's Ray actors (Ray titles it ``ray::_Host``...): one of the processes of
    the session rsft's reaper watches for this driver, so another run's actors are never touched."""
    while True:
        session = _session_of(driver)
        for pid in session_processes(session) if session else []:
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if title.startswith(b"ray::_Host"):
                return pid
        assert time.monotonic() < deadline, "no Ray actor of this run appeared"
        time.sleep(0.01)


def _session_of(driver: int) -> str | None:
    """The Ray session a driver started, from the command line of the reaper it started for it."""
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "rsft.parts.distributed.reaper" in argv:
            i = argv.index("rsft.parts.distributed.reaper")
            if argv[i + 1:i + 2] == [str(driver)]:
                return argv[i + 2]
    return None


def _strip(obj: object) -> object:
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in VOLATILE_KEYS}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def compare_runs(trial: Path, control: Path, trial_ran_at: Path | None = None, skip: tuple[str, ...] = ()) -> None:
    """The same files with the same bytes (run paths and `VOLATILE` parts aside); `trial_ran_at`: where the
    trial ran, when it was copied elsewhere since; `skip`: file names not compared (a config that differs on
    purpose)."""
    files = {p.relative_to(control) for p in control.rglob("*") if p.is_file()}
    got = {p.relative_to(trial) for p in trial.rglob("*") if p.is_file()}
    assert got == files, f"files differ: extra {sorted(map(str, got - files))}, missing {sorted(map(str, files - got))}"
    for rel in sorted(files):
        if rel.name in VOLATILE_FILES or rel.name in skip:
            continue
        a, b = (control / rel).read_bytes(), (trial / rel).read_bytes()
        if a == b:
            continue
        at = trial_ran_at or trial
        for c, t in ((control, at), (control.parent, at.parent)):  # the run's own paths
            a, b = a.replace(str(c).encode(), b"RUN"), b.replace(str(t).encode(), b"RUN")
        if rel.suffix == ".json":
            a, b = _strip(json.loads(a)), _strip(json.loads(b))
        assert a == b, f"{rel} differs from the uninterrupted run's"


def check_exactly_once(run: Path, rounds: int, prompt_ids: list[str]) -> None:
    for r in range(rounds):
        for name in ("samples.jsonl", "scored.jsonl"):
            ids = [row["prompt"]["id"] for row in read_jsonl(run / f"round-{r:03d}" / name)]
            assert ids == prompt_ids, f"round {r} {name}: prompts not exactly once, in order"
