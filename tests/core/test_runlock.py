"""One rsft process per run directory (`rsft.core.runlock`): a second is refused in one line, a killed holder's
lock is taken over, and the lock is held through a whole `rsft run` (real CLI processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rsft.core.errors import RsftError
from rsft.core.runlock import LOCK_FILE, acquire, holds, release
from tests.conftest import ROOT, run_cli

HOLD = "import sys, time; from rsft.core.runlock import acquire; acquire(sys.argv[1]); print('held', flush=True); time.sleep(600)"


def hold_in_child(run_dir: Path) -> subprocess.Popen:
    """Another process that takes the lock and keeps it (until killed)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_is_refused_naming_the_directory_and_the_holder(tmp_path):
    run_dir = tmp_path / "run"
    child = hold_in_child(run_dir)
    try:
        with pytest.raises(RsftError) as err:
            acquire(run_dir)
        message = str(err.value)
        assert "\n" not in message and str(run_dir) in message and f"pid {child.pid}" in message
        assert not holds(run_dir)
    finally:
        child.kill()
        child.wait()


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path):
    run_dir = tmp_path / "run"
    child = hold_in_child(run_dir)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    path = acquire(run_dir)  # the kernel released the dead process's lock: no stale-pid guessing
    try:
        assert json.loads((run_dir / LOCK_FILE).read_text())["pid"] == os.getpid()
        assert acquire(run_dir) == path  # re-entrant within the process that holds it
        release(path)
        assert holds(run_dir)
    finally:
        release(path)
    assert not holds(run_dir)
    other = hold_in_child(run_dir)  # released: another process can take it now
    other.kill()
    other.wait()


@pytest.mark.slow  # 1 to 1.5 minutes; the lock itself is tested in-process above
def test_two_rsft_runs_on_one_directory_the_second_refuses_in_one_line(tmp_path):
    """A real `rsft run` holds the lock from before its first write to its end; a second `rsft run` and an
    `rsft sample RUN` on the same directory exit non-zero with one line, and change nothing; once the first
    is killed, a stage command takes the lock over and works. The first run trains for thousands of steps,
    so it is still working while the others try, however loaded the machine."""
    config = ROOT / "tests" / "e2e" / "mini.yaml"
    long = ["train.max_steps=100000"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    first = subprocess.Popen([sys.executable, "-m", "rsft.cli", "run", str(config), f"output_dir={tmp_path}", *long],
                             cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    run_dir = tmp_path / "mini"
    try:
        deadline = time.monotonic() + 300
        while not (run_dir / "base.done").exists():  # working: past the checks, into the stages
            assert first.poll() is None and time.monotonic() < deadline, "the first run ended early"
            time.sleep(0.2)
        before = sorted(p.name for p in run_dir.iterdir())
        second = run_cli("run", str(config), f"output_dir={tmp_path}", *long, cwd=tmp_path)
        stage = run_cli("sample", str(run_dir), "--round", "0", cwd=tmp_path)
        for proc in (second, stage):
            lines = proc.stderr.strip().splitlines()
            assert proc.returncode != 0 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
            assert str(run_dir) in lines[0] and f"pid {first.pid}" in lines[0], lines[0]
        assert first.poll() is None  # the refusals did not disturb it
        assert set(before) <= {p.name for p in run_dir.iterdir()}  # and removed nothing of its
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    run_cli("sample", str(run_dir), "--round", "0", cwd=tmp_path, check=True)
    assert (run_dir / "round-000" / "sample.done").exists()
