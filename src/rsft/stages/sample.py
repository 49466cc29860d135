"""The sample stage: K samples per train prompt from the current policy, appended to samples.jsonl per batch.

How many samples each prompt gets is the allocation's business
(`rsft.sampling.allocation`): `uniform` draws n per prompt; `early_stop` and
`gvm` score while they sample, so their groups are written with scores
attached and the score stage keeps them. GVM first pre-samples every prompt
(``presample.jsonl``, resumable like samples.jsonl) and writes its plan to
``allocation.json``. `carry` reads which prompts earlier rounds kept from their
``kept.jsonl`` (finished files, so a resumed round sees the same) and records
their count in ``allocation.json``.

With Ray (`ray.enabled`), the batches go to `ray.num_workers` actors, each
holding its own engine (`rsft.stages.workers.SampleWorker`), and come back in
prompt order: the driver writes the same lines it would have written alone,
so for engines with per-sample seeds a run with Ray is byte-identical to one
without. The driver then loads no model for sampling.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rsft.records import Group, Prompt
from rsft.rundir import atomic_write_json, iter_groups, read_groups, resumable_map
from rsft.sampling import allocation
from rsft.stages.run import Run

Lines = Callable[[list[Prompt]], list[dict[str, Any]]]  # a batch of prompts -> their JSONL lines


def sample_stage(run: Run, r: int) -> None:
    rd, s = run.round(r), run.cfg.sampling
    pool = _ray_pool(run, r) if run.cfg.uses_ray else None
    try:
        if s.allocation == "gvm":
            _map(run, r, pool, "presample", rd.presample, lambda: presampler(run, r))
            write_plan(run, r)
        if s.allocation == "carry":
            atomic_write_json(rd.allocation, {"solved_before": len(solved_before(run, r)),
                                              "solved_samples": s.solved_samples, "n": s.n})
        _map(run, r, pool, "draw", rd.samples, lambda: drawer(run, r))
    finally:
        if pool is not None:
            pool.close()


def _map(run: Run, r: int, pool: Any, method: str, out: Any, local: Callable[[], Lines]) -> None:
    """One resumable pass over the train prompts: in this process, or on the Ray pool's actors."""
    label = f"round {r} {'sample' if method == 'draw' else method}"
    if pool is None:
        resumable_map(run.task.train, out, local(), run.cfg.sampling.batch_size, label, lambda p: p.id)
    else:
        resumable_map(run.task.train, out, None, run.cfg.sampling.batch_size, label, lambda p: p.id,
                      mapper=lambda chunks: pool.map(method, chunks))


def _ray_pool(run: Run, r: int) -> Any:
    from rsft.distributed import ActorPool

    run.release_engines()  # the driver's eval engine would hold the memory (a GPU) the actors need
    # an absolute path: a worker's working directory may differ (another node, a runtime_env working_dir),
    # so the run directory must be on a filesystem every node sees
    return ActorPool("rsft.stages.workers:SampleWorker", (str(run.dir.resolve()), r), run.cfg.ray,
                     f"round {r} sample")


def drawer(run: Run, r: int) -> Lines:
    """What the round draws for a batch of prompts, as JSONL lines (GVM: after its plan is written)."""
    s = run.cfg.sampling
    engine = run.engine(run.sampler(r))  # the policy, or a teacher (sampling.model)
    plan, presampled = None, None
    if s.allocation == "gvm":
        plan, presampled = read_plan(run, r)
    solved = solved_before(run, r) if s.allocation == "carry" else set()
    draw = allocation.drawer(s, engine, run.scorer, run.sampling_params(r), run.cfg.accept_min,
                             run.cfg.scoring.timeout, plan, presampled, solved)
    return lambda batch: [g.to_json() for g in draw(batch)]


def solved_before(run: Run, r: int) -> set[str]:
    """Ids of the prompts some round before r kept samples of (`carry`): replay trains on their best row.
    One id per solved prompt is held, not their groups."""
    return {g.prompt.id for q in range(r) if run.round(q).kept.exists() for g in iter_groups(run.round(q).kept)}


def presampler(run: Run, r: int) -> Lines:
    """GVM's n0 scored samples per prompt, as JSONL lines."""
    s = run.cfg.sampling
    engine = run.engine(run.sampler(r))
    return lambda batch: [g.to_json() for g in allocation.sample_scored(
        engine, run.scorer, batch, s.presample, run.sampling_params(r), run.cfg.scoring.timeout)]


def read_plan(run: Run, r: int) -> tuple[allocation.GvmPlan, dict[str, Group]]:
    """GVM's split of the budget, recomputed from presample.jsonl (deterministic), and the presampled groups."""
    s = run.cfg.sampling
    pre = read_groups(run.round(r).presample)
    plan = allocation.gvm_plan(pre, run.cfg.accept_min, s.token_budget, s.n, s.max_per_prompt or 4 * s.n)
    return plan, {g.prompt.id: g for g in pre}


def write_plan(run: Run, r: int) -> None:
    plan, _ = read_plan(run, r)
    atomic_write_json(run.round(r).allocation, {
        "budget_tokens": plan.budget_tokens, "presample_tokens": plan.presample_tokens,
        "tokens_per_sample": plan.tokens_per_sample, "extra_samples": sum(plan.extra.values()),
        "extra": plan.extra, "acceptance": plan.acceptance})

