"""SIGKILL `rsft run` at points across every stage, resume, and compare with an uninterrupted run.

The slow tier kills at one point (training, a resume from a mid-stage checkpoint) and 22 more: every stage of both rounds once, and 6 drawn at random, each at a
random fraction of its stage (seeded, so a failure can be replayed).
"""

from __future__ import annotations

import random

import pytest

from rsft.core.rundir.files import count_lines
from tests.faults.conftest import ROUNDS
from tests.faults.harness import Harness, KillPoint, check_exactly_once, compare_runs, stages

ORDER = stages(ROUNDS)
DEFAULT = [KillPoint("r1:train", 0.5)]  # the score stage's kill (sandboxes mid-run) and the warm start's are slow ones
_rng = random.Random(2026)
# every stage once, then 6 more anywhere: 22 points, each at a random fraction of its stage
RANDOM = [KillPoint(s, round(_rng.uniform(0.05, 0.95), 2)) for s in [*ORDER, *_rng.sample(ORDER, 6)]]


LONG = 0.5  # seconds: a kill aimed into a stage at least this long in the control run must land in it


def check_landed(point: KillPoint, died_in: str, seconds: dict[str, float]) -> None:
    """A kill aimed into a long stage lands in it; one aimed into a stage of a few milliseconds (select,
    metrics, monitor) lands there or just after (the harness polls every 5 ms), never before."""
    if seconds.get(point.stage, 0.0) >= LONG:
        assert died_in == point.stage, f"{point}: the kill landed in {died_in}"
    else:
        assert died_in in [*ORDER[ORDER.index(point.stage):], "finished"], f"{point}: the kill landed in {died_in}"


def _trial(harness, control, tmp_path, point: KillPoint) -> None:
    run, seconds = control
    died_in = harness.kill_at(tmp_path, point, seconds.get(point.stage, 0.0), ORDER)
    check_landed(point, died_in, seconds)
    resumed = harness.run(tmp_path)
    compare_runs(resumed, run)
    check_exactly_once(resumed, ROUNDS, train_ids())


def train_ids() -> list[str]:
    from rsft.inputs.tasks.addition import make_task

    return [p.id for p in make_task(digits=2, n_train=32, n_eval=16, n_gold=200, seed=11).train]


@pytest.mark.slow  # 54 s; the default tier's kills: tests/inputs/tasks/test_ctf_run.py (kill -9 mid-stage, resume)
# and tests/learning/training/test_resume.py (a checkpoint torn by a kill, a kill during the final save)
@pytest.mark.parametrize("point", DEFAULT, ids=str)
def test_a_kill_then_resume_gives_the_uninterrupted_run(harness, control, tmp_path, point):
    _trial(harness, control, tmp_path, point)


@pytest.mark.slow
@pytest.mark.parametrize("point", RANDOM, ids=str)
def test_a_kill_at_a_random_point_then_resume_gives_the_uninterrupted_run(harness, control, tmp_path, point):
    _trial(harness, control, tmp_path, point)


RAY = ["ray.enabled=true", "ray.num_workers=2"]


@pytest.mark.slow
@pytest.mark.parametrize("target, point", [("driver", KillPoint("r0:sample", 0.0)), ("driver", KillPoint("r1:score", 0.5)),
                                           ("actor", KillPoint("r0:sample", 0.3)), ("actor", KillPoint("r1:sample", 0.3))],
                         ids=lambda x: str(x))
def test_a_kill_on_ray_then_resume_gives_the_uninterrupted_run(harness, control, tmp_path, target, point):
    """With Ray: the driver killed while its actors sample or its tasks score, then resumed; or one actor
    killed while it samples, and the run carries on. Either way: the files of the run without Ray."""
    pytest.importorskip("ray")
    run, seconds = control
    ray_harness = Harness(harness.config, harness.cwd, harness.rounds, RAY)
    r = int(point.stage[1])
    # on Ray the stage starts by starting actors: the clock starts once they have written samples
    sampling = (lambda d: count_lines(d / f"round-{r:03d}" / "samples.jsonl") > 0) if point.stage.endswith("sample") \
        else None
    died_in = ray_harness.kill_at(tmp_path, point, seconds.get(point.stage, 0.0), ORDER, target, ready=sampling)
    if target == "driver":
        assert died_in == point.stage, f"{point}: the kill landed in {died_in}"
    resumed = ray_harness.run(tmp_path)
    compare_runs(resumed, run, skip=("config.yaml",))
    check_exactly_once(resumed, ROUNDS, train_ids())
