"""Round metrics: pass@k, maj@k, acceptance, coverage, diversity, reward, entropy, throughput.

Everything here is a pure function of records already on disk, so
`rsft metrics RUN` can recompute the table of any finished round.
"""

from __future__ import annotations

import statistics
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from rich import box
from rich.table import Table

from rsft.records import Group, Sample
from rsft.selection import normalize


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021), as a stable product."""
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def _answer_key(group: Group, i: int) -> str:
    score = group.scores[i]
    return score.answer if score.answer is not None else normalize(group.samples[i].text)


def majority_correct(group: Group, k: int, threshold: float) -> bool:
    """Majority vote over the first k samples' extracted answers; ties go to the earliest answer."""
    k = min(k, len(group.samples))
    keys = [_answer_key(group, i) for i in range(k)]
    if not keys:
        return False
    counts = Counter(keys)
    top = max(counts.values())
    winner = next(key for key in keys if counts[key] == top)
    i = keys.index(winner)
    return group.scores[i].passes(threshold)


def passed(group: Group, threshold: float) -> int:
    return sum(1 for s in group.scores if s.passes(threshold))


def eval_metrics(greedy: list[Group], sampled: list[Group], ks: list[int], threshold: float) -> dict[str, float]:
    out: dict[str, float] = {"prompts": len(greedy) or len(sampled)}
    if greedy:
        out["greedy_pass@1"] = sum(passed(g, threshold) > 0 for g in greedy) / len(greedy)
        out["greedy_format_fail"] = sum(
            1 for g in greedy for s in g.scores if s.parts.get("format") == 0.0
        ) / len(greedy)
    if sampled:
        n = len(sampled[0].samples)
        for k in ks:
            if k <= n:
                out[f"pass@{k}"] = sum(pass_at_k(n, passed(g, threshold), k) for g in sampled) / len(sampled)
                out[f"maj@{k}"] = sum(majority_correct(g, k, threshold) for g in sampled) / len(sampled)
        values = [s.value for g in sampled for s in g.scores if s.ok]
        out["sampled_reward_mean"] = statistics.fmean(values) if values else 0.0
    out.update({f"greedy_{k}": v for k, v in trajectory_metrics([s for g in greedy for s in g.samples]).items()})
    return out


def trajectory_metrics(samples: Iterable[Sample]) -> dict[str, float]:
    """For agent trajectories (none: {}): mean actions per trajectory, tool calls that failed (an `error`
    in the environment's info) per trajectory, the share the environment ended (rather than a limit), and
    the share that outgrew the model's context (``end: context``)."""
    t = _Trajectories()
    for s in samples:
        t.add(s)
    return t.result()


class _Trajectories:
    """Running sums behind `trajectory_metrics`."""

    def __init__(self) -> None:
        self.n = self.actions = self.tool_errors = self.ended = self.out_of_context = 0

    def add(self, s: Sample) -> None:
        if s.turns:
            self.n += 1
            self.actions += len(s.actions)
            self.tool_errors += sum(1 for t in s.turns if t.role == "tool" and "error" in t.info)
            self.ended += s.end == "done"
            self.out_of_context += s.end == "context"

    def result(self) -> dict[str, float]:
        if not self.n:
            return {}
        return {"turns_mean": self.actions / self.n, "tool_errors_per_trajectory": self.tool_errors / self.n,
                "ended_by_env": self.ended / self.n, "ended_by_context": self.out_of_context / self.n}


def round_metrics(scored: Iterable[Group], accept_min: float) -> dict[str, Any]:
    """Metrics of one round's samples and scores; "accepted" is a score of at least `accept_min`.

    The groups are read once, one at a time, into running sums: memory does not grow with the round
    (except the (selection score, judge) pairs for the rank correlation, kept as two float arrays when
    round samples are judged). What selection kept is the select stage's own count (selection.json),
    not recomputed here.
    """
    m = _RoundSums()
    for g in scored:
        m.add(g, accept_min)
    return m.result()


