"""The `dataset` task: a user's own prompts from files, scored by the configured scorer (it has no default).

Rows come from `rsft.inputs.data.prompts` (JSONL, Parquet, a saved dataset directory
or an HF hub dataset); each row's prompt column becomes the `Prompt`, its
other columns the prompt's fields. With `completion_column`, the train rows
also give the gold completions the warm start trains on. A JSONL train file
without gold is not loaded whole: `LazyPrompts` reads each prompt from disk when
a stage asks for it, so a million-prompt file costs megabytes, not gigabytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rsft.core.errors import ConfigError, DataError
from rsft.core.records import Prompt
from rsft.inputs.data.prompts import ChatFormat, lazy_jsonl_prompts, load_rows, rows_to_prompts
from rsft.inputs.tasks.base import Task

if TYPE_CHECKING:
    from rsft.core.config import TaskConfig


def dataset_task(settings: TaskConfig) -> Task:
    """A Task from the user's files, read as the `task` section says (`settings`: files, splits, columns)."""
    s = settings
    train, eval, train_split, eval_split = s.train, s.eval, s.train_split, s.eval_split
    prompt_column, id_column, completion_column, field_columns = (s.prompt_column, s.id_column, s.completion_column,
                                                                  s.field_columns)
    max_train_prompts, max_eval_prompts = s.max_train_prompts, s.max_eval_prompts
    chat = ChatFormat(s.system_prompt, s.prompt_template) if (s.system_prompt or s.prompt_template) else None
    if train is None:
        raise ConfigError("key 'task.train': the 'dataset' task needs a train file or 'hf:NAME'")
    exclude = (completion_column,) if completion_column else ()
    if completion_column is None and Path(train).suffix in (".jsonl", ".json") and Path(train).is_file():
        # read from disk as the stages ask: memory does not grow with the number of prompts
        prompts = lazy_jsonl_prompts(Path(train), max_train_prompts, prompt_column, id_column, field_columns, chat=chat)
        train_rows = []
    else:
        train_rows = load_rows(train, train_split, "task.train")[:max_train_prompts]
        prompts = rows_to_prompts(train_rows, prompt_column, id_column, field_columns, exclude, chat)
    evals: list[Prompt] = []
    if eval is not None:
        eval_rows = load_rows(eval, eval_split, "task.eval")[:max_eval_prompts]
        evals = rows_to_prompts(eval_rows, prompt_column, id_column, field_columns, exclude, chat)
    gold = []
    if completion_column:
        for (where, row), p in zip(train_rows, prompts, strict=True):
            if completion_column not in row:
                raise DataError(f"{where}: missing column {completion_column!r} (task.completion_column)")
            gold.append((p, str(row[completion_column])))
    return Task("dataset", prompts, evals, None, gold, None)
