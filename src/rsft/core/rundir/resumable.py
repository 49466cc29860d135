"""`resumable_map`: a long stage's output, appended a batch at a time, that resumes at the first item not written.

Sampling (``samples.jsonl``, ``presample.jsonl``) and scoring (``scored.jsonl``) write one line per prompt
group through it. A kill leaves whole batches and at most one torn line; on the next call the torn line and
a partial last batch are cut off and redone, and every line kept is checked against the item it claims to
be for. It does not decide what a batch is worth or retry a failed one: a batch that raises stops the stage.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from rsft.core.errors import RsftError
from rsft.core.progress import progress_bar
from rsft.core.rundir.files import append_jsonl, read_jsonl, truncate_lines, truncate_torn_tail

BatchMap = Callable[[Iterable[list[Any]]], Iterator[list[dict[str, Any]]]]


def batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of `size` items (the last may be shorter), pulled lazily."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def resumable_map(items: Iterable[Any], out: Path, fn: Callable[[list[Any]], list[dict[str, Any]]] | None,
                  batch_size: int, label: str, item_id: Callable[[Any], str], total: int | None = None,
                  mapper: BatchMap | None = None) -> None:
    """Write fn(batch) for each batch of items to out (JSONL, one line per item), resuming; streaming.

    Lines already in `out` are trusted only if they are whole batches for the same
    items in the same order; a torn tail or a partial batch is cut off and redone.
    Items are pulled lazily and each batch's lines are appended as soon as they
    arrive, so memory does not grow with the number of items. `mapper` replaces
    the in-process ``map(fn, batches)`` by another ordered map over the batches
    (Ray actors); it must yield each batch's lines in input order.
    """
    truncate_torn_tail(out)
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    items = iter(items)
    done, pending = 0, []  # pending: the items of the last, possibly partial, batch already on disk
    if out.exists():
        for row in read_jsonl(out):
            item = next(items, _END)
            if item is _END:
                raise RsftError(f"{out}:{done + 1}: more lines than the stage has items; "
                                "the run's prompts changed, start a new run")
            if row["prompt"]["id"] != item_id(item):
                raise RsftError(f"{out}:{done + 1}: written for prompt {row['prompt']['id']!r}, expected "
                                f"{item_id(item)!r}; the run's prompts changed, start a new run")
            done += 1
            pending = [] if len(pending) + 1 == batch_size else [*pending, item]
    rest = next(items, _END)
    if rest is _END:
        pending = []  # every item is written: a short last batch is the last batch
    else:
        items = itertools.chain([rest], items)
    if pending:
        truncate_lines(out, done - len(pending))
        items = itertools.chain(pending, items)
    whole = done - len(pending)
    out.parent.mkdir(parents=True, exist_ok=True)
    with progress_bar(label, total=total, completed=whole) as (bar, task):
        chunks = batches(items, batch_size)
        for lines in (mapper(chunks) if mapper is not None else map(fn, chunks)):
            append_jsonl(out, lines)
            bar.update(task, advance=len(lines))


_END = object()
