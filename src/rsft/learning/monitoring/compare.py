"""`rsft compare RUN_A RUN_B ...`: held-out curves side by side, and whether a difference is one.

Each run's held-out greedy pass@1 per round (the base's, then each round's), read from the per-prompt files
the eval stage writes (``base-eval-greedy.jsonl``, ``round-NNN/eval-greedy.jsonl``). Every later run is set
against the first, round by round, on the held-out prompts both were evaluated on: the difference of their
pass@1 with a **paired bootstrap** interval (resample the prompts with replacement, the same prompts for
both runs; the percentile interval of the resampled mean difference). Pairing matters: two runs on the
same 100 prompts differ far less by chance than two independent samples of 100 would, so an unpaired test
would call real differences noise. A difference whose interval contains 0 is said to be none.

What it does not do: correct for comparing many rounds or many runs at once (each interval is on its own),
or compare runs evaluated on different prompts (only the prompts in common count, and it says how many).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rsft.core import metrics_schema as M
from rsft.core.errors import RsftError
from rsft.core.rundir.files import read_jsonl
from rsft.core.rundir.layout import RunDir


@dataclass(frozen=True)
class Interval:
    """The mean paired difference (b − a) over `n` prompts, and its bootstrap interval at `confidence`."""

    diff: float
    low: float
    high: float
    n: int
    confidence: float

    @property
    def contains_zero(self) -> bool:
        return self.low <= 0.0 <= self.high

    def verdict(self) -> str:
        if self.contains_zero:
            return "no difference (the interval contains 0)"
        return "better" if self.diff > 0 else "worse"


def paired_bootstrap(a: Sequence[float], b: Sequence[float], resamples: int = 10_000, confidence: float = 0.95,
                     seed: int = 0) -> Interval:
    """The percentile bootstrap interval of mean(b − a), resampling the pairs (prompts) with replacement."""
    import numpy as np

    if len(a) != len(b) or not a:
        raise RsftError(f"paired bootstrap: expected two equally long, non-empty lists, got {len(a)} and {len(b)}")
    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)  # [n]
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)  # [resamples]
    chunk = max(1, 4_000_000 // len(d))  # resamples drawn at once: bounded memory for any number of prompts
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        idx = rng.integers(0, len(d), size=(stop - start, len(d)))  # [chunk, n]
        means[start:stop] = d[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return Interval(float(d.mean()), float(low), float(high), len(d), confidence)


def greedy_outcomes(run_dir: Path, r: int | str) -> dict[str, float] | None:
    """Prompt id → 1.0/0.0 for the greedy sample of round r (or the base), None when not evaluated (yet)."""
    layout = RunDir(run_dir)
    path = layout.base_eval_greedy if r == M.BASE else layout.round(int(r)).eval_greedy
    if not path.exists():
        return None
    return {row["id"]: float(row["passed"]) for row in read_jsonl(path)}


@dataclass(frozen=True)
class RoundComparison:
    """One round: each run's greedy pass@1 (None: not evaluated), and each later run against the first."""

    round: int | str
    pass1: list[float | None]
    against_first: list[Interval | None]  # one per run after the first


@dataclass(frozen=True)
class Comparison:
    runs: list[Path]
    rounds: list[RoundComparison]
    confidence: float

    def lines(self) -> list[str]:
        """The comparison as text lines: one per round and later run."""
        out = []
        for rc in self.rounds:
            values = "  ".join(f"{run.name}: {'-' if v is None else f'{100 * v:.1f}%'}"
                               for run, v in zip(self.runs, rc.pass1, strict=True))
            out.append(f"round {rc.round}: greedy pass@1  {values}")
            for run, iv in zip(self.runs[1:], rc.against_first, strict=True):
                if iv is not None:
                    out.append(f"  {run.name} − {self.runs[0].name}: {100 * iv.diff:+.1f} points, "
                               f"{100 * iv.confidence:.0f}% interval [{100 * iv.low:+.1f}, {100 * iv.high:+.1f}] "
                               f"over {iv.n} prompts: {iv.verdict()}")
        return out


def compare(runs: Sequence[str | Path], resamples: int = 10_000, confidence: float = 0.95, seed: int = 0) -> Comparison:
    """Held-out greedy pass@1 of each run per round, and every later run against the first (paired bootstrap)."""
    if len(runs) < 2:
        raise RsftError(f"rsft compare: expected two or more run directories, got {len(runs)}")
    if not 0 < confidence < 1:
        raise RsftError(f"rsft compare: --confidence: expected a number between 0 and 1, got {confidence}")
    dirs = [RunDir.existing(r).path for r in runs]
    rounds: list[int | str] = [M.BASE]
    most = max(len(RunDir(d).rounds()) for d in dirs)
    rounds += list(range(most))
    out = []
    for r in rounds:
        outcomes = [greedy_outcomes(d, r) for d in dirs]
        pass1 = [sum(o.values()) / len(o) if o else None for o in outcomes]
        against = []
        first = outcomes[0]
        for d, other in zip(dirs[1:], outcomes[1:], strict=True):
            if not first or not other:
                against.append(None)
                continue
            common = sorted(set(first) & set(other))
            if not common:
                raise RsftError(f"rsft compare: {d} and {dirs[0]} share no held-out prompt in round {r}; compare "
                                "runs evaluated on the same task")
            against.append(paired_bootstrap([first[i] for i in common], [other[i] for i in common], resamples,
                                            confidence, seed))
        if any(v is not None for v in pass1):
            out.append(RoundComparison(r, pass1, against))
    if not any(iv is not None for rc in out for iv in rc.against_first):
        raise RsftError("rsft compare: no round of these runs has per-prompt held-out results in common "
                        "(eval-greedy.jsonl; runs evaluated before rsft wrote it: rerun with a newer rsft)")
    return Comparison(dirs, out, confidence)
