"""kill -9 the CLI during sampling and during training, resume, and compare with an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli

MINI = ROOT / "tests" / "e2e" / "mini.yaml"
# Enough prompts in small batches that sampling and training each last a few seconds.
SLOW = ["rounds=1", "task.params.n_train=2000", "sampling.batch_size=4", "train.max_steps=200", "train.save_steps=20"]


def start(out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rsft.cli", "run", str(MINI), f"output_dir={out}", *SLOW],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, "the run finished before the kill point"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref")
    run_cli("run", str(MINI), f"output_dir={out}", *SLOW, check=True)
    return out / "mini" / "round-000"


def compare(resumed: Path, reference: Path) -> None:
    for f in ("samples.jsonl", "scored.jsonl", "selected.jsonl", "model/model.safetensors", "eval.json"):
        assert (resumed / f).read_bytes() == (reference / f).read_bytes(), f


@pytest.mark.slow  # the default suite kills mid-stage through tests/faults (the same resume paths)
def test_kill_during_sampling_then_resume(tmp_path, reference):
    samples = tmp_path / "mini" / "round-000" / "samples.jsonl"
    proc = start(tmp_path)
    kill_when(proc, lambda: samples.exists() and samples.stat().st_size > 20_000)
    rd = tmp_path / "mini" / "round-000"
    assert not (rd / "sample.done").exists()
    written = len(samples.read_text().splitlines())
    assert 0 < written < 2000
    run_cli("run", str(MINI), f"output_dir={tmp_path}", *SLOW, check=True)
    compare(rd, reference)


@pytest.mark.slow
def test_kill_during_training_then_resume(tmp_path, reference):
    rd = tmp_path / "mini" / "round-000"
    proc = start(tmp_path)
    kill_when(proc, lambda: any((rd / "model-work").glob("checkpoint-*/trainer_state.json")))
    assert not (rd / "train.done").exists() and not (rd / "model").exists()
    run_cli("run", str(MINI), f"output_dir={tmp_path}", *SLOW, check=True)
    compare(rd, reference)
