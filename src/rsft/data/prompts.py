"""Loading a user's prompts: JSONL, Parquet, a saved dataset directory, or an HF hub dataset.

Each row becomes a `Prompt`. The prompt column holds either a string or a list
of chat messages ({role, content}); the other columns become the prompt's
`fields`, handed to the scorer by name. Errors name the file and line (or
row) and the column that was expected; nothing is guessed silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rsft.errors import DataError
from rsft.records import Prompt
from rsft.rundir import read_jsonl_numbered

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


def rows_to_prompts(rows: list[Row], prompt_column: str, id_column: str | None,
                    field_columns: list[str] | None, exclude: tuple[str, ...] = ()) -> list[Prompt]:
    prompts, seen = [], set()
    for i, (where, row) in enumerate(rows):
        if prompt_column not in row:
            raise DataError(f"{where}: missing column {prompt_column!r} (task.prompt_column); "
                            f"columns are {sorted(row)}")
        value = row[prompt_column]
        if id_column is not None and id_column not in row:
            raise DataError(f"{where}: missing column {id_column!r} (task.id_column)")
        pid = str(row[id_column]) if id_column is not None else str(i)
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
            prompts.append(Prompt(pid, text=value, fields=fields))
        elif _is_messages(value):
            prompts.append(Prompt(pid, messages=tuple(value), fields=fields))
        else:
            raise DataError(f"{where}: column {prompt_column!r} must be a string or a list of "
                            f"{{role, content}} messages, got {type(value).__name__}")
    return prompts
