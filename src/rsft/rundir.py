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
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from rsft.errors import DataError, DiskFull, RsftError, disk_full, disk_full_message
from rsft.progress import progress_bar
from rsft.records import Group


def check_output(path: Path, key: str, is_dir: bool = False) -> None:
    """That `path` can be written (a file, or a directory with `is_dir`) before any work is done for it: nothing
    of the other kind in its place, and no file where a parent directory must be."""
    path = Path(path)
    if path.exists() and path.is_dir() != is_dir:
        raise DataError(f"{key} {path}: is a {'file' if is_dir else 'directory'}, expected a "
                        f"{'directory' if is_dir else 'file'}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise DataError(f"{key} {path}: {parent} is a file, not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise DataError(f"{key} {path}: {parent} is not writable")
            return


@contextlib.contextmanager
def naming_full_disk(path: Path) -> Iterator[None]:
    """A full disk while writing `path` becomes a one-line `DiskFull` naming it (a failed write's OSError
    names no file, and other writers, torch's or safetensors', raise their own types)."""
    try:
        yield
    except DiskFull:
        raise
    except Exception as e:
        if disk_full(e) is not None:
            raise DiskFull(disk_full_message(path)) from None
        raise


def atomic_write_text(path: Path, text: str) -> None:
    with naming_full_disk(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def append_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append rows in one write and fsync, so a kill leaves at most one torn line."""
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    with naming_full_disk(path), open(path, "a", encoding="utf-8") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def read_json(path: Path) -> Any:
    """A JSON file rsft wrote; a truncated or hand-edited one is a one-line error naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e}); remove it and run the stage that writes it again") from None


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the objects of a JSONL file; a bad line is a one-line error naming file:line."""
    for _, obj in read_jsonl_numbered(path):
        yield obj


def read_jsonl_numbered(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSONL file."""
    if not Path(path).is_file():
        raise DataError(f"{path}: no such file")
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if raw.strip():
                yield lineno, parse_jsonl_line(path, lineno, raw)


def parse_jsonl_line(path: Path, lineno: int, raw: bytes) -> dict[str, Any]:
    """One JSONL line as an object; anything else is a one-line error naming file:line."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}:{lineno}: not UTF-8 text (byte {e.start + 1} of the line)") from None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
    return obj


def truncate_torn_tail(path: Path) -> None:
    """Cut a partial last line left by a kill during an append (reading back from the end, in blocks)."""
    if not path.exists():
        return
    with open(path, "r+b") as f:
        end = f.seek(0, os.SEEK_END)
        pos = end
        while pos > 0:
            step = min(1 << 16, pos)
            f.seek(pos - step)
            block = f.read(step)
            if pos == end and block.endswith(b"\n"):
                return
            cut = block.rfind(b"\n")
            if cut >= 0:
                f.truncate(pos - step + cut + 1)
                return
            pos -= step
        f.truncate(0)


def truncate_lines(path: Path, keep: int) -> None:
    """Keep the first `keep` lines of a file, byte for byte (no re-serialisation)."""
    with open(path, "rb") as f:
        offset = sum(len(line) for _, line in zip(range(keep), f))
    with open(path, "r+b") as f:
        f.truncate(offset)


class RoundDir:
    """Paths and done-markers of one round: ``RUN/round-NNN/``."""

    def __init__(self, run_dir: Path, round_index: int) -> None:
        self.run_dir = Path(run_dir)
        self.index = round_index
        self.path = self.run_dir / f"round-{round_index:03d}"

    samples = property(lambda self: self.path / "samples.jsonl")
    presample = property(lambda self: self.path / "presample.jsonl")  # GVM's first samples per prompt
    allocation = property(lambda self: self.path / "allocation.json")  # GVM's plan
    scored = property(lambda self: self.path / "scored.jsonl")
    selected = property(lambda self: self.path / "selected.jsonl")
    kept = property(lambda self: self.path / "kept.jsonl")
    pairs = property(lambda self: self.path / "pairs.jsonl")
    model = property(lambda self: self.path / "model")
    model_work = property(lambda self: work_dir(self.path / "model"))  # training checkpoints of `model`
    eval_file = property(lambda self: self.path / "eval.json")
    metrics_file = property(lambda self: self.path / "metrics.json")
    stage_times = property(lambda self: stage_times_file(self.path))

    def done(self, stage: str) -> bool:
        return is_done(self.path, stage)

    def mark_done(self, stage: str) -> None:
        mark_done(self.path, stage)

    def times(self) -> dict[str, float]:
        return read_json(self.stage_times) if self.stage_times.exists() else {}


def is_done(where: Path, stage: str) -> bool:
    """Whether `stage` finished in directory `where` (its done-marker exists)."""
    return (Path(where) / f"{stage}.done").exists()


def mark_done(where: Path, stage: str) -> None:
    atomic_write_text(Path(where) / f"{stage}.done", "")


def stage_times_file(where: Path) -> Path:
    return Path(where) / "stage_times.json"


def record_time(where: Path, stage: str, seconds: float) -> None:
    """Add a stage's seconds to ``where/stage_times.json``."""
    path = stage_times_file(where)
    times = read_json(path) if path.exists() else {}
    times[stage] = round(seconds, 3)
    atomic_write_json(path, times)


