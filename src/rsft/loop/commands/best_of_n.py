"""Inference-time best-of-N: sample N completions per prompt, score them, return the best.

The same engine, scorer and selection order as a training round (highest score,
ties to the lowest sample index; failed scores never win), without training
anything. Prompts come as strings, `Prompt` records, or rows of a JSONL/Parquet
file whose other columns reach the scorer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsft.core.errors import RsftError
from rsft.core.records import Group, Prompt, Sample, Score
from rsft.core.registry import resolve
from rsft.parts.sampling.base import SamplingParams
from rsft.parts.scoring.base import score_groups
from rsft.parts.scoring.spec import check_scorer
from rsft.parts.selection import best_sample


@dataclass(frozen=True)
class BestOfN:
    """The winner for one prompt, and (on request) every candidate with its score."""

    prompt: Prompt
    best: Sample | None
    score: Score | None
    candidates: Group | None = None

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"id": self.prompt.id, "prompt": self.prompt.text if self.prompt.text is not None
                               else list(self.prompt.messages), **self.prompt.fields}
        if self.best is None or self.score is None or not self.score.ok:
            row.update({"completion": None, "score": None, "error": "every candidate failed to score"})
        else:
            row.update({"completion": self.best.text, "score": self.score.value, "parts": self.score.parts})
        if self.candidates is not None:
            row["candidates"] = [{"index": s.index, "completion": s.text, **c.to_json()}
                                 for s, c in self.candidates.scored]
        return row


def _as_prompts(prompts: list[Any] | None, input_path: str | Path | None, prompt_column: str,
                fields: dict[str, Any]) -> list[Prompt]:
    if input_path is not None:
        from rsft.inputs.data.prompts import load_rows, rows_to_prompts

        return rows_to_prompts(load_rows(str(input_path), "train", "--input"), prompt_column, None, None)
    out = []
    for i, p in enumerate(prompts or []):
        if isinstance(p, Prompt):
            out.append(p)
            continue
        if isinstance(p, str) and not p:
            raise RsftError(f"--prompt {i + 1}: empty prompt")
        out.append(Prompt(str(i), text=p, fields=dict(fields)) if isinstance(p, str)
                   else Prompt(str(i), messages=tuple(p), fields=dict(fields)))
    return out


def best_of_n(model: str, scorer: Any, prompts: list[Any] | None = None, input_path: str | Path | None = None,
              n: int = 16, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
              max_new_tokens: int = 256, engine: str = "auto", return_all: bool = False, seed: int = 0,
              prompt_column: str = "prompt", batch_size: int = 16, timeout: float | None = None,
              fields: dict[str, Any] | None = None) -> list[BestOfN]:
    """Best of `n` samples per prompt under `scorer` (a name, 'module:function', a spec, or a callable).

    `fields` are the columns a scorer needs (e.g. {"answer": 579}) for prompts given as strings; rows
    of `input_path` bring their own. When no candidate of any prompt could be scored, it raises with
    the scorer's first error rather than return nothing useful.
    """
    from rsft.core.progress import progress_bar, quiet_hf

    quiet_hf()
    if n < 1:
        raise RsftError(f"n must be at least 1, got {n}")
    if temperature < 0 or not 0 < top_p <= 1 or top_k < 0 or max_new_tokens < 1:
        raise RsftError(f"sampling settings out of range: temperature {temperature} (>= 0), top_p {top_p} (in (0, 1]), "
                        f"top_k {top_k} (>= 0), max_new_tokens {max_new_tokens} (>= 1)")
    items = _as_prompts(prompts, input_path, prompt_column, fields or {})
    if not items:
        raise RsftError("best-of-n: no prompts")
    from rsft.inputs.data.locate import check_prompt_lengths
    from rsft.inputs.modeling import context_length, load_tokenizer, read_config

    def locate(i: int) -> str | None:  # an --input prompt's file:line (its rows, read again only on failure)
        from rsft.inputs.data.prompts import load_rows

        return load_rows(str(input_path), "train", "--input")[i][0] if input_path is not None else None

    check_prompt_lengths(items, load_tokenizer(model, "--model"), context_length(read_config(model, "--model")),
                         max_new_tokens, "--input" if input_path is not None else "--prompt", locate)
    fn = scorer if callable(scorer) else resolve("scorer", scorer, key="--scorer")
    check_scorer(fn, set(items[0].fields), "--scorer",
                 hint="; give it with --field KEY=VALUE" if input_path is None else "")
    eng = resolve("engine", engine, model_path=model, key="--engine")
    params = SamplingParams(temperature, top_p, top_k, max_new_tokens, (), seed, 0)
    results: list[BestOfN] = []
    first_error: str | None = None
    with progress_bar(f"best-of-{n}", total=len(items)) as (bar, task):
        for start in range(0, len(items), batch_size):
            batch = items[start : start + batch_size]
            groups = [Group(p, tuple(s)) for p, s in zip(batch, eng.generate(batch, n, params), strict=True)]
            for g in score_groups(fn, groups, timeout):
                first_error = first_error or next((c.error for c in g.scores if c.error), None)
                top = best_sample(g)
                results.append(BestOfN(g.prompt, top[0] if top else None, top[1] if top else None,
                                       g if return_all else None))
            bar.update(task, advance=len(batch))
    if all(r.best is None or not r.score.ok for r in results):
        raise RsftError(f"best-of-n: every candidate of every prompt failed to score"
                        f"{f' (first error: {first_error})' if first_error else ''}; a scorer that needs dataset columns "
                        "gets them from --field KEY=VALUE (with --prompt) or from the --input file's columns")
    return results
