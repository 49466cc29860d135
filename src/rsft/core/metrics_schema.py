"""The metrics row: every key of a round's ``metrics.json`` and of its ``eval``, with its type, named once.

A row stays a plain dict, on disk and in memory: `rsft metrics --json`, `rsft.round_rows` and a user's
trigger (``function(history, **options)``) all get dicts, and the rows of runs written by older rsft
versions, which lack some keys, still read. What this module adds is the names. Each key is a `Key`: the
very string written to disk (a `str` subclass, so ``row[KEPT]`` and ``{KEPT: n}`` work as before), which
also carries its value's type, what it means, and whether it sits in the row or in the row's ``eval``.
Writers (`rsft.parts.metrics`, `rsft.learning.evaluation`, `rsft.stages.metrics`) build rows with these keys; readers (the
triggers, the table, the report, graduation, the trackers) read with `Key.of`, which says None for a key a
row does not have.

It validates nothing when a row is written and converts nothing when one is read: a row with a key not
named here (a user's scorer parts, a newer rsft) passes through untouched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
Row = dict[str, Any]  # one line of `rsft metrics --json`: the base's eval, or one round's metrics


class Key(str, Generic[T]):
    """A metric's name (the string on disk), the type of its value, what it means, and where it lives:
    `section` None for the row itself, `EVAL` for the row's held-out metrics."""

    kind: type | tuple[type, ...]
    help: str
    section: str | None

    def __new__(cls, name: str, kind: type | tuple[type, ...], help: str, section: str | None = None) -> Key[T]:
        key = super().__new__(cls, name)
        key.kind, key.help, key.section = kind, help, section
        return key

    def __reduce__(self) -> tuple[Any, ...]:
        return (str, (str(self),))  # a copied or pickled row has plain str keys: the same keys, the same JSON

    def of(self, row: Mapping[str, Any]) -> T | None:
        """This metric's value in `row`; None where the row lacks it (an older run, nothing measured)."""
        where = row if self.section is None else (row.get(self.section) or {})
        return where.get(self)


# -- the row itself: written by the metrics stage (rsft.stages.metrics) -------------------------------------
ROUND: Key[int | str] = Key("round", (int, str), "The round's index; BASE for the base model's row.")
EVAL: Key[dict] = Key("eval", dict, "The held-out metrics of the round's model (the EVAL keys below); {} when off.")
SAMPLER: Key[str] = Key("sampler", str, "Who drew the round's samples: POLICY or TEACHER (whose entropy it is).")
KEPT: Key[int] = Key("kept", int, "Samples the selection rules kept.")
SURVIVORS: Key[dict] = Key("survivors", dict, "Samples left after each selection rule, by rule name.")
TRAIN_ROWS: Key[int] = Key("train_rows", int, "Rows the round trained on: kept plus replayed.")
REPLAYED: Key[int] = Key("replayed", int, "Rows replayed from earlier rounds.")
DECONTAMINATED: Key[int] = Key("decontaminated", int, "Kept samples dropped for overlapping held-out prompts.")
SELECTION_SCORE: Key[float] = Key("selection_score", float, "Mean selection score of what was kept.")
JUDGE_PRECISION_KEPT: Key[float] = Key("judge_precision_kept", float,
                                       "Share of what was kept that the judge (eval.scorer) accepts.")
KEPT_COVERAGE: Key[float] = Key("kept_coverage", float, "Share of prompts with at least one kept sample.")
DISTINCT_AFTER: Key[dict] = Key("distinct_after", dict, "Distinct samples per prompt as scored and after each "
                                "selection rule, by rule name.")
