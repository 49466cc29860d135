"""What a round's monitor decided (``monitor.json``), as a typed record: the triggers that fired and the action.

The monitor stage (`rsft.stages.monitor`) writes one per round; the loop reads its `action` (stop and
graduate end the run), the next round's policy its `revert_to`, and the report its `fired`. The file is
`Verdict.to_json()` as it always was: ``fired`` and ``action``, plus ``revert_to`` only on a revert and
``graduate`` only on a graduation. The record only carries the decision; `rsft.stages.monitor` makes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsft.core.rundir.files import read_json
from rsft.learning.monitoring.triggers import Action

STRENGTH: dict[str, int] = {"warn": 0, "revert": 1, "stop": 2, "graduate": 3}  # the strongest action fired wins


@dataclass(frozen=True)
class Fired:
    """One trigger that fired: its name, why (one line), and the action it asks for."""

    trigger: str
    reason: str
    action: Action

    def to_json(self) -> dict[str, Any]:
        return {"trigger": self.trigger, "reason": self.reason, "action": self.action}


@dataclass(frozen=True)
class Verdict:
    """A round's monitor decision; `Verdict()` (nothing fired, no action) before the monitor has run."""

    fired: tuple[Fired, ...] = ()
    action: Action | None = None
    revert_to: int | None = None  # with action revert: the round whose model the next round starts from (-1: base)
    graduate: str | None = None  # with action graduate: the hand-off directory written

    @staticmethod
    def strongest(fired: tuple[Fired, ...]) -> Action | None:
        return max((f.action for f in fired), key=STRENGTH.__getitem__, default=None)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"fired": [f.to_json() for f in self.fired], "action": self.action}
        if self.revert_to is not None:
            out["revert_to"] = self.revert_to
        if self.graduate is not None:
            out["graduate"] = self.graduate
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Verdict:
        return cls(tuple(Fired(f["trigger"], f["reason"], f["action"]) for f in d.get("fired", [])),
                   d.get("action"), d.get("revert_to"), d.get("graduate"))

    @classmethod
    def read(cls, path: Path) -> Verdict:
        """The verdict in `path`; `Verdict()` when the monitor has not written one."""
        return cls.from_json(read_json(path)) if Path(path).exists() else cls()
