"""Stop a local Ray cluster whose driver was killed: ``python -m rsft.parts.distributed.reaper PID SESSION``.

`ray.init(address="local")` starts the cluster's daemons (GCS, raylet, agents,
workers) in sessions of their own, and stops them from an exit handler of the
driver. A driver killed with SIGKILL (or OOM-killed) runs no handler, so the
daemons outlive it, holding memory and CPUs, and the resumed run starts a
second cluster beside them. This watchdog, started by `connect` with the
driver's pid and the cluster's session name, waits for the driver to go and
then kills every process whose command line names that session. It does not
touch a cluster rsft joined (`auto`, an address): only one it started.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def session_processes(session: str) -> list[int]:
    """Processes of the cluster: the command line names the session (GCS, raylet, workers before they
    retitle themselves), or an open file lies in its session directory (agents retitled ``ray::...``)."""
    out, key = [], session.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if key in (entry / "cmdline").read_bytes() or any(
                    session in os.readlink(fd) for fd in (entry / "fd").iterdir()):
                out.append(int(entry.name))
        except OSError:
            continue
    return out


def main(pid: int, session: str, poll: float = 0.5) -> None:
    while alive(pid):
        time.sleep(poll)
    time.sleep(poll)  # a driver that exits normally stops its cluster itself
    for p in session_processes(session):
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
