"""Allocation and executor as registry kinds: the stages ask the strategy, never its name; `module:Class` works."""

from __future__ import annotations

import json

import pytest

from rsft.core.config import build_config
from rsft.core.errors import ConfigError
from rsft.core.registry import resolve
from rsft.core.rundir.files import read_groups
from rsft.loop.rounds import open_run
from rsft.parts.sampling.allocators import Carry, EarlyStop, Gvm, Uniform
from rsft.stages.runner import run_stage
from tests.conftest import make_model_dir

# a user's allocation: two samples for prompts whose id ends in an even digit, none for the others, in two
# passes (a dry pass of one sample written to its own file, then the draw) so the stage's generic pass loop,
# `after` and the executor's pass map are all exercised by a strategy rsft does not know by name
USER_ALLOCATION = '''
import json
from rsft.core.records import Group
from rsft.core.rundir.files import atomic_write_json
from rsft.parts.sampling.allocators import Allocation

class EvenOnly(Allocation):
    passes = ("probe", "draw")

    def __init__(self, per_even: int = 2) -> None:
        super().__init__(per_even)
        self.per_even = per_even

    def drawer(self, ctx, pass_name):
        engine = ctx.engine()
        def draw(batch):
            out = []
            for p in batch:
                k = 1 if pass_name == "probe" else (self.per_even if int(p.id[-1]) % 2 == 0 else 0)
                out.append(Group(p, tuple(engine.generate([p], k, ctx.params)[0]) if k else ()))
            return out
        return draw

    def after(self, ctx, pass_name):
        atomic_write_json(ctx.round.path / f"after-{pass_name}.json", {"pass": pass_name})
'''


def fake_config(tmp_path, **sampling):
    rows = [{"prompt": f"q{i}", "fake": ["a", "b"], "answer": "a"} for i in range(6)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = make_model_dir(tmp_path / "model", alphabet="qab0123456789")
    return {"name": "kinds", "output_dir": str(tmp_path / "runs"), "model": {"path": str(model)},
            "task": {"name": "dataset", "train": str(tmp_path / "train.jsonl")}, "scorer": "match",
            "sampling": {"engine": "fake", "n": 3, "batch_size": 4, "max_new_tokens": 4, **sampling}}


@pytest.mark.parametrize("name, cls, scores, keep_none", [
    ("uniform", Uniform, False, False), ("early_stop", EarlyStop, True, False), ("carry", Carry, True, True),
    ("gvm", Gvm, True, False)])
def test_each_builtin_allocation_is_a_registry_kind_that_says_what_the_stages_ask(name, cls, scores, keep_none):
    cfg = build_config({"sampling": {"allocation": name}, "train": {"replay": "all_rounds"}})
    made = resolve("allocation", name, sampling=cfg.sampling)
    assert type(made) is cls
    assert (made.scores_while_sampling, made.may_keep_none) == (scores, keep_none)
    assert made.passes == (("presample", "draw") if name == "gvm" else ("draw",))
    assert made.n_means  # sampling.n's meaning is the strategy's own, stated


def test_a_user_allocation_module_class_runs_its_passes_through_the_sample_stage(tmp_path, monkeypatch):
    (tmp_path / "my_alloc.py").write_text(USER_ALLOCATION)
    monkeypatch.chdir(tmp_path)
    cfg = build_config(fake_config(tmp_path, allocation="my_alloc:EvenOnly", allocation_options={"per_even": 2}))
    run = open_run(cfg)
    run_stage(run, 0, "sample")
    rd = run.round(0)
    counts = {g.prompt.id: len(g.samples) for g in read_groups(rd.samples)}
    ids = sorted(counts)
    assert [counts[i] for i in ids] == [2 if int(i[-1]) % 2 == 0 else 0 for i in ids]
    assert len(read_groups(rd.path / "probe.jsonl")) == 6  # its own pass, its own file
    assert json.loads((rd.path / "after-probe.json").read_text()) == {"pass": "probe"}
    assert json.loads((rd.path / "after-draw.json").read_text()) == {"pass": "draw"}
    # --force sample clears the strategy's own pass file too: a torn one is not resumed from
    (rd.path / "probe.jsonl").write_text("not json\n")
    run_stage(run, 0, "sample", force=True)
    assert len(read_groups(rd.path / "probe.jsonl")) == 6


def test_a_user_allocation_options_are_checked_against_its_signature(tmp_path, monkeypatch):
    (tmp_path / "my_alloc2.py").write_text(USER_ALLOCATION)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"sampling.allocation_options.per_odd"):
        build_config(fake_config(tmp_path, allocation="my_alloc2:EvenOnly", allocation_options={"per_odd": 1}))
    with pytest.raises(ConfigError, match=r"sampling.allocation_options.*flat sampling keys"):
        build_config(fake_config(tmp_path, allocation="early_stop", allocation_options={"wave": 2}))


def test_something_that_is_not_an_allocation_is_refused_at_load(tmp_path, monkeypatch):
    (tmp_path / "not_alloc.py").write_text("class Thing:\n    def __init__(self):\n        pass\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"key 'sampling.allocation': 'not_alloc:Thing' is not an allocation"):
        build_config(fake_config(tmp_path, allocation="not_alloc:Thing"))


USER_EXECUTOR = '''
from contextlib import contextmanager
CALLS = []

class Counting:
    """In this process, counting the batches it maps (a stand-in for a cluster)."""
    @contextmanager
    def sampling(self, run, r):
        def pass_map(name, build):
            def mapper(chunks):
                fn = build()
                for chunk in chunks:
                    CALLS.append(("sample", name, len(chunk)))
                    yield fn(chunk)
            return mapper
        yield pass_map

    def scoring(self, run, r, local):
        def mapper(chunks):
            for chunk in chunks:
                CALLS.append(("score", len(chunk)))
                yield local(chunk)
        return mapper
'''


def test_a_user_executor_module_class_carries_the_sample_and_score_batches(tmp_path, monkeypatch):
    (tmp_path / "my_exec.py").write_text(USER_EXECUTOR)
    monkeypatch.chdir(tmp_path)
    run = open_run(build_config({**fake_config(tmp_path), "executor": "my_exec:Counting"}))
    run_stage(run, 0, "sample")
    run_stage(run, 0, "score")
    import my_exec

    assert my_exec.CALLS == [("sample", "draw", 4), ("sample", "draw", 2), ("score", 4), ("score", 2)]
    assert sum(len(g.scores) for g in read_groups(run.round(0).scored)) == 6 * 3


def test_executor_defaults_and_refusals():
    assert build_config({}).executor_name == "local"
    assert type(resolve("executor", "local")).__name__ == "LocalExecutor"
    with pytest.raises(ConfigError, match="key 'executor': ray needs an enabled ray section"):
        build_config({"executor": "ray"})
    with pytest.raises(ConfigError, match=r"key 'executor': unknown executor 'dask'.* or 'module:Class'"):
        resolve("executor", "dask")
