"""Rich progress bars for the long stages, and a TrainerCallback that drives one.

Bars go to stderr so `--json` output on stdout stays machine-readable. Rich
allows one live display at a time, so a bar opened while another is showing
(an eval inside the warm start's training, say) joins the same display.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)
# Tables go to stdout; when stdout is a file or pipe, Rich would squeeze them into 80 columns.
table_console = Console(width=None if sys.stdout.isatty() else 200)
_active: Progress | None = None


def notice(message: str) -> None:
    """One line on stderr, never wrapped and never read as markup: how rsft says what it chose for the user
    (a weaker sandbox, an engine's precision, a default they might not expect)."""
    console.print(message, soft_wrap=True, markup=False, highlight=False)


def quiet_hf() -> None:
    """Silence the tqdm bars and info logs of transformers and datasets; rsft shows its own bars."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_warning()


@contextmanager
def progress_bar(label: str, total: int | None, completed: int = 0) -> Iterator[tuple[Progress, TaskID]]:
    global _active
    owner = _active is None
    if owner:
        _active = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
            console=console,
        )
        _active.start()
    bar = _active
    task = bar.add_task(label, total=total, completed=completed, info="")
    try:
        yield bar, task
    finally:
        if owner:
            bar.stop()
            _active = None
        else:
            bar.remove_task(task)


def rich_train_callback(label: str = "train") -> Any:
    """A TrainerCallback advancing a rich bar per optimizer step and showing the latest loss.

    Built on demand so that importing this module does not import transformers.
    """
    from transformers import TrainerCallback
    
    class RichTrainCallback(TrainerCallback):
        def __init__(self) -> None:
            self._ctx: Any = None
            self._bar: Progress | None = None
            self._task: TaskID | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            self._ctx = progress_bar(label, total=state.max_steps, completed=state.global_step)
            self._bar, self._task = self._ctx.__enter__()

        def on_step_end(self, args, state, control, **kwargs):
            if self._bar is not None:
                self._bar.update(self._task, completed=state.global_step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self._bar is not None and logs and "loss" in logs:
                self._bar.update(self._task, info=f"loss {logs['loss']:.4f}")

        def on_train_end(self, args, state, control, **kwargs):
            if self._ctx is not None:
                self._ctx.__exit__(None, None, None)
                self._ctx = None

    return RichTrainCallback()
