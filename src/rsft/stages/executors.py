"""Executors: where the sample and score stages' batches run, in this process or on Ray.

Either way the stage hands `rsft.core.rundir.resumable.resumable_map` an ordered map over
batches and the driver appends each batch's lines in prompt order, so the files
are the same; an executor only changes where the work happens. The stages ask
the executor for that map and do not branch on which one it is.

- `LocalExecutor`: `map` in this process, with the driver's engine.
- `RayExecutor`: sampling on `ray.num_workers` actors, each opening the run
  directory and building its own engine (`rsft.stages.workers.SampleWorker`);
  scoring as Ray tasks (`rsft.stages.workers.score_task`). The driver's eval
  engine is released first: it would hold the memory (a GPU) the actors need.

``executor: "package.module:Class"`` names a user's, built as ``Class()``; it
needs the two methods below. What an executor does not do: it never writes to
the run directory, and never decides what is drawn (that is the allocation's).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from rsft.core.errors import ConfigError
from rsft.core.registry import lookup, resolve

if TYPE_CHECKING:
    from rsft.stages.run import Run

Lines = Callable[[list[Any]], list[dict[str, Any]]]  # a batch -> its JSONL lines
BatchMap = Callable[[Iterable[list[Any]]], Iterable[list[dict[str, Any]]]]  # batches -> their lines, in order
PassMap = Callable[[str, Callable[[], Lines]], BatchMap]  # (pass name, in-process lines builder) -> the map


class Executor(Protocol):
    def sampling(self, run: Run, r: int) -> Any:
        """A context manager yielding a `PassMap` for round r's sample passes; whatever it holds (actors) is
        released on exit. The builder is called only when the executor runs the pass in this process."""

    def scoring(self, run: Run, r: int, local: Lines) -> BatchMap:
        """The ordered map over round r's batches of groups for the score stage."""


class LocalExecutor:
    """Everything in this process."""

    @contextmanager
    def sampling(self, run: Run, r: int) -> Iterator[PassMap]:
        yield lambda pass_name, build: (lambda chunks: map(build(), chunks))

    def scoring(self, run: Run, r: int, local: Lines) -> BatchMap:
        return lambda chunks: map(local, chunks)


class RayExecutor:
    """Sampling on Ray actors, scoring as Ray tasks (`ray` section); the driver loads no model for sampling."""

    @contextmanager
    def sampling(self, run: Run, r: int) -> Iterator[PassMap]:
        from rsft.parts.distributed import ActorPool

        run.release_engines()
        # an absolute path: a worker's working directory may differ (another node, a runtime_env working_dir),
        # so the run directory must be on a filesystem every node sees
        pool = ActorPool("rsft.stages.workers:SampleWorker", (str(run.dir.resolve()), r), run.cfg.ray,
                         f"round {r} sample")
        try:
            yield lambda pass_name, build: (lambda chunks: pool.map(pass_name, chunks))
        finally:
            pool.close()

    def scoring(self, run: Run, r: int, local: Lines) -> BatchMap:
        from rsft.parts.distributed import task_map

        return lambda chunks: task_map("rsft.stages.workers:score_task", (str(run.dir.resolve()),), chunks,
                                       run.cfg.ray, f"round {r} score")


def build_executor(name: str, key: str = "executor") -> Executor:
    """The executor `name` means: local, ray, or a user's 'module:Class' (built with no arguments)."""
    cls = lookup("executor", name, key)
    if not isinstance(cls, type) or not all(callable(getattr(cls, m, None)) for m in ("sampling", "scoring")):
        raise ConfigError(f"key '{key}': {name!r} is not an executor (it needs sampling(run, r) and "
                          "scoring(run, r, local) methods; see rsft.stages.executors)")
    return cls()


def executor_for(run: Run) -> Executor:
    """The executor `run`'s config names (`executor`, else ray with an enabled ray section, else local)."""
    return resolve("executor", run.cfg.executor_name)
