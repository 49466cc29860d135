"""One rank of a multi-process training job: ``python -m rsft.learning.training.worker JOB.json``.

The launcher starts this module N times with RANK and WORLD_SIZE set. Each rank
reads the job spec the driver wrote (`rsft.learning.training.launch`), calls the job's
function with its keyword arguments (the function sets up DDP through the
Trainer, and decides what only rank 0 writes), and rank 0 writes the
function's return value to the spec's result file.

A watchdog thread exits the rank when the driver is gone, so killing rsft
alone never leaves ranks training into a work directory that a rerun is about
to resume from. A failure is an ordinary traceback on stderr, which the driver
has sent to the worker log.

It does not set up the process group itself, or talk to the driver other than
through those files.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rsft.core.registry import import_object
from rsft.core.rundir.files import atomic_write_json
from rsft.learning.training.launch import process_start_time


def driver_alive(driver: dict[str, Any]) -> bool:
    """The driver still runs: its pid exists and, where /proc says, it is the same process (not a reused pid)."""
    pid = int(driver["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    start = driver.get("start")
    return start is None or process_start_time(pid) in (start, None)


def watch_driver(driver: dict[str, Any], every: float = 1.0) -> None:
    """Kill this rank as soon as the driver is gone (a daemon thread; the check costs one stat a second)."""
    def watch() -> None:
        while driver_alive(driver):
            time.sleep(every)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="rsft-driver-watchdog", daemon=True).start()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m rsft.learning.training.worker JOB.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    watch_driver(spec["driver"])
    result = import_object(spec["job"], "job")(**spec["kwargs"])
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # rank 0 has written everything the job writes before any rank reports success
        dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        atomic_write_json(Path(spec["result"]), result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
