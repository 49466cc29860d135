"""The score and select stages stream: their memory does not grow with the number of prompts.

Measured with tracemalloc (Python allocations, peak minus what was held before the stage) on the
fake engine, which is the right tool here: the stages around sampling are what is measured, not a
model. A stage that read the round whole (the old `read_groups`) holds every group at once, about
2 KB each, so 10x the prompts would need ~10x the memory; the stated tolerance is 1.3x plus 1 MB.
The 10k → 100k version of the issue's acceptance is `slow`; the default suite runs 1k → 8k.
"""

from __future__ import annotations

import json
import tracemalloc

import pytest

from rsft.core.config import build_config
from rsft.core.rundir.files import count_lines
from rsft.inputs.data.prompts import LazyPrompts
from rsft.loop.rounds import open_run
from rsft.stages.runner import run_base_stage, run_stage
from tests.conftest import make_model_dir

SCORER = "def score(prompts, completions, answer, **kw):\n    return [float(c == a) for c, a in zip(completions, answer)]\n"


def _round_memory(tmp_path, n_prompts: int) -> dict[str, float]:
    work = tmp_path / str(n_prompts)
    work.mkdir()
    with open(work / "train.jsonl", "w") as f:
        for i in range(n_prompts):
            f.write(json.dumps({"prompt": f"q{i}", "answer": "a", "fake": ["a", "b", "a", "c"]}) + "\n")
    (tmp_path / "stream_scorer.py").write_text(SCORER)
    model = make_model_dir(tmp_path / "model", alphabet="qabc0123456789") if not (tmp_path / "model").exists() \
        else tmp_path / "model"
    run = open_run(build_config({
        "name": "s", "output_dir": str(work / "runs"), "model": {"path": str(model)}, "rounds": 2,
        "task": {"name": "dataset", "train": str(work / "train.jsonl")}, "scorer": "stream_scorer:score",
        "sampling": {"engine": "fake", "n": 4, "batch_size": 64, "max_new_tokens": 8},
        "selection": {"rules": [{"rule": "passes"}, {"rule": "dedup"}]},
        "train": {"replay": "all_rounds"}, "eval": {"enabled": False},
    }))
    assert isinstance(run.task.train, LazyPrompts)  # a JSONL train file is not loaded whole
    run_base_stage(run, "base")
    for stage in ("sample", "score", "select"):  # round 0, so that round 1's select replays it
        run_stage(run, 0, stage)
    run.round(0).mark_done("train")
    run_stage(run, 1, "sample")
    peaks = {}
    for stage in ("score", "select"):
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        run_stage(run, 1, stage)
        peaks[stage] = (tracemalloc.get_traced_memory()[1] - before) / 1e6
        tracemalloc.stop()
    assert count_lines(run.round(1).scored) == n_prompts
    assert count_lines(run.round(1).selected) == n_prompts  # one 'a' per prompt (replay finds the same text)
    return peaks


@pytest.mark.parametrize("small, large", [
    (1_000, 8_000),
    pytest.param(10_000, 100_000, marks=pytest.mark.slow),
])
def test_score_and_select_memory_does_not_grow_with_the_round(tmp_path, monkeypatch, small, large):
    monkeypatch.chdir(tmp_path)
    a, b = _round_memory(tmp_path, small), _round_memory(tmp_path, large)
    for stage in ("score", "select"):
        assert b[stage] <= 1.3 * a[stage] + 1.0, (stage, a, b)