class _RoundSums:
    """Running sums behind `round_metrics`, one group at a time."""

    def __init__(self) -> None:
        self.prompts = self.samples = self.accepted = self.covered = self.distinct = 0
        self.reward_sum, self.reward_n = 0.0, 0
        self.max_sum = self.median_sum = 0.0
        self.scored_prompts = self.uniform = self.uniform_of = 0
        self.entropy_sum, self.entropy_tokens = 0.0, 0
        self.tokens = self.tokens_max = self.samples_max = self.by_length = self.scorer_errors = 0
        self.sampling_errors = 0
        self.judge_x, self.judge_y = array("d"), array("d")
        self.trajectories = _Trajectories()

    def add(self, g: Group, accept_min: float) -> None:
        self.prompts += 1
        self.samples += len(g.samples)
        accepted = [s for s, c in g.scored if c.passes(accept_min)]
        self.accepted += len(accepted)
        self.covered += bool(accepted)
        self.distinct += len({normalize("\n".join(s.actions)) for s in accepted})
        values = [c.value for c in g.scores if c.ok]
        if values:
            self.reward_sum += sum(values)
            self.reward_n += len(values)
            self.scored_prompts += 1
            self.max_sum += max(values)
            self.median_sum += statistics.median(values)
        if len(values) >= 2:
            self.uniform_of += 1
            self.uniform += max(values) == min(values)
        tokens = 0
        for s in g.samples:
            tokens += s.num_tokens
            if s.entropy is not None:  # engines that cannot measure it say None
                self.entropy_sum += s.entropy * s.num_tokens
                self.entropy_tokens += s.num_tokens
            self.by_length += s.finish_reason == "length"
            self.sampling_errors += s.error is not None
            self.trajectories.add(s)
        self.tokens += tokens
        self.tokens_max = max(self.tokens_max, tokens)
        self.samples_max = max(self.samples_max, len(g.samples))
        self.scorer_errors += sum(1 for c in g.scores if not c.ok)
        for c in g.scores:
            if c.ok and "judge" in c.parts:
                self.judge_x.append(c.value)
                self.judge_y.append(c.parts["judge"])

    def result(self) -> dict[str, Any]:
        n, p = self.samples, self.prompts
        return {
            "prompts": p,
            "samples": n,
            "acceptance_rate": self.accepted / n if n else 0.0,
            "coverage": self.covered / p if p else 0.0,
            "distinct_accepted_per_prompt": self.distinct / p if p else 0.0,
            "reward_mean": self.reward_sum / self.reward_n if self.reward_n else 0.0,
            "reward_max_mean": self.max_sum / self.scored_prompts if self.scored_prompts else 0.0,
            "reward_median_mean": self.median_sum / self.scored_prompts if self.scored_prompts else 0.0,
            "entropy_mean": self.entropy_sum / self.entropy_tokens if self.entropy_tokens else None,
            "tokens_generated": self.tokens,
            "tokens_per_prompt": self.tokens / p if p else 0.0,
            "tokens_per_prompt_max": self.tokens_max,
            "samples_per_prompt": n / p if p else 0.0,
            "samples_per_prompt_max": self.samples_max,
            "finished_by_length": self.by_length / n if n else 0.0,
            "scorer_errors": self.scorer_errors,
            "sampling_errors": self.sampling_errors,
            "uniform_share": self.uniform / self.uniform_of if self.uniform_of else None,
            "judge_rank_correlation": spearman(self.judge_x, self.judge_y) if len(self.judge_x) else None,
            **self.trajectories.result(),
        }


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None when either side is constant."""
    def ranks(v: list[float]) -> list[float]:
        order = sorted(range(len(v)), key=v.__getitem__)
        out = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2
            i = j + 1
        return out

    if len(xs) < 2:
        return None
    rx, ry = ranks(xs), ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    sx = sum((a - mx) ** 2 for a in rx) ** 0.5
    sy = sum((b - my) ** 2 for b in ry) ** 0.5
    if sx == 0 or sy == 0:
        return None
    return sum((a - mx) * (b - my) for a, b in zip(rx, ry)) / (sx * sy)


def _count(v: float) -> str:
    """A count in at most 6 characters: 18,620 then 186k then 1.9M."""
    return f"{v:,.0f}" if v < 100_000 else f"{v / 1e3:.0f}k" if v < 10_000_000 else f"{v / 1e6:.1f}M"


def _secs(v: float) -> str:
    """Seconds in at most 5 characters: 1234 then 2.8h."""
    return f"{v:.0f}" if v < 10_000 else f"{v / 3600:.1f}h" if v < 360_000 else f"{v / 86400:.0f}d"


# (header, key, format, in the compact table): the compact one fits an 80-column terminal whatever the
# values (counts and seconds are shortened: 186k, 2.8h)
_COLUMNS = [
    ("round", "round", "{}", True),
    ("greedy pass@1", "eval.greedy_pass@1", "{:.1%}", True),
    ("pass@{k}", "eval.pass@", "{:.1%}", True),
    ("maj@{k}", "eval.maj@", "{:.1%}", False),
    ("accept", "acceptance_rate", "{:.1%}", True),
    ("coverage", "coverage", "{:.1%}", True),
    ("distinct", "distinct_accepted_per_prompt", "{:.2f}", False),
    ("reward", "reward_mean", "{:.3f}", False),
    ("max/med", "reward_max_med", "{}", False),
    ("entropy", "entropy_mean", "{:.3f}", True),
    ("turns", "turns_mean", "{:.2f}", True),
    ("tool err", "tool_errors_per_trajectory", "{:.2f}", False),
    ("tokens", "tokens_generated", "{:,}", False),
    ("tok/s", "tokens_per_s", "{:,.0f}", False),
    ("errors", "scorer_errors", "{}", False),
    ("kept", "kept", _count, True),
    ("train rows", "train_rows", "{:,}", False),
    ("loss", "train_loss", "{:.4f}", False),
    ("secs", "seconds_total", _secs, True),
]


def _largest_k(rows: list[dict[str, Any]], prefix: str) -> int | None:
    ks = [int(k[len(prefix):]) for r in rows for k in (r.get("eval") or {}) if k.startswith(prefix)]
    return max(ks) if ks else None


def _lookup(row: dict[str, Any], key: str, k: int | None) -> Any:
    if key == "reward_max_med":
        if "reward_max_mean" not in row:
            return None
        return f"{row['reward_max_mean']:.2f}/{row['reward_median_mean']:.2f}"
    if key.startswith("eval."):
        name = key[5:]
        return (row.get("eval") or {}).get(f"{name}{k}" if name.endswith("@") else name)
    return row.get(key)


def _eval_engines(rows: list[dict[str, Any]]) -> str | None:
    """The engines and precisions the held-out numbers were measured with, e.g. 'ctranslate2 float32'."""
    seen = []
    for r in rows:
        ev = r.get("eval") or {}
        if "engine" in ev:
            label = f"{ev['engine']} {ev.get('precision', '')}".strip()
            if label not in seen:
                seen.append(label)
    return ", ".join(seen) or None


def round_table(rows: list[dict[str, Any]], title: str = "rsft rounds", wide: bool = False) -> Table:
    """One row per round (plus the base model): the columns a practitioner watches, compact enough for an
    80-column terminal; `wide` adds maj@k, distinct, reward, max/median, tokens, tok/s, errors, train rows
    and loss (every number is also in `rsft metrics --json`)."""
    engines = _eval_engines(rows)
    table = Table(title=title, box=box.SIMPLE_HEAD, caption=f"held-out eval: {engines}" if engines else None,
                  pad_edge=False)
    columns = []
    for header, key, fmt, compact in _COLUMNS:
        if not (compact or wide):
            continue
        k = _largest_k(rows, key[5:]) if key.endswith("@") else None
        if any(_lookup(r, key, k) is not None for r in rows):
            columns.append((header.format(k=k), key, fmt, k))
    for header, *_ in columns:
        table.add_column(header, justify="right", no_wrap=True)
    for r in rows:
        cells = []
        for _, key, fmt, k in columns:
            v = _lookup(r, key, k)
            cells.append("-" if v is None else fmt(v) if callable(fmt) else fmt.format(v))
        table.add_row(*cells)
    return table
