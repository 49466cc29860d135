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
- `rsft.core.rundir.files`: atomic writes, `JsonlWriter`, and readers whose errors name file:line;
- `rsft.core.rundir.layout`: where each file lives (`RunDir`, `RoundDir`, `GraduateDir`) and the done-markers;
- `rsft.core.rundir.resumable`: `resumable_map`, the append-and-resume writer of the long stages;
- `rsft.core.rundir.rows`: `round_rows`, the run's metrics history.

Import from those.
"""
