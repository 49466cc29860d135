"""Runs on a real local Ray cluster: the same samples byte for byte as without Ray, and an actor killed
mid-stage loses and duplicates nothing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from rsft.core.config import load_config
from rsft.core.rundir.files import count_lines, read_jsonl
from rsft.loop.rounds import open_run
from rsft.parts.distributed import ActorPool
from rsft.stages.runner import run_base_stage, run_stage
from tests.conftest import ROOT, run_cli
from tests.faults.harness import compare_runs

ray = pytest.importorskip("ray")
MINI = ROOT / "tests" / "e2e" / "mini.yaml"
RAY = ["ray.enabled=true", "ray.num_workers=2"]


@pytest.mark.slow  # the default suite has the one-round version below
def test_a_two_round_run_on_ray_gives_the_same_files_as_one_without(tmp_path):
    run_cli("run", str(MINI), f"output_dir={tmp_path / 'plain'}", check=True)
    run_cli("run", str(MINI), f"output_dir={tmp_path / 'ray'}", *RAY, check=True)
    ray_run, plain = tmp_path / "ray" / "mini", tmp_path / "plain" / "mini"
    assert load_config(ray_run / "config.yaml").uses_ray
    # every file: samples, scores, selections, models, evals; only the config says ray
    compare_runs(ray_run, plain, skip=("config.yaml",))
    assert count_lines(ray_run / "round-001" / "samples.jsonl") == 48


@pytest.mark.slow  # 1 to 1.5 minutes; tests/parts/distributed/test_ray_pool.py runs real Ray in the default tier
def test_a_round_sampled_and_scored_on_ray_equals_one_without(tmp_path):
    """Round 0's samples and scores, in this process: 2 sampling actors and scoring tasks on a local
    cluster against the in-process stages, byte for byte."""
    files = {}
    for name, ray_on in (("plain", False), ("ray", True)):
        run = open_run(load_config(MINI, [f"output_dir={tmp_path}", f"name={name}", "rounds=1",
                                          *(RAY if ray_on else [])]))
        try:
            run_base_stage(run, "base")
            run_stage(run, 0, "sample")
            run_stage(run, 0, "score")
        finally:
            run.release_engines()
            if ray_on:
                ray.shutdown()
        files[name] = [run.round(0).samples.read_bytes(), run.round(0).scored.read_bytes()]
    assert files["ray"] == files["plain"]
    assert files["plain"][0].count(b"\n") == 48


def _sample(tmp_path: Path, name: str, ray_on: bool) -> Path:
    overrides = [f"output_dir={tmp_path}", f"name={name}", "rounds=1", "task.params.n_train=400",
                 "sampling.batch_size=4", *(RAY if ray_on else [])]
    run = open_run(load_config(MINI, overrides))
    run_base_stage(run, "base")
    if not ray_on:
        run_stage(run, 0, "sample")
        return run.round(0).samples
    pools: list[ActorPool] = []
    real_init = ActorPool.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        pools.append(self)

    ActorPool.__init__ = init
    try:
        samples = run.round(0).samples
        stage = threading.Thread(target=run_stage, args=(run, 0, "sample"))
        stage.start()
        deadline = time.monotonic() + 300
        while count_lines(samples) < 40:  # some batches written, most still to come
            assert stage.is_alive() and time.monotonic() < deadline
            time.sleep(0.01)
        ray.kill(pools[0].actors[0])
        stage.join()
    finally:
        ActorPool.__init__ = real_init
        ray.shutdown()
    assert run.round(0).done("sample")
    return samples


@pytest.mark.slow
def test_killing_an_actor_mid_stage_still_writes_every_prompt_once_and_the_same_samples(tmp_path):
    plain = _sample(tmp_path, "plain", ray_on=False)
    killed = _sample(tmp_path, "killed", ray_on=True)
    ids = [row["prompt"]["id"] for row in read_jsonl(killed)]
    assert ids == [f"train-{i}" for i in range(400)]
    assert killed.read_bytes() == plain.read_bytes()
