"""`rsft score FILE`: score (and optionally filter) an existing dataset of prompts and completions.

Filtering a dataset with a verifier or a reward model is a job of its own:
each row keeps all its columns and gains ``score``, ``score_parts`` and
``score_error``; with `min_score`, only rows that scored at least that are
written. The other columns reach the scorer as keyword arguments, as in a run.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsft.core.errors import DataError, RsftError
from rsft.core.progress import progress_bar
from rsft.core.registry import resolve
from rsft.core.rundir.files import atomic_write_jsonl, check_output
from rsft.inputs.data.prompts import load_rows
from rsft.parts.scoring.base import score_flat, scorer_name
from rsft.parts.scoring.spec import check_scorer


@dataclass(frozen=True)
class FileScores:
    rows: int
    written: int
    errors: int
    mean: float | None
    output: Path


def score_file(input_path: str | Path, scorer: Any, output: str | Path | None = None,
               prompt_column: str = "prompt", completion_column: str = "completion",
               min_score: float | None = None, timeout: float | None = None, batch_size: int = 256) -> FileScores:
    """Score every row of a JSONL/Parquet/dataset file; write the rows with their scores."""
    input_path = Path(input_path)
    out_path = Path(output) if output else input_path.with_name(input_path.stem + ".scored.jsonl")
    check_output(out_path, "--output")
    fn = resolve("scorer", scorer, key="--scorer")
    rows = load_rows(str(input_path), "train", "input")
    if not rows:
        raise DataError(f"{input_path}: no rows")
    for where, row in rows:
        for col in (prompt_column, completion_column):
            if col not in row:
                raise DataError(f"{where}: missing column {col!r}; columns are {sorted(row)}")
    check_scorer(fn, set(rows[0][1]) - {prompt_column, completion_column}, "--scorer")
    written, values, errors = [], [], 0
    first_error: str | None = None
    with progress_bar("score", total=len(rows)) as (bar, task):
        for start in range(0, len(rows), batch_size):
            batch = [r for _, r in rows[start : start + batch_size]]
            fields = {k: [r.get(k) for r in batch] for k in batch[0] if k not in (prompt_column, completion_column)}
            scores = score_flat(fn, [r[prompt_column] for r in batch], [r[completion_column] for r in batch],
                                fields, timeout)
            for row, s in zip(batch, scores, strict=True):
                errors += not s.ok
                first_error = first_error or s.error
                if s.ok:
                    values.append(s.value)
                if min_score is None or s.passes(min_score):
                    written.append({**row, "score": s.value, "score_parts": s.parts, "score_error": s.error})
            bar.update(task, advance=len(batch))
    if errors == len(rows):
        raise RsftError(f"{input_path}: the scorer {scorer_name(fn)} failed on every row (first error: "
                        f"{first_error}); nothing was written")
    if not written:  # an empty file is nothing useful: say what the scores were instead
        raise RsftError(f"{input_path}: no row scored at least --min {min_score:g} (the best scored "
                        f"{max(values):g}); nothing was written")
    atomic_write_jsonl(out_path, written)
    return FileScores(len(rows), len(written), errors, statistics.fmean(values) if values else None, out_path)
