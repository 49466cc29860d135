"""An ordered, bounded, fault-tolerant map over batches: on N Ray actors (`ActorPool`) or as Ray tasks (`task_map`).

Both yield batch i's result as their i-th item, whatever order the workers
finish in, so the driver writes the same lines in the same order as a run
without Ray. Both pull batches lazily: at most ``IN_FLIGHT × workers`` batches
are pulled and not yet yielded, so a round of any size is never in memory at
once. A batch whose worker died is sent again, before any new batch, and its
result is yielded once:
- an actor that dies (`RayActorError`: killed, crashed, its node lost) is
  replaced by a new one in its placement-group bundle, which builds its engine
  again; every batch it held goes to the live actors. The batch it was running
  (an actor runs its calls in order, so the oldest) is charged with the death,
  and a batch charged more than ``ray.max_retries`` times stops the map with
  one line naming it. A worker replaced ``ray.max_restarts`` times is dropped.
- a task whose worker process dies is retried by Ray itself
  (``max_retries``); after that the map stops with one line naming the batch.

An exception raised by the work itself (the engine's method, the scoring
function) is not retried: it propagates, an `RsftError` as its own one line,
anything else with its type and the remote traceback.

It does not: place actors itself (Ray does, in one placement group, PACK);
keep actors across stages (a pool serves the maps of one stage, so a
replacement builds what the one it replaces built; to sample from another
model, start another pool); run two maps on one pool at once; time out a batch
that hangs (that is the engine's business).
"""

from __future__ import annotations

import heapq
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from rsft.core.config import RayConfig
from rsft.core.errors import RsftError
from rsft.core.progress import notice
from rsft.core.registry import import_object
from rsft.parts.distributed.cluster import bundle, check_fits, cluster_gpus, connect, one_line, ray_options, require_ray

IN_FLIGHT = 2  # batches per worker: one running, one queued behind it, so a worker never waits for the driver
CLOSE_TIMEOUT = 10.0  # seconds the workers' close() may take before their actors are killed
PLACEMENT_NOTICE = 10.0  # seconds of waiting for the workers' resources before saying so


class _Order:
    """Numbers batches as they are pulled and hands results out in that order.

    At most `window` batches are pulled and not yet handed out; a batch sent back (`again`) goes out before
    any new one, lowest index first, so the head of the line is never starved."""

    def __init__(self, batches: Iterable[list], window: int) -> None:
        self._source = iter(batches)
        self._window = window
        self._results: dict[int, list] = {}
        self._again: list[tuple[int, list]] = []  # a heap of (index, batch)
        self._exhausted = False
        self.pulled = 0
        self.handed = 0

    def take(self) -> tuple[int, list] | None:
        if self._again:
            return heapq.heappop(self._again)
        if self._exhausted or self.pulled - self.handed >= self._window:
            return None
        try:
            batch = next(self._source)
        except StopIteration:
            self._exhausted = True
            return None
        self.pulled += 1
        return self.pulled - 1, list(batch)

    def again(self, index: int, batch: list) -> None:
        heapq.heappush(self._again, (index, batch))

    def put(self, index: int, result: list) -> None:
        self._results[index] = result

    def ready(self) -> Iterator[list]:
        while self.handed in self._results:
            result = self._results.pop(self.handed)
            self.handed += 1
            yield result

    @property
    def finished(self) -> bool:
        return self._exhausted and not self._again and self.handed == self.pulled


class _Host:
    """What runs in each actor: builds the worker once, then calls its method per batch.

    A worker that fails to build is kept as its error, so the driver reports it as one line (Ray would
    report a dead actor and a traceback)."""

    def __init__(self, worker: str | type, args: tuple) -> None:
        self._error: str | None = None
        try:
            cls = import_object(worker, "ray worker") if isinstance(worker, str) else worker
            self._worker = cls(*args)
        except Exception as e:  # noqa: BLE001 - whatever the engine raises while it loads
            self._error = e.args[0] if isinstance(e, RsftError) and e.args else one_line(e)

    def ready(self) -> str | None:
        return self._error

    def call(self, method: str, batch: list) -> list:
        if self._error is not None:
            raise RsftError(f"a worker could not start: {self._error}")
        return getattr(self._worker, method)(batch)

    def close(self) -> None:
        close = getattr(getattr(self, "_worker", None), "close", None)
        if callable(close):
            close()


