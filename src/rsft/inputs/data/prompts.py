"""Loading a user's prompts: JSONL, Parquet, a saved dataset directory, or an HF hub dataset.

Each row becomes a `Prompt`. The prompt column holds either a string or a list
of chat messages ({role, content}); the other columns become the prompt's
`fields`, handed to the scorer by name. Errors name the file and line (or
row) and the column that was expected; nothing is guessed silently.
"""

from __future__ import annotations

import functools
import json
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsft.core.errors import DataError
from rsft.core.records import Prompt
from rsft.core.rundir.files import parse_jsonl_line, read_jsonl_numbered

Row = tuple[str, dict[str, Any]]  # (where, row), "where" is file:line or file row N


def load_rows(spec: str, split: str, key: str) -> list[Row]:
    """Rows of a data source named in the config under `key`."""
    if spec.startswith("hf:"):
        return _hf_rows(spec[3:], split, key)
    path = Path(spec)
    if not path.exists():
        raise DataError(f"key '{key}': {path}: no such file or directory")
    if path.is_dir():
        from datasets import load_from_disk

        try:
            ds = load_from_disk(str(path))
        except (FileNotFoundError, ValueError) as e:
            raise DataError(f"key '{key}': {path}: not a saved dataset ({e})") from None
        if hasattr(ds, "keys"):
            if split not in ds:
                raise DataError(f"key '{key}': {path}: no split {split!r} (has {sorted(ds.keys())})")
            ds = ds[split]
        return [(f"{path} row {i}", dict(r)) for i, r in enumerate(ds)]
    if path.suffix in (".jsonl", ".json"):
        return [(f"{path}:{n}", obj) for n, obj in read_jsonl_numbered(path)]
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as e:  # noqa: BLE001 - pyarrow raises several unrelated types
            raise DataError(f"{path}: cannot read Parquet ({e})") from None
        return [(f"{path} row {i}", r) for i, r in enumerate(table.to_pylist())]
    raise DataError(f"key '{key}': {path}: expected a .jsonl, .parquet or dataset directory, or 'hf:NAME'")


def _hf_rows(name: str, split: str, key: str) -> list[Row]:
    from datasets import load_dataset

    repo, _, config = name.partition(":")
    try:
        ds = load_dataset(repo, config or None, split=split)
    except Exception as e:  # noqa: BLE001 - the hub client raises many types; all mean "cannot load"
        raise DataError(f"key '{key}': cannot load HF dataset {name!r} split {split!r} "
                        f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    return [(f"{name}[{split}] row {i}", dict(r)) for i, r in enumerate(ds)]


def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(m, dict) and "role" in m and "content" in m for m in value
    )


@dataclass(frozen=True)
class ChatFormat:
    """Text rows made into chat prompts (`task.system_prompt`, `task.prompt_template`): a system turn when
    `system` is set, and a user turn `template.format(**row)` (default: the prompt column as it is), as a
    user of TRL would map a question column into `messages` before training."""

    system: str | None
    template: str | None

    def messages(self, where: str, row: dict[str, Any], text: str, prompt_column: str) -> tuple[dict[str, str], ...]:
        try:
            user = self.template.format(**row) if self.template is not None else text
        except KeyError as e:
            raise DataError(f"{where}: task.prompt_template names column {e.args[0]!r}, which the row does not "
                            f"have (columns are {sorted(row)})") from None
        except (IndexError, ValueError) as e:
            raise DataError(f"{where}: task.prompt_template is not a format string over the columns ({e})") from None
        system = ({"role": "system", "content": self.system},) if self.system else ()
        return (*system, {"role": "user", "content": user})


def rows_to_prompts(rows: list[Row], prompt_column: str, id_column: str | None,
                    field_columns: list[str] | None, exclude: tuple[str, ...] = (),
                    chat: ChatFormat | None = None) -> list[Prompt]:
    seen: set[str] = set()
    return [row_to_prompt(where, row, i, prompt_column, id_column, field_columns, exclude, seen, chat)
            for i, (where, row) in enumerate(rows)]


