"""`round_rows`: a run's history, the rows every table, plot, trigger and `rsft metrics` reads.

The base model's eval (``base-eval.json``) as its own row, then each round's ``metrics.json`` in round
order; a round whose metrics stage has not run has no row. The rows are the files' dicts as written (their
keys: `rsft.core.metrics_schema`), neither checked nor filled in, so an older run reads as it was written.
"""

from __future__ import annotations

from pathlib import Path

from rsft.core.metrics_schema import Row, base_row
from rsft.core.rundir.files import read_json
from rsft.core.rundir.layout import RunDir


def round_rows(run_dir: Path) -> list[Row]:
    """The base model's eval and every finished round's metrics, for tables and `rsft metrics`."""
    layout = RunDir(run_dir)
    rows = []
    if layout.base_eval.exists():
        rows.append(base_row(read_json(layout.base_eval)))
    for rd in layout.rounds():
        if rd.metrics_file.exists():
            rows.append(read_json(rd.metrics_file))
    return rows