@dataclass
class _Slot:
    """One of the pool's workers: its placement-group bundle, its current actor, how often it was replaced."""

    index: int
    actor: Any
    restarts: int = 0


@dataclass(frozen=True)
class _Call:
    index: int
    batch: list
    slot: _Slot
    seq: int  # submission order: an actor runs its calls in this order


class ActorPool:
    """`ray.num_workers` actors, each building `worker(*args)` once, and an ordered map of a method over batches.

    `worker` is a class or a ``"module:Class"`` string (imported in the actor, so the driver need not load
    the engine's libraries). Use it as a context manager, or call `close()`: the actors hold their resources
    (GPUs, the local cluster's CPUs) until then."""

    def __init__(self, worker: str | type, args: tuple, ray_cfg: RayConfig, label: str) -> None:
        ray = require_ray()
        connect(ray_cfg)
        self._cfg, self._label, self._worker, self._args = ray_cfg, label, worker, tuple(args)
        self._slots: list[_Slot] = []
        self._group: Any = None
        self._closed = False
        gpus = 1.0 if cluster_gpus() >= 1 else 0.0  # one engine per GPU unless the config says otherwise
        if gpus and ray_cfg.resources_per_worker.num_gpus is None:
            notice(f"{label}: the cluster has GPUs, so each Ray worker reserves 1 GPU "
                   "(ray.resources_per_worker.num_gpus: 0 for a CPU engine)")
        self._options = ray_options(ray_cfg.resources_per_worker, gpus)
        check_fits(ray_cfg, self._options, ray_cfg.num_workers, "ray.resources_per_worker")
        self._host = ray.remote(_Host)
        try:
            self._reserve()
            self._slots = [_Slot(i, self._start(i)) for i in range(ray_cfg.num_workers)]
            self._await_ready()
        except BaseException:
            self.close()
            raise

    def _await_ready(self) -> None:
        """Wait until every worker has built its engine. An actor that dies while it starts (killed, its node
        lost) is replaced, like one that dies later, up to ray.max_restarts; a worker whose engine could not be
        built is one line (building it again would fail the same way)."""
        ray = require_ray()
        deadline = time.monotonic() + self._cfg.start_timeout
        waiting = {s.actor.ready.remote(): s for s in self._slots}
        while waiting:
            done, _ = ray.wait(list(waiting), num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
            if not done:
                raise RsftError(f"{self._label}: {self._cfg.num_workers} Ray workers with {self._options} did not "
                                f"start within {self._cfg.start_timeout:g} s (ray.start_timeout); the cluster has "
                                f"{ray.cluster_resources()}")
            slot = waiting.pop(done[0])
            try:
                error = ray.get(done[0])
            except ray.exceptions.RayActorError as e:
                if slot.restarts >= self._cfg.max_restarts:
                    raise RsftError(f"{self._label}: a Ray worker died while starting, {slot.restarts + 1} times "
                                    f"(ray.max_restarts = {self._cfg.max_restarts}): {one_line(e)}") from None
                slot.restarts += 1
                slot.actor = self._start(slot.index)
                notice(f"{self._label}: Ray worker {slot.index} died while starting ({one_line(e)}); replaced "
                       f"({slot.restarts} of ray.max_restarts = {self._cfg.max_restarts})")
                waiting[slot.actor.ready.remote()] = slot
                continue
            if error:
                raise RsftError(f"{self._label}: a worker could not start: {error}")

    @property
    def actors(self) -> list[Any]:
        """The live actors' handles, one per worker still in the pool."""
        return [s.actor for s in self._slots]

    def map(self, method: str, batches: Iterable[list]) -> Iterator[list]:
        """`getattr(worker, method)(batch)` for each batch, yielded in input order; see the module docstring
        for what happens when an actor dies."""
        ray = require_ray()
        order = _Order(batches, IN_FLIGHT * len(self._slots))
        pending: dict[Any, _Call] = {}
        charged: Counter[int] = Counter()
        seq = 0
        try:
            while True:
                while (slot := self._idlest(pending)) is not None and (item := order.take()) is not None:
                    pending[slot.actor.call.remote(method, item[1])] = _Call(item[0], item[1], slot, seq)
                    seq += 1
                if not pending:
                    if order.finished:
                        return
                    raise RsftError(f"{self._label}: every Ray worker died (ray.max_restarts = "
                                    f"{self._cfg.max_restarts} replacements each); {order.handed} batches were done")
                [ref], _ = ray.wait(list(pending), num_returns=1)
                call = pending.pop(ref)
                try:
                    order.put(call.index, ray.get(ref))
                except ray.exceptions.RayActorError as e:
                    self._lost(call, pending, order, charged, e)
                except ray.exceptions.RayTaskError as e:
                    raise cause(e) from None
                except ray.exceptions.RayError as e:  # the result was lost (its node, its owner): do it again
                    self._lost(call, pending, order, charged, e)
                yield from order.ready()
        finally:
            _cancel(pending)

    def _idlest(self, pending: dict[Any, _Call]) -> _Slot | None:
        """The worker with the fewest calls in flight, if it has room for one more."""
        load = Counter(id(c.slot) for c in pending.values())
        slot = min(self._slots, key=lambda s: load[id(s)], default=None)
        return slot if slot is not None and load[id(slot)] < IN_FLIGHT else None

    def _lost(self, call: _Call, pending: dict[Any, _Call], order: _Order, charged: Counter[int],
              error: Exception) -> None:
        """An actor died: its batches go back in line (those it finished first are kept), the one it was
        running is charged, the actor is replaced."""
        ray = require_ray()
        slot, calls = call.slot, [call]
        others = {r: pending.pop(r) for r, c in list(pending.items()) if c.slot is slot}
        finished, _ = ray.wait(list(others), num_returns=len(others), timeout=0) if others else ([], [])
        for r, c in others.items():
            if r not in finished:
                calls.append(c)
                continue
            try:
                order.put(c.index, ray.get(r))
            except ray.exceptions.RayActorError:
                calls.append(c)
            except ray.exceptions.RayTaskError as e:
                raise cause(e) from None
        running = min(calls, key=lambda c: c.seq)
        charged[running.index] += 1
        if charged[running.index] > self._cfg.max_retries:
            raise RsftError(f"{self._label}: batch {running.index} killed its Ray worker {charged[running.index]} "
                            f"times (ray.max_retries = {self._cfg.max_retries}); last: {one_line(error)}") from None
        for c in calls:
            order.again(c.index, c.batch)
        self._replace(slot, error)

    def _replace(self, slot: _Slot, error: Exception) -> None:
        ray = require_ray()
        try:
            ray.kill(slot.actor)  # an unavailable actor may still be alive
        except Exception:  # noqa: BLE001 - already gone
            pass
        if slot.restarts >= self._cfg.max_restarts:
            self._slots.remove(slot)
            notice(f"{self._label}: Ray worker {slot.index} died ({one_line(error)}); not replaced "
                   f"(ray.max_restarts = {self._cfg.max_restarts}), {len(self._slots)} left")
            return
        slot.restarts += 1
        slot.actor = self._start(slot.index)
        notice(f"{self._label}: Ray worker {slot.index} died ({one_line(error)}); replaced "
               f"({slot.restarts} of ray.max_restarts = {self._cfg.max_restarts}), its batches sent again")

    def _reserve(self) -> None:
        """One placement group, a bundle per worker, reserved whole before any engine loads (as OpenRLHF
        reserves its vLLM engines' GPUs); a replacement actor takes its predecessor's bundle."""
        one = bundle(self._options)
        if not one:
            return
        ray = require_ray()
        from ray.util.placement_group import placement_group

        self._group = placement_group([one] * self._cfg.num_workers, strategy="PACK")
        ready, first = self._group.ready(), min(PLACEMENT_NOTICE, self._cfg.start_timeout)
        try:
            ray.get(ready, timeout=first)
        except ray.exceptions.GetTimeoutError:
            notice(f"{self._label}: waiting for the Ray cluster to free {self._cfg.num_workers} × {one} "
                   f"(free now: {ray.available_resources()}; ray.start_timeout = {self._cfg.start_timeout:g} s)")
            try:
                ray.get(ready, timeout=max(0.0, self._cfg.start_timeout - first))
            except ray.exceptions.GetTimeoutError:
                raise RsftError(f"{self._label}: the Ray cluster could not place {self._cfg.num_workers} × {one} "
                                f"within {self._cfg.start_timeout:g} s (ray.start_timeout); it has "
                                f"{ray.cluster_resources()}") from None

    def _start(self, index: int) -> Any:
        options = dict(self._options, max_restarts=0, max_task_retries=0)
        if self._group is not None:
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

            options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                placement_group=self._group, placement_group_bundle_index=index)
        return self._host.options(**options).remote(self._worker, self._args)

    def close(self) -> None:
        """Let each worker close its engine (at most CLOSE_TIMEOUT s), then kill the actors and free the
        placement group. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        ray = require_ray()
        if self._slots:
            ray.wait([s.actor.close.remote() for s in self._slots], num_returns=len(self._slots),
                     timeout=CLOSE_TIMEOUT)
        for s in self._slots:
            try:
                ray.kill(s.actor)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self._slots = []
        if self._group is not None:
            from ray.util.placement_group import remove_placement_group

            remove_placement_group(self._group)
            self._group = None

    def __enter__(self) -> ActorPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def task_map(fn: str | Callable[..., list], args: tuple, batches: Iterable[list], ray_cfg: RayConfig,
             label: str) -> Iterator[list]:
    """`fn(*args, batch)` as one Ray task per batch, yielded in input order.

    `fn` is a callable or a ``"module:function"`` string; `fn` and `args` are put in Ray's object store
    once per map, not once per batch. Each task reserves ``ray.score_resources``; at most
    ``ray.score_workers`` (default ``ray.num_workers``) run at once. A function that builds something
    heavy (a reward model) should cache it per process: the tasks of a map share worker processes. Tasks
    wait for free resources with no time limit: an `ActorPool` still open on a small cluster can hold the
    CPUs they need, so close the sampling pool before scoring."""
    ray = require_ray()
    connect(ray_cfg)
    options = ray_options(ray_cfg.score_resources, 0.0)
    check_fits(ray_cfg, options, 1, "ray.score_resources")
    remote = ray.remote(_run_task).options(**options, max_retries=ray_cfg.max_retries, retry_exceptions=False)
    payload = ray.put((fn, tuple(args)))
    workers = ray_cfg.score_workers or ray_cfg.num_workers
    order = _Order(batches, IN_FLIGHT * workers)
    pending: dict[Any, tuple[int, list]] = {}
    try:
        while True:
            while len(pending) < workers and (item := order.take()) is not None:
                pending[remote.remote(payload, item[1])] = item
            if not pending:
                return  # nothing in flight and nothing to take: every batch was handed out
            [ref], _ = ray.wait(list(pending), num_returns=1)
            index, _ = pending.pop(ref)
            try:
                order.put(index, ray.get(ref))
            except ray.exceptions.RayTaskError as e:
                raise cause(e) from None
            except ray.exceptions.RayError as e:  # the worker process, its node or the result was lost
                raise RsftError(f"{label}: batch {index} was lost with its Ray worker {ray_cfg.max_retries + 1} "
                                f"times (ray.max_retries = {ray_cfg.max_retries}); last: {one_line(e)}") from None
            yield from order.ready()
    finally:
        _cancel(pending)


def _run_task(payload: tuple[str | Callable[..., list], tuple], batch: list) -> list:
    fn, args = payload
    if isinstance(fn, str):
        fn = import_object(fn, "ray task")
    return fn(*args, batch)


def cause(error: Exception) -> BaseException:
    """What the remote work raised: an `RsftError` as itself (one line), anything else as an exception of
    its own type whose message holds the remote traceback."""
    original = getattr(error, "cause", None)
    if isinstance(original, RsftError):
        return original
    try:
        return error.as_instanceof_cause()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - a cause Ray cannot subclass
        return error


def _cancel(pending: dict[Any, Any]) -> None:
    """Best effort: work nobody will read is not left running (a map stopped early or by an error)."""
    if not pending:
        return
    ray = require_ray()
    for ref in pending:
        try:
            ray.cancel(ref)
        except Exception:  # noqa: BLE001 - finished, or an actor call Ray cannot cancel
            pass
