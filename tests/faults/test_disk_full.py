"""A full disk mid-run: one line naming the cause, a non-zero exit, and once space is freed, the same
command resumes to the uninterrupted run's result.

The run writes to a 64 MB tmpfs, mounted in a private mount namespace (`unshare -m`, so root only),
that a filler file has left with 3 MB free: the first round's training checkpoints do not fit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.faults.conftest import HERE, ROUNDS
from tests.faults.harness import check_exactly_once, compare_runs
from tests.faults.test_kill_points import train_ids

SCRIPT = """
set -u
mount -t tmpfs -o size=64m tmpfs "$MNT"
avail=$(df --output=avail -k "$MNT" | tail -1)
dd if=/dev/zero of="$MNT/filler" bs=1k count=$((avail - 3000)) status=none
"$PY" -m rsft.cli run "$CFG" output_dir="$MNT/out" > "$LOG/out1" 2> "$LOG/err1"; echo $? > "$LOG/rc1"
rm "$MNT/filler"
"$PY" -m rsft.cli run "$CFG" output_dir="$MNT/out" > "$LOG/out2" 2> "$LOG/err2"; echo $? > "$LOG/rc2"
cp -a "$MNT/out" "$LOG/copy"
"""


def _can_mount() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
                          capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _can_mount(), reason="needs root and a private mount namespace to mount a small tmpfs")
def test_a_full_disk_is_one_line_and_the_run_resumes_once_space_is_freed(harness, control, tmp_path):
    mnt, log = tmp_path / "mnt", tmp_path / "log"
    mnt.mkdir()
    log.mkdir()
    env = {**os.environ, "MNT": str(mnt), "LOG": str(log), "PY": sys.executable, "CFG": str(HERE / "fault.yaml")}
    subprocess.run(["unshare", "-m", "bash", "-c", SCRIPT], cwd=harness.cwd, env=env, check=True)
    err = [line for line in (log / "err1").read_text().splitlines() if line.startswith("rsft:")]
    assert (log / "rc1").read_text().strip() == "28"
    assert len(err) == 1 and "disk full" in err[0] and "no space left on device" in err[0], err
    assert "Traceback" not in (log / "err1").read_text()
    assert (log / "rc2").read_text().strip() == "0", (log / "err2").read_text()[-2000:]
    resumed = log / "copy" / "fault"
    compare_runs(resumed, control[0], trial_ran_at=mnt / "out" / "fault")
    check_exactly_once(resumed, ROUNDS, train_ids())