def row_to_prompt(where: str, row: dict[str, Any], i: int, prompt_column: str, id_column: str | None,
                  field_columns: list[str] | None, exclude: tuple[str, ...] = (),
                  seen: set[str] | None = None, chat: ChatFormat | None = None) -> Prompt:
    """The Prompt of one row (`i`: its position, the id when there is no id column); `seen` collects ids to
    refuse duplicates."""
    if prompt_column not in row:
        raise DataError(f"{where}: missing column {prompt_column!r} (task.prompt_column); "
                        f"columns are {sorted(row)}")
    value = row[prompt_column]
    if id_column is not None and id_column not in row:
        raise DataError(f"{where}: missing column {id_column!r} (task.id_column)")
    pid = str(row[id_column]) if id_column is not None else str(i)
    if seen is not None:
        if pid in seen:
            raise DataError(f"{where}: duplicate prompt id {pid!r}")
        seen.add(pid)
    names = field_columns if field_columns is not None else [
        k for k in row if k not in (prompt_column, id_column, *exclude)
    ]
    missing = [k for k in names if k not in row]
    if missing:
        raise DataError(f"{where}: missing column {missing[0]!r} (task.field_columns)")
    fields = {k: row[k] for k in names}
    if isinstance(value, str):
        if not value:
            raise DataError(f"{where}: column {prompt_column!r} is an empty prompt")
        if chat is not None:
            return Prompt(pid, messages=chat.messages(where, row, value, prompt_column), fields=fields)
        return Prompt(pid, text=value, fields=fields)
    if _is_messages(value):
        if chat is not None:
            raise DataError(f"{where}: column {prompt_column!r} already holds chat messages; task.system_prompt "
                            "and task.prompt_template make chat prompts from a text column")
        return Prompt(pid, messages=tuple(value), fields=fields)
    raise DataError(f"{where}: column {prompt_column!r} must be a string or a list of "
                    f"{{role, content}} messages, got {type(value).__name__}")


class LazyPrompts(Sequence[Prompt]):
    """The prompts of a JSONL file, read from disk when asked for: it holds one byte offset per row.

    Built by `lazy_jsonl_prompts`, which reads the whole file once to check every row (as
    `rows_to_prompts` does) and remembers where each starts. Iterating reads the file in order;
    indexing seeks; slicing gives another view of the same file. A 1M-prompt file costs 8 MB here
    instead of a gigabyte of Prompt objects. It assumes the file does not change during the run
    (rsft refuses a resume whose samples do not match the prompts anyway).
    """

    def __init__(self, path: Path, offsets: array, make: Callable[[int, dict[str, Any]], Prompt],
                 start: int = 0, stop: int | None = None) -> None:
        self.path, self._offsets, self._make = path, offsets, make
        self._start, self._stop = start, len(offsets) if stop is None else stop

    def __len__(self) -> int:
        return self._stop - self._start

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            start, stop, step = i.indices(len(self))
            if step != 1:
                return list(self)[i]
            return LazyPrompts(self.path, self._offsets, self._make, self._start + start,
                               self._start + max(start, stop))
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        with open(self.path, "rb") as f:
            f.seek(self._offsets[self._start + i])
            return self._make(self._start + i, json.loads(f.readline()))

    def __iter__(self) -> Iterator[Prompt]:
        if not len(self):
            return
        with open(self.path, "rb") as f:
            f.seek(self._offsets[self._start])
            i = self._start
            for raw in f:
                if i >= self._stop:
                    break
                if raw.strip():
                    yield self._make(i, json.loads(raw))
                    i += 1


def lazy_jsonl_prompts(path: Path, limit: int | None, prompt_column: str, id_column: str | None,
                       field_columns: list[str] | None, exclude: tuple[str, ...] = (),
                       chat: ChatFormat | None = None) -> LazyPrompts:
    """Check every row of a JSONL prompt file (first `limit`) and index it for `LazyPrompts`."""
    offsets, seen = array("q"), set()
    with open(path, "rb") as f:
        pos, lineno = 0, 0
        for raw in f:
            lineno += 1
            here, pos = pos, pos + len(raw)
            if not raw.strip():
                continue
            if limit is not None and len(offsets) >= limit:
                break
            row = parse_jsonl_line(path, lineno, raw)
            row_to_prompt(f"{path}:{lineno}", row, len(offsets), prompt_column, id_column, field_columns, exclude,
                          seen, chat)
            offsets.append(here)
    return LazyPrompts(Path(path), offsets, functools.partial(
        _make_prompt, prompt_column=prompt_column, id_column=id_column, field_columns=field_columns, exclude=exclude,
        chat=chat))


def _make_prompt(i: int, row: dict[str, Any], prompt_column: str, id_column: str | None,
                 field_columns: list[str] | None, exclude: tuple[str, ...], chat: ChatFormat | None = None) -> Prompt:
    return row_to_prompt("", row, i, prompt_column, id_column, field_columns, exclude, chat=chat)
