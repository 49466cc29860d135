"""The fault tests' shared run: its harness, and one uninterrupted control run per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.faults.harness import Harness, durations

HERE = ROOT / "tests" / "faults"
ROUNDS = 2


@pytest.fixture(scope="session")
def harness(tmp_path_factory) -> Harness:
    cwd = tmp_path_factory.mktemp("cwd")
    shutil.copy(HERE / "fault_scorer.py", cwd)
    return Harness(HERE / "fault.yaml", cwd, ROUNDS)


@pytest.fixture(scope="session")
def control(harness, tmp_path_factory) -> tuple[Path, dict[str, float]]:
    """The uninterrupted run every trial is compared with, and its stage durations."""
    run = harness.run(tmp_path_factory.mktemp("control"))
    return run, durations(run, ROUNDS)
