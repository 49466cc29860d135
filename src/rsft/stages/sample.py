"""The sample stage: K samples per train prompt from the current policy, appended to samples.jsonl per batch.

How many samples each prompt gets is the allocation's business
(`rsft.sampling.allocation`): `uniform` draws n per prompt; `early_stop` and
`gvm` score while they sample, so their groups are written with scores
attached and the score stage keeps them. GVM first pre-samples every prompt
(``presample.jsonl``, resumable like samples.jsonl) and writes its plan to
``allocation.json``.
"""

from __future__ import annotations

from rsft.records import Group
from rsft.rundir import atomic_write_json, read_groups, resumable_map
from rsft.sampling import allocation
from rsft.sampling.base import Engine, SamplingParams
from rsft.stages.run import Run


def sample_stage(run: Run, r: int) -> None:
    rd = run.round(r)
    s = run.cfg.sampling
    engine = run.engine(run.sampler(r))  # the policy, or a teacher (sampling.model)
    params = run.sampling_params(r)
    plan, presampled = _gvm_presample(run, r, engine, params) if s.allocation == "gvm" else (None, None)
    draw = allocation.drawer(s, engine, run.scorer, params, run.cfg.accept_min, run.cfg.scoring.timeout,
                             plan, presampled)
    resumable_map(run.task.train, rd.samples, lambda batch: [g.to_json() for g in draw(batch)], s.batch_size,
                  f"round {r} sample", lambda p: p.id)


def _gvm_presample(run: Run, r: int, engine: Engine,
                   params: SamplingParams) -> tuple[allocation.GvmPlan, dict[str, Group]]:
    """GVM's n0 samples per prompt (resumable), and the split of the rest of the budget they give."""
    rd, s = run.round(r), run.cfg.sampling
    resumable_map(run.task.train, rd.presample,
                  lambda batch: [g.to_json() for g in allocation.sample_scored(
                      engine, run.scorer, batch, s.presample, params, run.cfg.scoring.timeout)],
                  s.batch_size, f"round {r} presample", lambda p: p.id)
    pre = read_groups(rd.presample)
    plan = allocation.gvm_plan(pre, run.cfg.accept_min, s.token_budget, s.n, s.max_per_prompt or 4 * s.n)
    atomic_write_json(rd.allocation, {
        "budget_tokens": plan.budget_tokens, "presample_tokens": plan.presample_tokens,
        "tokens_per_sample": plan.tokens_per_sample, "extra_samples": sum(plan.extra.values()),
        "extra": plan.extra, "acceptance": plan.acceptance})
    return plan, {g.prompt.id: g for g in pre}
