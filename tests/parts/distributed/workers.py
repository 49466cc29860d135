"""Workers and functions the Ray tests run remotely (imported there by name, as a user's module:Class is)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from rsft.core.errors import RsftError


class Sleeper:
    """Returns each item tagged with the actor's own pid; an item that is a number is also seconds to sleep,
    and the item "crash" kills the actor's process."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def run(self, batch: list) -> list:
        if "crash" in batch:
            os._exit(1)
        time.sleep(sum(x for x in batch if isinstance(x, (int, float))))
        return [(self.tag, x, os.getpid()) for x in batch]


class Broken:
    def __init__(self) -> None:
        raise ValueError("no engine here")


def scale(k: int, batch: list) -> list:
    time.sleep(batch[0] if isinstance(batch[0], float) else 0)
    return [x * k for x in batch]


def fail(kind: str, batch: list) -> list:
    if kind == "rsft":
        raise RsftError("key 'scorer': the scorer said no")
    raise ValueError(f"bad batch {batch}")


def crash_once(marker: str, batch: list) -> list:
    """Kills its worker process the first time it runs (the marker file says it did), then works."""
    if not Path(marker).exists():
        Path(marker).touch()
        os._exit(1)
    return batch
