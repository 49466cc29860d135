"""The stages of a round, each a plain function over the run directory.

Every stage reads only the run directory (its config, the task, earlier
stages' files) and writes only its own files, atomically, then its done-marker.
`Run` carries what all stages share: the resolved config, where the run lives,
the task and its scorer. It holds no state that is not derivable from disk.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from rsft.config import PassesRule, RunConfig, load_config
from rsft.errors import RsftError
from rsft.records import Group, Prompt
from rsft.rundir import (
    RoundDir, append_jsonl, atomic_write_json, atomic_write_jsonl, read_jsonl, truncate_lines, truncate_torn_tail,
)
from rsft.progress import progress_bar
from rsft.sampling.base import SamplingParams, build_engine
from rsft.registry import build_scorer
from rsft.scoring.base import score_groups
from rsft.tasks.base import Task, load_task


@dataclass
class Run:
    """A run directory and the resolved config written in it."""

    cfg: RunConfig
    dir: Path

    @classmethod
    def open(cls, run_dir: str | Path) -> Run:
        run_dir = Path(run_dir)
        if not (run_dir / "config.yaml").is_file():
            raise RsftError(f"{run_dir}: not a run directory (no config.yaml)")
        return cls(load_config(run_dir / "config.yaml"), run_dir)

    @cached_property
    def task(self) -> Task:
        return load_task(self.cfg.task, self.cfg.seed)

    @cached_property
    def scorer(self) -> Callable[..., Any]:
        return build_scorer(self.cfg.scorer, self.task.scorer)

    @cached_property
    def eval_scorer(self) -> Callable[..., Any]:
        if self.cfg.eval.scorer is None:
            return self.scorer
        return build_scorer(self.cfg.eval.scorer, self.task.scorer, key="eval.scorer")

    def round(self, r: int) -> RoundDir:
        return RoundDir(self.dir, r)

    @property
    def base_model(self) -> str:
        """The model round 0 samples from: the configured path, or the one rsft built/warm-started."""
        if self.cfg.model.path == "tiny" or self.cfg.warm_start.enabled:
            return str(self.dir / "base-model")
        return self.cfg.model.path

    def policy(self, r: int) -> str:
        """The model that samples in round r: the previous round's, or the base for round 0."""
        return str(self.round(r - 1).model) if r > 0 else self.base_model

    def engine(self, model_path: str) -> Any:
        m = self.cfg.model
        tok = m.tokenizer if model_path == m.path else None
        return build_engine(self.cfg.sampling.engine, model_path, tok, m.dtype, m.trust_remote_code,
                            **self.cfg.sampling.engine_options)


def _batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def resumable_map(items: list[Any], out: Path, fn: Callable[[list[Any]], list[dict[str, Any]]],
                  batch_size: int, label: str, item_id: Callable[[Any], str]) -> None:
    """Write fn(batch) for each batch of items to out (JSONL, one line per item), resuming.

    Lines already in `out` are trusted only if they are whole batches for the same
    items in the same order; a torn tail or a partial batch is cut off and redone.
    """
    truncate_torn_tail(out)
    done = list(read_jsonl(out)) if out.exists() else []
    whole = len(done) - len(done) % batch_size if len(done) < len(items) else len(done)
    for i, row in enumerate(done[:whole]):
        if row["prompt"]["id"] != item_id(items[i]):
            raise RsftError(f"{out}:{i + 1}: written for prompt {row['prompt']['id']!r}, expected "
                            f"{item_id(items[i])!r}; the run's prompts changed, start a new run")
    if whole < len(done):
        truncate_lines(out, whole)
    out.parent.mkdir(parents=True, exist_ok=True)
    with progress_bar(label, total=len(items), completed=whole) as (bar, task):
        for batch in _batches(items[whole:], batch_size):
            append_jsonl(out, fn(batch))
            bar.update(task, advance=len(batch))


def read_groups(path: Path) -> list[Group]:
    return [Group.from_json(d) for d in read_jsonl(path)]


def accept_min(cfg: RunConfig) -> float:
    """What counts as accepted while sampling adaptively: explicit, else the passes rule's min, else 1."""
    if cfg.sampling.accept_min is not None:
        return cfg.sampling.accept_min
    return next((rule.min for rule in cfg.selection.rules if isinstance(rule, PassesRule)), 1.0)


