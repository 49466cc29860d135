"""The files rsft writes and reads: atomic writes, streaming JSONL, and readers whose errors name the file.

Everything is written atomically, into a temporary file beside the target and then renamed: small files at
once (`atomic_write_json`), a round's worth of rows streamed through `JsonlWriter`. A reader of a file rsft
wrote turns a truncated or hand-edited one into a one-line `DataError` naming file:line, and a full disk
into a `DiskFull` naming the file. The append-and-resume side (`append_jsonl`, the truncations) serves
`rsft.core.rundir.resumable`. Nothing here knows which file is which: that is `rsft.core.rundir.layout`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rsft.core.errors import DataError, DiskFull, disk_full, disk_full_message
from rsft.core.records import Group


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


def replace_dir(src: Path, dst: Path) -> None:
    """Move a finished directory into place, replacing any stale one."""
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(src, dst)


def read_groups(path: Path) -> list[Group]:
    """The groups of a JSONL file, all at once: only for what needs a round whole (GVM's plan, graduation)."""
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
