"""Run a training job as N processes: write its spec, start the launcher's command, wait, read rank 0's result.

The driver (the rsft process) writes ``JOB.json`` into the work directory
(the job, a ``module:function``, and its keyword arguments, all JSON), runs the
launcher's command (`rsft.learning.training.launchers`) over `rsft.learning.training.worker` as
a subprocess with the workers' stdout and stderr going to ``worker.log``
beside it, and shows rank 0's progress from ``progress.json`` on its own bar.
It returns what rank 0 wrote to ``result.json``. A failure is one line naming
the log; the traceback stays in the log.

The launcher runs in the driver's process group, so Ctrl-C or a kill of the
group reaches every rank; each worker also exits when the driver is gone
(`rsft.learning.training.worker`), so a driver killed alone leaves no rank training.

It does not retry a failed job, schedule jobs across machines (see the Ray
executor for that), or pass Python objects: what a job needs must be JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from rsft.core.errors import RsftError
from rsft.core.progress import progress_bar
from rsft.core.rundir.files import atomic_write_json
from rsft.learning.training.launchers import build_launcher

JOB, RESULT, PROGRESS, LOG = "JOB.json", "result.json", "progress.json", "worker.log"


def process_start_time(pid: int) -> str | None:
    """The start time of a process in clock ticks since boot (Linux /proc), to tell it from a later
    process given the same pid; None where /proc is not there."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def run_processes(job: str, kwargs: dict[str, Any], work: Path, processes: int, launcher: str,
                  label: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `job(**kwargs)` on `processes` ranks under `launcher`, with `env` added to their environment
    (never written to the spec: a tracker's URI may hold a token); return the dict rank 0 returned."""
    work.mkdir(parents=True, exist_ok=True)
    for stale in (RESULT, PROGRESS):
        (work / stale).unlink(missing_ok=True)
    spec = {"job": job, "kwargs": kwargs, "result": str(work / RESULT), "progress": str(work / PROGRESS),
            "driver": {"pid": os.getpid(), "start": process_start_time(os.getpid())}}
    atomic_write_json(work / JOB, spec)
    argv = build_launcher(launcher)(processes, "rsft.learning.training.worker", [str(work / JOB)])
    log_path = work / LOG
    env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(f"$ {' '.join(argv)}\n")
        log.flush()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
        try:
            _follow(proc, work / PROGRESS, label)
        except BaseException:
            _stop(proc)
            raise
    if proc.returncode != 0:
        cause = last_error(log_path)
        raise RsftError(f"{label}: {processes} training processes under {launcher} failed (exit code "
                        f"{proc.returncode}{'; ' + cause if cause else ''}); the workers' output is in {log_path}")
    try:
        return json.loads((work / RESULT).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise RsftError(f"{label}: the training processes exited without rank 0's result ({work / RESULT}); "
                        f"the workers' output is in {log_path}") from None


def _follow(proc: subprocess.Popen, progress: Path, label: str) -> None:
    """Wait for the launcher, moving a bar with what rank 0 writes to `progress` (step, max_steps, loss).

    The bar appears once training has begun: ranks that fail while loading leave only the error line."""
    with contextlib.ExitStack() as stack:
        shown = None
        while proc.poll() is None:
            time.sleep(0.25)
            try:
                state = json.loads(progress.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            if shown is None:
                shown = stack.enter_context(progress_bar(label, total=state.get("max_steps"),
                                                         completed=state.get("step", 0)))
            bar, task = shown
            info = f"loss {state['loss']:.4f}" if state.get("loss") is not None else ""
            bar.update(task, total=state.get("max_steps"), completed=state.get("step", 0), info=info)


def _stop(proc: subprocess.Popen) -> None:
    """Interrupt the launcher as Ctrl-C would (it passes the signal on to its ranks), then kill it."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def last_error(log_path: Path) -> str:
    """The last line of the log that looks like a Python exception ("ValueError: ..."), shortened."""
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    pattern = re.compile(r"^(?:\[rank\d+\]: )?([A-Za-z_][\w.]*(?:Error|Exception|Interrupt)): (.*)$")
    for line in reversed(lines):
        m = pattern.match(line.strip())
        if m and not m.group(1).endswith("ChildFailedError"):  # torchrun's summary, not the rank's error
            text = f"{m.group(1).rsplit('.', 1)[-1]}: {m.group(2)}"  # RsftError, not rsft.core.errors.RsftError
            return text if len(text) <= 200 else text[:197] + "..."
    return ""


def progress_file_callback(path: Path) -> Any:
    """A TrainerCallback with which rank 0 writes (step, max_steps, last loss) to `path` for the driver."""
    from transformers import TrainerCallback

    class ProgressFile(TrainerCallback):
        def __init__(self) -> None:
            self.loss: float | None = None
            self.written = 0.0

        def _write(self, state: Any, force: bool = False) -> None:
            # at most four times a second, and not fsynced: it is a view for the driver's bar, not state
            if not state.is_world_process_zero or (not force and time.monotonic() - self.written < 0.25):
                return
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(json.dumps({"step": state.global_step, "max_steps": state.max_steps, "loss": self.loss}))
            os.replace(tmp, path)
            self.written = time.monotonic()

        def on_train_begin(self, args, state, control, **kwargs):
            self._write(state, force=True)

        def on_step_end(self, args, state, control, **kwargs):
            self._write(state, force=state.global_step >= state.max_steps)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.loss = float(logs["loss"])
                self._write(state, force=state.global_step >= state.max_steps)

    return ProgressFile()
