"""The monitor stage: the round's triggers, their action, and the round metrics sent to trackers.

It reads the metrics of every round so far and writes ``monitor.json``: the triggers that fired (each
said in one line), and the strongest action among them (warn < revert < stop < graduate). The loop
reads that action: `stop` and `graduate` end the run after this round (`graduate` first writes
``RUN/graduate/``), `revert` makes the next round start from the best round's model. Trackers
(`report_to`) get the round's metrics here, once per round.
"""

from __future__ import annotations

from typing import Any

from rsft.monitoring.graduate import best_round, write_graduation
from rsft.monitoring.trackers import log_round
from rsft.progress import notice
from rsft.rundir import atomic_write_json, read_json
from rsft.rundir import round_rows
from rsft.stages.run import Run

STRENGTH = {"warn": 0, "revert": 1, "stop": 2, "graduate": 3}


def history_until(run: Run, r: int) -> list[dict[str, Any]]:
    return [row for row in round_rows(run.dir) if row.get("round") == "base" or row["round"] <= r]


def monitor_stage(run: Run, r: int) -> None:
    history = history_until(run, r)
    fired = []
    for trigger in run.cfg.monitor.triggers:
        reason = trigger(history)
        if reason:
            fired.append({"trigger": trigger.trigger, "reason": reason,
                          "action": trigger.action or run.cfg.monitor.action})
    out: dict[str, Any] = {"fired": fired,
                           "action": max((f["action"] for f in fired), key=STRENGTH.get, default=None)}
    if out["action"] == "revert":
        out["revert_to"] = best_round(history)
    if out["action"] == "graduate":
        trigger = next(f["trigger"] for f in fired if f["action"] == "graduate")
        out["graduate"] = str(write_graduation(run, r, trigger, history))
    for f in fired:
        notice(f"round {r}: {f['trigger']}: {f['reason']} -> {f['action']}")
    if run.cfg.report_to:
        log_round(run.cfg.report_to, run.dir, history[-1], r)
    atomic_write_json(run.round(r).path / "monitor.json", out)


def monitor_action(run: Run, r: int) -> dict[str, Any]:
    """What round r's monitor decided ({} before it ran)."""
    path = run.round(r).path / "monitor.json"
    return read_json(path) if path.exists() else {}
