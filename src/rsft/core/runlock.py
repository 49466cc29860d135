"""One rsft process per run directory: an advisory lock held while a run or a stage works in it.

Two processes writing one run directory would interleave appends to samples.jsonl, and a resume's
cleanup (`rsft.loop.rounds.clean_after_kill`) would delete the other process's temporary files. So `rsft run`
and every `rsft <stage> RUN` take ``RUN/rsft.lock`` first, with `fcntl.flock`: the kernel releases it when
the holding process ends, however it ends, so a lock left by a killed process is simply taken over by
the next one, and nothing has to guess whether a pid is still alive. The file holds the holder's pid and
command line, for the one-line refusal the second process prints.

The lock is re-entrant within a process (a run that calls a stage function holds it once), is not
inherited by programs the holder starts (close-on-exec: a vLLM server or a training rank that outlives
a killed rsft must not keep the run locked), and is never deleted: removing a lock file while another
process waits on it would let two processes hold two different files. It is advisory: it keeps rsft
processes apart, not a user's own `rm`. It needs a filesystem with working flock (local disks and NFSv4
have it).
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import threading
from pathlib import Path

from rsft.core.errors import RsftError

LOCK_FILE = "rsft.lock"

_held: dict[Path, list[int]] = {}  # resolved lock path -> [fd, depth]
_guard = threading.Lock()


def lock_path(run_dir: Path) -> Path:
    return Path(run_dir) / LOCK_FILE


def acquire(run_dir: Path) -> Path:
    """Take the run directory's lock (creating the directory and the file), or refuse in one line naming the
    directory and the process that holds it. Returns the lock file's path, for `release`."""
    run_dir = Path(run_dir)
    path = lock_path(run_dir).resolve() if run_dir.exists() else lock_path(run_dir).absolute()
    with _guard:
        if path in _held:
            _held[path][1] += 1
            return path
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise RsftError(f"{run_dir}: another rsft process ({holder}) is working in this run directory; wait "
                            "for it to finish or stop it, then run again") from None
        except OSError as e:
            os.close(fd)
            raise RsftError(f"{path}: cannot lock the run directory ({e.strerror}); rsft needs a filesystem with "
                            "flock") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps({"pid": os.getpid(), "command": _command()}) + "\n").encode(), 0)
        _held[path] = [fd, 1]
    return path


def release(path: Path | None) -> None:
    """Give back one hold of the lock taken by `acquire`; the last one unlocks (the file stays)."""
    with _guard:
        entry = _held.get(path)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del _held[path]
            fcntl.flock(entry[0], fcntl.LOCK_UN)
            os.close(entry[0])


def holds(run_dir: Path) -> bool:
    """Whether this process holds the run directory's lock."""
    return lock_path(Path(run_dir)).resolve() in _held


def _holder(fd: int) -> str:
    """Who holds the lock, from what it wrote into the file ("pid N: COMMAND")."""
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "{}")
        return f"pid {int(data['pid'])}: {data.get('command', '?')}"
    except (ValueError, KeyError, TypeError, OSError):
        return "a process that has not written its pid yet"


def _command() -> str:
    argv = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else ["python"]
    text = " ".join(argv)
    return text if len(text) <= 200 else text[:197] + "..."