TRAIN_RESULT = "rsft-train.json"  # beside a model rsft trained: its result and the fingerprint of its inputs


def work_dir(out: Path) -> Path:
    """Where a trainer writing `out` keeps its checkpoints until `out` is in place: ``OUT-work``."""
    return out.with_name(f"{out.name}-work")


def replace_dir(src: Path, dst: Path) -> None:
    """Move a finished directory into place, replacing any stale one."""
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(src, dst)


def round_dirs(run_dir: Path) -> list[RoundDir]:
    """Existing rounds of a run, in order."""
    out = []
    for p in sorted(Path(run_dir).glob("round-[0-9][0-9][0-9]")):
        out.append(RoundDir(run_dir, int(p.name.split("-")[1])))
    return out


def read_groups(path: Path) -> list[Group]:
    return [Group.from_json(d) for d in read_jsonl(path)]


def iter_groups(path: Path) -> Iterator[Group]:
    """The groups of a JSONL file one at a time: a round of any size is never held whole."""
    for d in read_jsonl(path):
        yield Group.from_json(d)


def count_lines(path: Path) -> int:
    """Non-blank lines of a file, read in blocks (for progress totals)."""
    if not Path(path).exists():
        return 0
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


class JsonlWriter:
    """A JSONL file written row by row into a temporary file and renamed into place on a clean exit.

    The streaming counterpart of `atomic_write_jsonl`: memory stays flat however many rows go
    through, and a kill (or an exception) leaves either the old file or none, never half of one.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.rows = 0

    def __enter__(self) -> JsonlWriter:
        with naming_full_disk(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, self._tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        self._f = os.fdopen(fd, "w", encoding="utf-8")
        return self

    def write(self, row: dict[str, Any]) -> None:
        with naming_full_disk(self.path):
            self._f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.rows += 1

    def copy_lines(self, f: Any) -> None:
        """Append the JSONL lines of an open text file (read from its current position), in blocks."""
        with naming_full_disk(self.path):
            shutil.copyfileobj(f, self._f)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            with naming_full_disk(self.path):
                if exc_type is None:
                    self._f.flush()
                    os.fsync(self._f.fileno())
                self._f.close()
                if exc_type is None:
                    os.replace(self._tmp, self.path)
        finally:
            if not self._f.closed:
                with contextlib.suppress(OSError):
                    self._f.close()
            Path(self._tmp).unlink(missing_ok=True)


def remove_stale_temps(where: Path) -> int:
    """Delete the ``.NAME.*.tmp`` files a kill left behind in `where` (an atomic write that never got
    renamed); returns how many. Only for a directory no other rsft process is writing."""
    n = 0
    for tmp in Path(where).glob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            n += 1
    return n


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


def round_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The base model's eval and every finished round's metrics, for tables and `rsft metrics`."""
    rows = []
    base_eval = Path(run_dir) / "base-eval.json"
    if base_eval.exists():
        rows.append({"round": "base", "eval": read_json(base_eval)})
    for rd in round_dirs(Path(run_dir)):
        if rd.metrics_file.exists():
            rows.append(read_json(rd.metrics_file))
    return rows