def sample_stage(run: Run, r: int) -> None:
    """Samples for every train prompt from the current policy, appended to samples.jsonl per batch.

    `uniform` draws n per prompt. `early_stop` and `gvm` (see `sampling.allocation`)
    score while they sample, so their groups are written with scores attached.
    """
    from rsft.sampling import allocation

    rd = run.round(r)
    s = run.cfg.sampling
    engine = run.engine(run.policy(r))
    params = SamplingParams.from_config(s, run.cfg.seed, r)
    timeout, amin = run.cfg.scoring.timeout, accept_min(run.cfg)

    if s.allocation == "uniform":
        def draw(batch: list[Prompt]) -> list[dict[str, Any]]:
            groups = engine.generate(batch, s.n, params)
            return [Group(p, tuple(g)).to_json() for p, g in zip(batch, groups, strict=True)]
    elif s.allocation == "early_stop":
        def draw(batch: list[Prompt]) -> list[dict[str, Any]]:
            groups = allocation.early_stop(engine, run.scorer, batch, params, s.wave, s.n, s.target_accepted,
                                           amin, timeout, s.give_up_after)
            return [g.to_json() for g in groups]
    else:
        presample = rd.path / "presample.jsonl"
        resumable_map(run.task.train, presample,
                      lambda batch: [g.to_json() for g in allocation.sample_scored(
                          engine, run.scorer, batch, s.presample, params, timeout)],
                      s.batch_size, f"round {r} presample", lambda p: p.id)
        pre = read_groups(presample)
        plan = allocation.gvm_plan(pre, amin, s.token_budget, s.n, s.max_per_prompt or 4 * s.n)
        atomic_write_json(rd.path / "allocation.json", {
            "budget_tokens": plan.budget_tokens, "presample_tokens": plan.presample_tokens,
            "tokens_per_sample": plan.tokens_per_sample, "extra_samples": sum(plan.extra.values()),
            "extra": plan.extra, "acceptance": plan.acceptance})
        by_id = {g.prompt.id: g for g in pre}

        def draw(batch: list[Prompt]) -> list[dict[str, Any]]:
            grown = allocation.gvm_extend(engine, run.scorer, [by_id[p.id] for p in batch], plan.extra, params,
                                          timeout)
            return [g.to_json() for g in grown]

    resumable_map(run.task.train, rd.samples, draw, s.batch_size, f"round {r} sample", lambda p: p.id)


def score_stage(run: Run, r: int) -> None:
    """Score every sample; failures stay on their sample. Stops if the scorer failed on all of them."""
    rd = run.round(r)
    groups = read_groups(rd.samples)

    def score(batch: list[Group]) -> list[dict[str, Any]]:
        # adaptive sampling already scored its groups with this scorer; keep those scores
        todo = [g for g in batch if not g.scores and g.samples]
        scored = score_groups(run.scorer, todo, run.cfg.scoring.timeout) if todo else []
        done = {id(old): new for old, new in zip(todo, scored, strict=True)}
        return [done.get(id(g), g).to_json() for g in batch]

    resumable_map(groups, rd.scored, score, max(1, run.cfg.sampling.batch_size), f"round {r} score",
                  lambda g: g.prompt.id)
    scored = read_groups(rd.scored)
    scores = [c for g in scored for c in g.scores]
    if scores and all(not c.ok for c in scores):
        first = next(c.error for c in scores)
        failed = rd.scored.with_name("scored.failed.jsonl")
        rd.scored.replace(failed)  # so that a fixed scorer scores afresh on the next run, not these errors
        if run.cfg.sampling.allocation != "uniform":
            # adaptive sampling scored as it drew, and chose how many to draw from these errors: redo it too
            (rd.path / "sample.done").unlink(missing_ok=True)
            for name in RESUMED_FROM["sample"]:
                (rd.path / name).unlink(missing_ok=True)
        raise RsftError(f"round {r}: the scorer failed on all {len(scores)} samples (first error: {first}); "
                        f"the errors are in {failed}; fix the scorer and run again")


