"""Round metrics: pass@k, maj@k, acceptance, coverage, diversity, reward, entropy, throughput.

Everything here is a pure function of records already on disk, so
`rsft metrics RUN` can recompute the table of any finished round.
"""

from __future__ import annotations

import statistics
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence

from rsft.core import metrics_schema as M
from rsft.core.records import Group, Sample
from rsft.parts.selection import normalize


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
    out: dict[str, float] = {M.EVAL_PROMPTS: len(greedy) or len(sampled)}
    if greedy:
        out[M.GREEDY_PASS1] = sum(passed(g, threshold) > 0 for g in greedy) / len(greedy)
        out[M.GREEDY_FORMAT_FAIL] = sum(
            1 for g in greedy for s in g.scores if s.parts.get("format") == 0.0
        ) / len(greedy)
    if sampled:
        n = len(sampled[0].samples)
        for k in ks:
            if k <= n:
                out[M.PASS_AT(k)] = sum(pass_at_k(n, passed(g, threshold), k) for g in sampled) / len(sampled)
                out[M.MAJ_AT(k)] = sum(majority_correct(g, k, threshold) for g in sampled) / len(sampled)
        values = [s.value for g in sampled for s in g.scores if s.ok]
        out[M.SAMPLED_REWARD_MEAN] = statistics.fmean(values) if values else 0.0
    out.update({M.greedy(k): v for k, v in trajectory_metrics([s for g in greedy for s in g.samples]).items()})
    return out


def trajectory_metrics(samples: Iterable[Sample]) -> dict[M.Key[float], float]:
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

    def result(self) -> dict[M.Key[float], float]:
        if not self.n:
            return {}
        return {M.TURNS_MEAN: self.actions / self.n, M.TOOL_ERRORS: self.tool_errors / self.n,
                M.ENDED_BY_ENV: self.ended / self.n, M.ENDED_BY_CONTEXT: self.out_of_context / self.n}


def round_metrics(scored: Iterable[Group], accept_min: float) -> M.Row:
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

    def result(self) -> M.Row:
        n, p = self.samples, self.prompts
        return {
            M.PROMPTS: p,
            M.SAMPLES: n,
            M.ACCEPTANCE_RATE: self.accepted / n if n else 0.0,
            M.COVERAGE: self.covered / p if p else 0.0,
            M.DISTINCT_ACCEPTED: self.distinct / p if p else 0.0,
            M.REWARD_MEAN: self.reward_sum / self.reward_n if self.reward_n else 0.0,
            M.REWARD_MAX_MEAN: self.max_sum / self.scored_prompts if self.scored_prompts else 0.0,
            M.REWARD_MEDIAN_MEAN: self.median_sum / self.scored_prompts if self.scored_prompts else 0.0,
            M.ENTROPY_MEAN: self.entropy_sum / self.entropy_tokens if self.entropy_tokens else None,
            M.TOKENS_GENERATED: self.tokens,
            M.TOKENS_PER_PROMPT: self.tokens / p if p else 0.0,
            M.TOKENS_PER_PROMPT_MAX: self.tokens_max,
            M.SAMPLES_PER_PROMPT: n / p if p else 0.0,
            M.SAMPLES_PER_PROMPT_MAX: self.samples_max,
            M.FINISHED_BY_LENGTH: self.by_length / n if n else 0.0,
            M.SCORER_ERRORS: self.scorer_errors,
            M.SAMPLING_ERRORS: self.sampling_errors,
            M.UNIFORM_SHARE: self.uniform / self.uniform_of if self.uniform_of else None,
            M.JUDGE_RANK_CORRELATION: spearman(self.judge_x, self.judge_y) if len(self.judge_x) else None,
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
