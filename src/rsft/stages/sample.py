"""The sample stage: K samples per train prompt from the current policy, appended to samples.jsonl per batch.

How many samples each prompt gets is the allocation strategy's business
(`Run.allocation`, `rsft.parts.sampling.allocators`): the stage runs each of its
passes over the train prompts as a resumable map (GVM first pre-samples into
``presample.jsonl``), and lets it record what it decided (``allocation.json``)
once a pass is whole. Strategies that score while they sample write their
groups with scores attached; the score stage keeps them.

Where the batches run is the executor's (`executor_for(run)`, `rsft.stages.executors`):
in this process, or on Ray actors that each hold their own engine; either way the
driver writes the same lines in prompt order, so for engines with per-sample
seeds a run with Ray is byte-identical to one without.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rsft.core.records import Prompt
from rsft.core.rundir.resumable import resumable_map
from rsft.stages.executors import executor_for
from rsft.stages.run import Run

Lines = Callable[[list[Prompt]], list[dict[str, Any]]]  # a batch of prompts -> their JSONL lines


def sample_stage(run: Run, r: int) -> None:
    rd, alloc = run.round(r), run.allocation
    with executor_for(run).sampling(run, r) as pass_map:
        for name in alloc.passes:
            out = rd.pass_file(name)
            label = f"round {r} {'sample' if name == 'draw' else name}"
            resumable_map(run.task.train, out, None, run.cfg.sampling.batch_size, label, lambda p: p.id,
                          mapper=pass_map(name, lambda name=name: pass_lines(run, r, name)))
            alloc.after(run.draw_context(r), name)


def pass_lines(run: Run, r: int, name: str) -> Lines:
    """What one of the allocation's passes draws for a batch of prompts, as JSONL lines (built after the
    passes before it are whole: GVM's draw reads its plan)."""
    return run.allocation.lines(run.draw_context(r), name)
