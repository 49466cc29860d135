"""The run directory is the state.

Every stage reads only the run directory and writes only its own files. Files
are written atomically (temporary file, then rename), and a stage's
``<stage>.done`` marker is written last: its existence is the only proof that
the stage finished. Resuming is therefore "run every stage whose marker is
missing", with no separate bookkeeping that could disagree with the files.

The stages that take long append instead: sampling (``samples.jsonl``, and
``presample.jsonl`` for GVM) and scoring (``scored.jsonl``) write one line per
prompt group, a whole batch per write, through `resumable_map`, so an
interrupted stage resumes at the first prompt not written. A torn last line
from a kill, or a partial batch, is cut off and redone. Everything else is
written whole, atomically: small files at once, a round's worth of rows through
`JsonlWriter`, which streams into a temporary file and renames it. The round
stages read a round one group at a time (`iter_groups`), so their memory does not
grow with the round; `read_groups` (a whole file) is left to what still needs it
whole: GVM's plan and the graduation hand-off.

One idea per module:
- `rsft.rundir.files`: atomic writes, `JsonlWriter`, and readers whose errors name file:line;
- `rsft.rundir.layout`: where each file lives (`RunDir`, `RoundDir`, `GraduateDir`) and the done-markers;
- `rsft.rundir.resumable`: `resumable_map`, the append-and-resume writer of the long stages;
- `rsft.rundir.rows`: `round_rows`, the run's metrics history.

Import from those. Everything the single ``rsft/rundir.py`` offered is re-exported here, so the modules
that still import it from ``rsft.rundir`` (training, sampling, the sample, score, select and train stages,
export; and whatever is being written beside them) keep working while they move; no new code should.
"""

from __future__ import annotations

from rsft.rundir.files import (
    JsonlWriter,
    append_jsonl,
    atomic_write_json,
    atomic_write_jsonl,
    atomic_write_text,
    check_output,
    count_lines,
    iter_groups,
    naming_full_disk,
    parse_jsonl_line,
    read_groups,
    read_json,
    read_jsonl,
    read_jsonl_numbered,
    remove_stale_temps,
    replace_dir,
    truncate_lines,
    truncate_torn_tail,
)
from rsft.rundir.layout import (
    TRAIN_RESULT,
    RoundDir,
    is_done,
    mark_done,
    record_time,
    round_dirs,
    stage_times_file,
    work_dir,
)
from rsft.rundir.resumable import BatchMap, batches, resumable_map
from rsft.rundir.rows import round_rows

__all__ = [
    "TRAIN_RESULT", "BatchMap", "JsonlWriter", "RoundDir", "append_jsonl", "atomic_write_json", "atomic_write_jsonl",
    "atomic_write_text", "batches", "check_output", "count_lines", "is_done", "iter_groups", "mark_done",
    "naming_full_disk", "parse_jsonl_line", "read_groups", "read_json", "read_jsonl", "read_jsonl_numbered",
    "record_time", "remove_stale_temps", "replace_dir", "resumable_map", "round_dirs", "round_rows",
    "stage_times_file", "truncate_lines", "truncate_torn_tail", "work_dir",
]