def select_stage(run: Run, r: int) -> None:
    """Apply the rule chain; write kept groups, SFT rows (with replay) and selection counts."""
    from rsft.selection import select
    from rsft.training.data import replay_rows, sft_rows
    from rsft.training.export import group_pairs

    rd = run.round(r)
    scored = read_groups(rd.scored)
    selection = select(scored, run.cfg.selection.rules)
    kept = [g for g in selection.groups if g.samples]
    if not kept:
        chain = ", ".join(f"{name}: {n}" for name, n in selection.survivors)
        raise RsftError(f"round {r}: selection kept no samples (left after each rule: {chain}); "
                        "lower the pass threshold, raise sampling.n, or warm-start the model")
    rows = sft_rows(kept)
    replayed = replay_rows(run, r, rows) if run.cfg.train.replay == "all_rounds" else []
    atomic_write_jsonl(rd.kept, [g.to_json() for g in kept])
    atomic_write_jsonl(rd.pairs, [row for g in scored for row in group_pairs(g)])
    atomic_write_jsonl(rd.selected, rows + replayed)
    atomic_write_json(rd.path / "selection.json", {
        "survivors": dict(selection.survivors), "rows": len(rows), "replayed": len(replayed),
    })


def train_stage(run: Run, r: int) -> None:
    from rsft.training.sft import train_sft

    rd = run.round(r)
    rows = list(read_jsonl(rd.selected))
    init = run.base_model if (run.cfg.train.init == "base" or r == 0) else run.policy(r)
    result = train_sft(rows, init, rd.model, run.cfg.train, seed=run.cfg.seed + r,
                       dtype=run.cfg.model.dtype, label=f"round {r} train")
    atomic_write_json(rd.path / "train.json", {
        "init": init, "steps": result.steps, "loss": result.loss, "rows": result.rows,
        "seconds": round(result.seconds, 3),
    })


def eval_model(run: Run, model_path: str, round_index: int) -> dict[str, float]:
    from rsft.evaluation import evaluate

    return evaluate(run.engine(model_path), run.task.eval, run.eval_scorer, run.cfg.eval,
                    run.cfg.sampling.max_new_tokens, seed=run.cfg.seed, round_index=round_index,
                    batch_size=run.cfg.sampling.batch_size, timeout=run.cfg.scoring.timeout)


def eval_stage(run: Run, r: int) -> None:
    rd = run.round(r)
    metrics = eval_model(run, str(rd.model), r) if run.cfg.eval.enabled and run.task.eval else {}
    atomic_write_json(rd.eval_file, metrics)


def metrics_stage(run: Run, r: int) -> None:
    """Combine the round's records and stage files into metrics.json."""
    import json

    from rsft.metrics import round_metrics
    from rsft.selection import select

    rd = run.round(r)
    scored = read_groups(rd.scored)
    selection = select(scored, run.cfg.selection.rules)
    pass_min = next((rule.min for rule in run.cfg.selection.rules if isinstance(rule, PassesRule)), None)
    m = round_metrics(scored, selection, pass_min)
    train = json.loads((rd.path / "train.json").read_text())
    sel = json.loads((rd.path / "selection.json").read_text())
    times = rd.times()
    m.update({
        "round": r,
        "train_rows": sel["rows"] + sel["replayed"],
        "replayed": sel["replayed"],
        "train_loss": train["loss"],
        "train_steps": train["steps"],
        "seconds": times,
        "seconds_total": sum(times.values()),
        "tokens_per_s": m["tokens_generated"] / times["sample"] if times.get("sample") else None,
        "eval": json.loads(rd.eval_file.read_text()) if rd.eval_file.exists() else {},
    })
    atomic_write_json(rd.metrics_file, m)


ROUND_STAGES: list[tuple[str, Callable[[Run, int], None]]] = [
    ("sample", sample_stage),
    ("score", score_stage),
    ("select", select_stage),
    ("train", train_stage),
    ("eval", eval_stage),
    ("metrics", metrics_stage),
]


# what a forced stage must delete first: files the stage would otherwise resume from
RESUMED_FROM = {"sample": ["samples.jsonl", "presample.jsonl", "allocation.json"], "score": ["scored.jsonl"],
                "train": ["model-work"]}


def run_stage(run: Run, r: int, name: str, fn: Callable[[Run, int], None], force: bool = False) -> bool:
    """Run one stage unless its done-marker exists; time it; write the marker last. True if it ran.

    `force` redoes the stage from scratch and un-marks the round's later stages
    (whose inputs it replaces); it does not touch later rounds.
    """
    rd = run.round(r)
    if rd.done(name) and not force:
        return False
    if force:
        names = [n for n, _ in ROUND_STAGES]
        for later in names[names.index(name):]:
            (rd.path / f"{later}.done").unlink(missing_ok=True)
            for f in RESUMED_FROM.get(later, []):
                target = rd.path / f
                shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    rd.path.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    fn(run, r)
    rd.record_time(name, time.perf_counter() - t0)
    rd.mark_done(name)
    return True