RATIONALIZED: Key[int] = Key("rationalized", int, "Kept samples that are STaR rationales (selection.rationalize).")
RATIONALIZE_LEAKS: Key[int] = Key("rationalize_leaks", int, "Rationales refused for leaking the hint.")
CONTROL: Key[str] = Key("control", str, "random: the round kept a matched random control, not the rules' choice.")
TRAIN_LOSS: Key[float] = Key("train_loss", float, "The SFT loss the trainer reported.")
TRAIN_STEPS: Key[int] = Key("train_steps", int, "Optimizer steps of the round's SFT.")
SECONDS: Key[dict] = Key("seconds", dict, "Wall-clock seconds of each stage (stage_times.json).")
SECONDS_TOTAL: Key[float] = Key("seconds_total", float, "The round's seconds, all stages.")
TOKENS_PER_S: Key[float] = Key("tokens_per_s", float, "Tokens generated per second of the sample stage.")

# -- the row itself: the round's samples and scores (rsft.parts.metrics.round_metrics) ----------------------------
PROMPTS: Key[int] = Key("prompts", int, "Prompts sampled.")
SAMPLES: Key[int] = Key("samples", int, "Samples drawn.")
ACCEPTANCE_RATE: Key[float] = Key("acceptance_rate", float, "Share of samples scoring at least accept_min.")
COVERAGE: Key[float] = Key("coverage", float, "Share of prompts with at least one accepted sample.")
DISTINCT_ACCEPTED: Key[float] = Key("distinct_accepted_per_prompt", float, "Distinct accepted texts per prompt.")
REWARD_MEAN: Key[float] = Key("reward_mean", float, "Mean score of the samples scored without error.")
REWARD_MAX_MEAN: Key[float] = Key("reward_max_mean", float, "Mean over prompts of the best sample's score.")
REWARD_MEDIAN_MEAN: Key[float] = Key("reward_median_mean", float, "Mean over prompts of the median sample's score.")
ENTROPY_MEAN: Key[float] = Key("entropy_mean", float, "Sample entropy, nats per token (None: the engine cannot say).")
TOKENS_GENERATED: Key[int] = Key("tokens_generated", int, "Tokens generated in the round.")
TOKENS_PER_PROMPT: Key[float] = Key("tokens_per_prompt", float, "Tokens generated per prompt, mean.")
TOKENS_PER_PROMPT_MAX: Key[int] = Key("tokens_per_prompt_max", int, "Tokens generated for one prompt, most.")
SAMPLES_PER_PROMPT: Key[float] = Key("samples_per_prompt", float, "Samples per prompt, mean (GVM varies it).")
SAMPLES_PER_PROMPT_MAX: Key[int] = Key("samples_per_prompt_max", int, "Samples for one prompt, most.")
FINISHED_BY_LENGTH: Key[float] = Key("finished_by_length", float, "Share of samples cut at max_new_tokens.")
SCORER_ERRORS: Key[int] = Key("scorer_errors", int, "Samples the scorer failed on.")
SAMPLING_ERRORS: Key[int] = Key("sampling_errors", int, "Samples the engine failed to draw.")
UNIFORM_SHARE: Key[float] = Key("uniform_share", float,
                                "Share of prompts (with two or more scores) whose samples all scored the same.")
JUDGE_RANK_CORRELATION: Key[float] = Key("judge_rank_correlation", float,
                                         "Spearman correlation of the selection score and the judge's part.")

# agent trajectories only (absent otherwise): the round's, and with GREEDY's prefix in EVAL the held-out ones
TURNS_MEAN: Key[float] = Key("turns_mean", float, "Actions per trajectory, mean.")
TOOL_ERRORS: Key[float] = Key("tool_errors_per_trajectory", float, "Failed tool calls per trajectory.")
ENDED_BY_ENV: Key[float] = Key("ended_by_env", float, "Share of trajectories the environment ended.")
ENDED_BY_CONTEXT: Key[float] = Key("ended_by_context", float, "Share of trajectories that outgrew the context.")
TRAJECTORY = (TURNS_MEAN, TOOL_ERRORS, ENDED_BY_ENV, ENDED_BY_CONTEXT)

