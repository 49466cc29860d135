"""The rounds table: one row per round (and the base model), as `rsft metrics`, the loop and the report show it.

The compact table fits an 80-column terminal whatever the values (counts and seconds are shortened: 186k,
2.8h); `wide` adds the rest. A column none of the rows has a value for is left out, so a run without
held-out eval or agent trajectories shows no empty columns. It only formats: every value is read from the
rows as `rsft.core.metrics_schema` names them, and every number is also in `rsft metrics --json`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.table import Table

from rsft.core import metrics_schema as M


def _count(v: float) -> str:
    """A count in at most 6 characters: 18,620 then 186k then 1.9M."""
    return f"{v:,.0f}" if v < 100_000 else f"{v / 1e3:.0f}k" if v < 10_000_000 else f"{v / 1e6:.1f}M"


def _secs(v: float) -> str:
    """Seconds in at most 5 characters: 1234 then 2.8h."""
    return f"{v:.0f}" if v < 10_000 else f"{v / 3600:.1f}h" if v < 360_000 else f"{v / 86400:.0f}d"


def _max_med(row: M.Row) -> str | None:
    """The best and the median sample's reward per prompt, in one cell."""
    best, median = M.REWARD_MAX_MEAN.of(row), M.REWARD_MEDIAN_MEAN.of(row)
    return None if best is None else f"{best:.2f}/{median:.2f}"


@dataclass(frozen=True)
class Column:
    """What one column shows: a metric, a pass@k-like family (at the largest k measured), or a cell computed
    from the row; `compact` columns are in the 80-column table, the others only in the wide one."""

    header: str  # "{k}" is the family's k
    value: M.Key[Any] | M.AtK | Callable[[M.Row], Any]
    fmt: str | Callable[[Any], str]
    compact: bool

    def reader(self, rows: list[M.Row]) -> tuple[str, Callable[[M.Row], Any]]:
        """This column's header and cell reader for these rows."""
        if isinstance(self.value, M.AtK):
            k = self.value.largest(rows)
            return self.header.format(k=k), (lambda row: None) if k is None else self.value(k).of
        if isinstance(self.value, M.Key):
            return self.header, self.value.of
        return self.header, self.value

    def cell(self, value: Any) -> str:
        return "-" if value is None else self.fmt(value) if callable(self.fmt) else self.fmt.format(value)


COLUMNS = [
    Column("round", M.ROUND, "{}", True),
    Column("greedy pass@1", M.GREEDY_PASS1, "{:.1%}", True),
    Column("pass@{k}", M.PASS_AT, "{:.1%}", True),
    Column("maj@{k}", M.MAJ_AT, "{:.1%}", False),
    Column("accept", M.ACCEPTANCE_RATE, "{:.1%}", True),
    Column("coverage", M.COVERAGE, "{:.1%}", True),
    Column("distinct", M.DISTINCT_ACCEPTED, "{:.2f}", False),
    Column("reward", M.REWARD_MEAN, "{:.3f}", False),
    Column("max/med", _max_med, "{}", False),
    Column("entropy", M.ENTROPY_MEAN, "{:.3f}", True),
    Column("turns", M.TURNS_MEAN, "{:.2f}", True),
    Column("tool err", M.TOOL_ERRORS, "{:.2f}", False),
    Column("tokens", M.TOKENS_GENERATED, "{:,}", False),
    Column("tok/s", M.TOKENS_PER_S, "{:,.0f}", False),
    Column("errors", M.SCORER_ERRORS, "{}", False),
    Column("kept", M.KEPT, _count, True),
    Column("rationalized", M.RATIONALIZED, _count, True),  # only in runs with selection.rationalize
    Column("train rows", M.TRAIN_ROWS, "{:,}", False),
    Column("loss", M.TRAIN_LOSS, "{:.4f}", False),
    Column("secs", M.SECONDS_TOTAL, _secs, True),
]


def _eval_engines(rows: list[M.Row]) -> str | None:
    """The engines and precisions the held-out numbers were measured with, e.g. 'ctranslate2 float32'."""
    seen = []
    for r in rows:
        engine = M.ENGINE.of(r)
        if engine is not None:
            label = f"{engine} {M.PRECISION.of(r) or ''}".strip()
            if label not in seen:
                seen.append(label)
    return ", ".join(seen) or None


def round_table(rows: list[M.Row], title: str = "rsft rounds", wide: bool = False) -> Table:
    """One row per round (plus the base model): the columns a practitioner watches, compact enough for an
    80-column terminal; `wide` adds maj@k, distinct, reward, max/median, tokens, tok/s, errors, train rows
    and loss (every number is also in `rsft metrics --json`)."""
    engines = _eval_engines(rows)
    table = Table(title=title, box=box.SIMPLE_HEAD, caption=f"held-out eval: {engines}" if engines else None,
                  pad_edge=False)
    shown = []
    for column in COLUMNS:
        if not (column.compact or wide):
            continue
        header, read = column.reader(rows)
        if any(read(r) is not None for r in rows):
            shown.append((header, read, column))
    for header, *_ in shown:
        table.add_column(header, justify="right", no_wrap=True)
    for r in rows:
        table.add_row(*(column.cell(read(r)) for _, read, column in shown))
    return table
