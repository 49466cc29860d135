"""Where a prompt came from: the file and line (or row) a user would open to fix it.

A check over prompts (their length against the model's context, say) finds the prompt by its id,
which for most datasets is only a row number. The `dataset` task's prompts are its rows in order
(`rsft.inputs.data.prompts`: one prompt per non-blank JSONL line or Parquet row), so the i-th prompt's
place is the i-th row's; `prompt_source` reads the rows again to say it, only when a check failed.
Prompts a built-in task generates, or a user's task function returns, have no file: None.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rsft.core.config import TaskConfig
from rsft.core.errors import RsftError
from rsft.core.records import Prompt
from rsft.inputs.data.formats import check_prompt_lengths as check_lengths
from rsft.inputs.data.prompts import load_rows


def prompt_source(task: TaskConfig, which: str, index: int) -> str | None:
    """"FILE:LINE" (or "FILE row N") of the `index`-th prompt of `task.train` / `task.eval`; None without a file."""
    spec = task.train if which == "train" else task.eval
    if task.name != "dataset" or spec is None:
        return None
    try:
        rows = load_rows(spec, task.train_split if which == "train" else task.eval_split, f"task.{which}")
    except RsftError:
        return None
    return rows[index][0] if 0 <= index < len(rows) else None


def check_prompt_lengths(prompts: Sequence[Prompt], tokenizer: Any, limit: int | None, new_tokens: int, key: str,
                         locate: Callable[[int], str | None] = lambda i: None) -> None:
    """`rsft.inputs.data.formats.check_prompt_lengths`, with the failing prompt's file and line first in the error."""
    for i, prompt in enumerate(prompts):
        try:
            check_lengths([prompt], tokenizer, limit, new_tokens, key)
        except RsftError as e:
            where = locate(i)
            raise RsftError(f"{where}: {e}" if where else str(e)) from None