# -- EVAL: held-out metrics (rsft.parts.metrics.eval_metrics, rsft.learning.evaluation.evaluate) ----------------------------
EVAL_PROMPTS: Key[int] = Key("prompts", int, "Held-out prompts.", EVAL)
GREEDY_PASS1: Key[float] = Key("greedy_pass@1", float, "Share of held-out prompts the greedy sample passes.", EVAL)
GREEDY_FORMAT_FAIL: Key[float] = Key("greedy_format_fail", float, "Greedy samples whose format part is 0, per "
                                     "prompt.", EVAL)
SAMPLED_REWARD_MEAN: Key[float] = Key("sampled_reward_mean", float, "Mean score of the sampled held-out "
                                      "completions.", EVAL)
ENGINE: Key[str] = Key("engine", str, "The engine the held-out numbers were measured with.", EVAL)
PRECISION: Key[str] = Key("precision", str, "That engine's precision.", EVAL)


def greedy(key: Key[T]) -> Key[T]:
    """A trajectory metric of the greedy held-out samples, in EVAL (``greedy_turns_mean``, ...)."""
    return Key(f"greedy_{key}", key.kind, f"{key.help} (greedy held-out trajectories)", EVAL)


@dataclass(frozen=True)
class AtK:
    """A family of held-out keys, one per k the eval measured (``eval.k``): pass@1, pass@8, ..."""

    prefix: str
    help: str

    def __call__(self, k: int) -> Key[float]:
        return Key(f"{self.prefix}{k}", float, self.help, EVAL)

    def largest(self, rows: Iterable[Mapping[str, Any]]) -> int | None:
        """The largest k of this family in any row's eval (the one a table or a plot shows); None if none."""
        ks = [int(name[len(self.prefix):]) for r in rows for name in (EVAL.of(r) or {}) if name.startswith(self.prefix)]
        return max(ks) if ks else None


PASS_AT = AtK("pass@", "Unbiased pass@k of the sampled held-out completions.")
MAJ_AT = AtK("maj@", "Majority vote over the first k sampled held-out completions, correct.")

# the values of ROUND and SAMPLER that readers compare against
BASE = "base"
POLICY, TEACHER = "policy", "teacher"

# every fixed key, in the order above (AtK families and greedy() keys are made per k / per trajectory key)
ROUND_KEYS: tuple[Key[Any], ...] = (
    ROUND, EVAL, SAMPLER, KEPT, SURVIVORS, TRAIN_ROWS, REPLAYED, DECONTAMINATED, SELECTION_SCORE, JUDGE_PRECISION_KEPT,
    KEPT_COVERAGE, DISTINCT_AFTER, RATIONALIZED, RATIONALIZE_LEAKS, CONTROL,
    TRAIN_LOSS, TRAIN_STEPS, SECONDS, SECONDS_TOTAL, TOKENS_PER_S, PROMPTS, SAMPLES, ACCEPTANCE_RATE, COVERAGE,
    DISTINCT_ACCEPTED, REWARD_MEAN, REWARD_MAX_MEAN, REWARD_MEDIAN_MEAN, ENTROPY_MEAN, TOKENS_GENERATED,
    TOKENS_PER_PROMPT, TOKENS_PER_PROMPT_MAX, SAMPLES_PER_PROMPT, SAMPLES_PER_PROMPT_MAX, FINISHED_BY_LENGTH,
    SCORER_ERRORS, SAMPLING_ERRORS, UNIFORM_SHARE, JUDGE_RANK_CORRELATION, *TRAJECTORY,
)
EVAL_KEYS: tuple[Key[Any], ...] = (EVAL_PROMPTS, GREEDY_PASS1, GREEDY_FORMAT_FAIL, SAMPLED_REWARD_MEAN, ENGINE,
                                   PRECISION, *(greedy(k) for k in TRAJECTORY))


def base_row(eval_metrics: dict[str, Any]) -> Row:
    """The row of the base model: its held-out metrics only (it sampled nothing)."""
    return {ROUND: BASE, EVAL: eval_metrics}


def is_base(row: Mapping[str, Any]) -> bool:
    return row.get(ROUND) == BASE


def rounds_only(history: Iterable[Row]) -> list[Row]:
    """The rounds' rows, without the base's."""
    return [row for row in history if not is_base(row)]
