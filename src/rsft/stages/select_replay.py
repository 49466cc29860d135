"""Replay (``train.replay: all_rounds``): each prompt's best kept sample of earlier rounds, trained on again.

Llama 2 found that training only on the latest round's samples regressed some capabilities; keeping the
top samples of all earlier rounds fixed it. Three pieces, each streaming: `EarlierRounds` reads the
earlier rounds' kept.jsonl in step with this round's groups, `replay_row` picks one prompt's row, and
`ReplayWriter` holds the rows until this round's own rows are written. None of them decontaminates:
the select stage does that to the rows `replay_row` returns, as to its own.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from rsft.core.errors import RsftError
from rsft.core.records import Group
from rsft.core.rundir.files import JsonlWriter, iter_groups
from rsft.inputs.data.formats import completion_text, is_trajectory_row
from rsft.parts.selection import best_sample, normalize
from rsft.stages.select_rows import sample_row


class EarlierRounds:
    """Earlier rounds' ``kept.jsonl`` files read in step with this round's groups.

    Every round's files list the same prompts in the same order (a prompt without kept samples is
    simply absent), so one pass over all of them side by side finds each prompt's earlier groups while
    holding one group per file: replay streams like the rest of the stage. Missing files (rounds
    without a select stage) are skipped.
    """

    def __init__(self, kept_files: Iterable[Path]) -> None:
        self._files = [(q, path, iter_groups(path)) for q, path in enumerate(kept_files) if path.exists()]
        self._heads = [next(it, None) for _, _, it in self._files]

    def take(self, prompt_id: str) -> list[tuple[int, Group]]:
        """(round, group) of each earlier round that kept samples of `prompt_id`, in round order."""
        out = []
        for i, (q, _, it) in enumerate(self._files):
            head = self._heads[i]
            if head is not None and head.prompt.id == prompt_id:
                out.append((q, head))
                self._heads[i] = next(it, None)
        return out

    def check_finished(self) -> None:
        for (_, path, _), head in zip(self._files, self._heads, strict=True):
            if head is not None:
                raise RsftError(f"{path}: kept prompt {head.prompt.id!r} out of this round's prompt order; "
                                "the run's prompts changed, start a new run")


def _row_key(row: dict[str, Any]) -> tuple[str, str]:
    completion = row["completion"]
    text = json.dumps(completion) if is_trajectory_row(row) else normalize(completion_text(completion))
    return row["prompt_id"], text


def replay_row(earlier: list[tuple[int, Group]], current: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The best kept sample of one prompt over earlier rounds (at most one row), unless this round already
    trains on the same text. Ties between rounds go to the later round."""
    best: tuple[float, dict[str, Any]] | None = None
    for q, g in earlier:
        top = best_sample(g)
        if top is None:
            continue
        sample, score = top
        value = score.value if score.ok else float("-inf")
        if best is None or value >= best[0]:
            best = (value, {**sample_row(g.prompt, sample), "prompt_id": g.prompt.id, "reward": score.value,
                            "round": q})
    if best is None or _row_key(best[1]) in {_row_key(row) for row in current}:
        return []
    return [best[1]]


class ReplayWriter:
    """The replayed rows of a round, spooled to one temporary file per earlier round, then appended to
    selected.jsonl after this round's own rows, grouped by the earlier round that first kept their prompt.

    Spooling keeps the stage streaming (no row is held in memory) while selected.jsonl still lists this
    round's rows first. It neither picks (`replay_row`) nor decontaminates the rows it is given.
    """

    def __init__(self, earlier_rounds: int) -> None:
        self._n = earlier_rounds
        self.replayed = 0

    def __enter__(self) -> ReplayWriter:
        self._stack = contextlib.ExitStack()
        self._spools: list[IO[str]] = [self._stack.enter_context(tempfile.TemporaryFile("w+", encoding="utf-8"))
                                       for _ in range(self._n)]
        return self

    def write(self, earlier: list[tuple[int, Group]], rows: list[dict[str, Any]]) -> None:
        """Spool one prompt's replayed rows; `earlier` is what `EarlierRounds.take` gave for that prompt."""
        for row in rows:
            self._spools[earlier[0][0]].write(json.dumps(row, ensure_ascii=False) + "\n")
            self.replayed += 1

    def append_to(self, selected: JsonlWriter) -> None:
        """Copy the spooled rows, earliest round first, to the end of `selected`."""
        for f in self._spools:
            f.seek(0)
            selected.copy_lines(f)

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()
