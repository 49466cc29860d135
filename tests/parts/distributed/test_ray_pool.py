"""The Ray map, on a real local cluster started once for the module (2 CPUs, a few seconds)."""

from __future__ import annotations

import time

import pytest

from rsft.core.config import RayConfig
from rsft.core.errors import RsftError
from rsft.parts.distributed import ActorPool, connect, task_map
from tests.parts.distributed.workers import Sleeper

ray = pytest.importorskip("ray")

# half a CPU per worker and task: the module's shared pool and a test's own pool fit on 2 CPUs together
CFG = RayConfig(num_workers=2, resources_per_worker={"num_cpus": 0.5}, score_resources={"num_cpus": 0.5})


@pytest.fixture(scope="module", autouse=True)
def cluster():
    started = not ray.is_initialized()  # connect() keeps a cluster this process already joined
    connect(CFG)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def pool():
    with ActorPool("tests.parts.distributed.workers:Sleeper", ("s",), CFG, "test") as p:
        yield p


def items(results: list[list]) -> list:
    return [x for batch in results for (_, x, _) in batch]


def test_results_come_in_input_order_whatever_order_the_actors_finish_in(pool):
    # batch 0 sleeps longest: the others finish first, on both actors
    batches = [[0.8], [0.0], [0.1], [0.0], [0.0], [0.2], [0.0]]
    assert items(list(pool.map("run", batches))) == [b[0] for b in batches]


def test_the_pool_pulls_at_most_two_batches_per_actor_ahead_of_what_it_yielded(pool):
    pulled = 0

    def batches():
        nonlocal pulled
        for i in range(16):
            pulled += 1
            yield [f"b{i}"]

    ahead = []
    for received, result in enumerate(pool.map("run", batches()), start=1):
        ahead.append(pulled - received)
        time.sleep(0.05)  # a slow writer: the pool must not run ahead of it
    assert pulled == 16 and max(ahead) <= 2 * 2


def test_a_killed_actor_s_batches_are_redone_on_a_replacement_exactly_once():
    batches = [[i / 10] for i in range(1, 9)]
    with ActorPool(Sleeper, ("k",), CFG, "kill") as p:
        out, victim = [], None
        for result in p.map("run", batches):
            out.append(result)
            if victim is None:
                victim = p.actors[0]
                ray.kill(victim)
        assert items(out) == [b[0] for b in batches]
        assert len(p.actors) == 2 and victim not in p.actors
        assert len({pid for batch in out for (*_, pid) in batch}) >= 2


def test_a_batch_that_kills_every_actor_it_meets_stops_the_map_with_one_line():
    cfg = CFG.model_copy(update={"max_retries": 2, "max_restarts": 5})
    with ActorPool(Sleeper, ("c",), cfg, "round 0 sample") as p:
        with pytest.raises(RsftError) as err:
            list(p.map("run", [["a"], ["crash"], ["b"]]))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("round 0 sample: batch 1 killed its Ray worker 3 times (ray.max_retries = 2)")


def test_a_worker_that_cannot_start_is_one_line_and_its_resources_are_freed(pool):
    free = ray.available_resources().get("CPU", 0)
    with pytest.raises(RsftError, match=r"^start: a worker could not start: ValueError: no engine here$"):
        ActorPool("tests.parts.distributed.workers:Broken", (), CFG, "start")
    deadline = time.time() + 10
    while ray.available_resources().get("CPU", 0) < free and time.time() < deadline:
        time.sleep(0.1)
    assert ray.available_resources().get("CPU", 0) >= free


def test_more_workers_than_the_local_cluster_holds_is_one_line():
    cpus = int(ray.cluster_resources()["CPU"])
    with pytest.raises(RsftError, match=rf"^key 'ray.resources_per_worker': {cpus + 1} × 1 CPU do not fit on the "
                                        rf"local Ray cluster, which has {cpus} CPU$"):
        ActorPool(Sleeper, ("x",), RayConfig(num_workers=cpus + 1), "fit")


def test_tasks_yield_in_input_order():
    batches = [[0.6], [2, 3], [4], [0.0], [5]]  # a float first item is seconds to sleep: batch 0 ends last
    out = list(task_map("tests.parts.distributed.workers:scale", (2,), batches, CFG, "score"))
    assert out == [[x * 2 for x in b] for b in batches]


def test_a_task_that_raises_propagates_its_error():
    from tests.parts.distributed.workers import fail

    with pytest.raises(ValueError, match="bad batch"):
        list(task_map(fail, ("value",), [[1], [2]], CFG, "score"))
    with pytest.raises(RsftError) as err:
        list(task_map(fail, ("rsft",), [[1]], CFG, "score"))
    assert str(err.value) == "key 'scorer': the scorer said no"


def test_a_task_whose_worker_process_dies_is_retried_by_ray(tmp_path):
    marker = str(tmp_path / "crashed")
    out = list(task_map("tests.parts.distributed.workers:crash_once", (marker,), [[1], [2, 3]], CFG, "score"))
    assert out == [[1], [2, 3]]
