"""The monitor stage: the round's triggers, their action, and the round metrics sent to trackers.

It reads the metrics of every round so far and writes the round's `Verdict` (``monitor.json``): the
triggers that fired (each said in one line), and the strongest action among them (warn < revert < stop <
graduate). The loop reads that action: `stop` and `graduate` end the run after this round (`graduate`
first writes ``RUN/graduate/``), `revert` makes the next round start from the best round's model.
Trackers (`report_to`) get the round's metrics here, once per round.
"""

from __future__ import annotations

from rsft.core.metrics_schema import ROUND, Row, is_base
from rsft.core.progress import notice
from rsft.core.rundir.files import atomic_write_json
from rsft.core.rundir.rows import round_rows
from rsft.learning.monitoring.graduate import best_round, write_graduation
from rsft.learning.monitoring.trackers import log_round
from rsft.learning.monitoring.verdict import Fired, Verdict
from rsft.stages.run import Run


def history_until(run: Run, r: int) -> list[Row]:
    return [row for row in round_rows(run.dir) if is_base(row) or ROUND.of(row) <= r]


def monitor_stage(run: Run, r: int) -> None:
    history = history_until(run, r)
    fired = []
    for trigger in run.cfg.monitor.triggers:
        reason = trigger(history)
        if reason:
            fired.append(Fired(trigger.trigger, reason, trigger.action or run.cfg.monitor.action))
    fired = tuple(fired)
    action = Verdict.strongest(fired)
    revert_to = best_round(history) if action == "revert" else None
    graduate = None
    if action == "graduate":
        trigger = next(f.trigger for f in fired if f.action == "graduate")
        graduate = str(write_graduation(run.cfg, run.dir, r, trigger, history,
                                        lambda q: str(run.round(q).model) if q >= 0 else run.base_model))
    for f in fired:
        notice(f"round {r}: {f.trigger}: {f.reason} -> {f.action}")
    if run.cfg.report_to:
        log_round(run.cfg.report_to, run.dir, history[-1], r)
    atomic_write_json(run.round(r).monitor_file, Verdict(fired, action, revert_to, graduate).to_json())


def monitor_action(run: Run, r: int) -> Verdict:
    """What round r's monitor decided (`Verdict()` before it ran)."""
    return Verdict.read(run.round(r).monitor_file)
