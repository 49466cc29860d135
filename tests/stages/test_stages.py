"""Stage functions around sampling, with the fake engine (unit tests only; e2e tests use real engines)."""

from __future__ import annotations

import json
import time

import pytest

from rsft.core.config import build_config
from rsft.core.errors import RsftError
from rsft.core.rundir.files import read_groups
from rsft.loop.rounds import open_run
from rsft.stages.runner import run_stage
from tests.conftest import make_model_dir


def fake_run(tmp_path, scorer, rules=None, **extra):
    rows = [{"prompt": f"q{i}", "fake": ["a", "b", "a", "c"]} for i in range(10)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = make_model_dir(tmp_path / "model", alphabet="qabc0123456789")  # for the checks; the fake engine ignores it
    cfg = build_config({
        "name": "fake", "output_dir": str(tmp_path / "runs"), "model": {"path": str(model)},
        "task": {"name": "dataset", "train": str(tmp_path / "train.jsonl")}, "scorer": scorer,
        "sampling": {"engine": "fake", "n": 4, "batch_size": 3, "max_new_tokens": 8},
        "selection": {"rules": rules or [{"rule": "passes", "min": 1.0}, {"rule": "dedup"}]}, **extra,
    })
    run = open_run(cfg)
    run_stage(run, 0, "sample")
    return run


def test_scorer_errors_are_counted_not_fatal(tmp_path, monkeypatch):
    (tmp_path / "s_none.py").write_text("def f(prompts, completions, **kw):\n"
                                   "    return [None if c == 'c' else float(c == 'a') for c in completions]\n")
    monkeypatch.chdir(tmp_path)
    run = fake_run(tmp_path, "s_none:f")
    run_stage(run, 0, "score")
    groups = read_groups(run.round(0).scored)
    assert sum(1 for g in groups for s in g.scores if not s.ok) == 10
    run_stage(run, 0, "select")
    kept = [json.loads(x) for x in run.round(0).selected.read_text().splitlines()]
    assert len(kept) == 10 and all(r["completion"] == "a" for r in kept)  # dedup: one 'a' per prompt


def test_a_round_where_every_sample_errors_stops_with_a_clear_message(tmp_path, monkeypatch):
    (tmp_path / "s_raise.py").write_text("def f(prompts, completions, **kw):\n    raise RuntimeError('judge down')\n")
    monkeypatch.chdir(tmp_path)
    run = fake_run(tmp_path, "s_raise:f")
    with pytest.raises(RsftError, match=r"scorer failed on all 40 samples \(first error: RuntimeError: judge down\)"):
        run_stage(run, 0, "score")
    assert not run.round(0).done("score")


@pytest.mark.parametrize("allocation", ["uniform", "early_stop"])
def test_after_a_round_where_every_sample_errors_a_fixed_scorer_scores_afresh(tmp_path, monkeypatch, allocation):
    (tmp_path / f"s_flaky_{allocation}.py").write_text(
        "import os\n"
        "def f(prompts, completions, **kw):\n"
        "    if os.path.exists('judge-down'):\n        raise RuntimeError('judge down')\n"
        "    return [float(c == 'a') for c in completions]\n")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "judge-down").write_text("")
    sampling = {"engine": "fake", "n": 4, "batch_size": 3, "allocation": allocation, "wave": 2, "max_new_tokens": 8}
    run = fake_run(tmp_path, f"s_flaky_{allocation}:f", sampling=sampling)  # early_stop scores while sampling
    with pytest.raises(RsftError, match="fix the scorer and run again"):
        run_stage(run, 0, "score")
    assert (run.round(0).path / "scored.failed.jsonl").exists() and not run.round(0).scored.exists()
    (tmp_path / "judge-down").unlink()
    if allocation != "uniform":  # its samples were drawn by scores that were all errors: drawn again
        assert not run.round(0).done("sample")
        assert run_stage(run, 0, "sample")
    assert run_stage(run, 0, "score")
    groups = read_groups(run.round(0).scored)
    assert all(s.ok for g in groups for s in g.scores) and sum(s.value for g in groups for s in g.scores) >= 10


def test_force_redoes_a_stage_and_unmarks_the_later_ones(tmp_path, monkeypatch):
    (tmp_path / "s_a.py").write_text("def f(prompts, completions, **kw):\n"
                                     "    return [float(c == 'a') for c in completions]\n")
    monkeypatch.chdir(tmp_path)
    run = fake_run(tmp_path, "s_a:f")
    rd = run.round(0)
    run_stage(run, 0, "score")
    original = rd.samples.read_text()
    rd.samples.write_text(original.replace('"text": "a"', '"text": "tampered"'))
    assert "tampered" in rd.samples.read_text()
    assert not run_stage(run, 0, "sample")  # done: not redone without force
    assert run_stage(run, 0, "sample", force=True)
    assert rd.samples.read_text() == original  # redrawn from scratch, not resumed from the tampered file
    assert not rd.done("score") and not rd.scored.exists()  # its input changed: score must run again
    assert run_stage(run, 0, "score")
    run_stage(run, 0, "select")
    (rd.model_work / "checkpoint-4").mkdir(parents=True)  # a killed training of the old selection
    assert run_stage(run, 0, "select", force=True)
    assert not rd.model_work.exists()  # training will not resume from a checkpoint of other data


def test_selection_that_keeps_nothing_stops(tmp_path, monkeypatch):
    (tmp_path / "s_zero.py").write_text("def f(prompts, completions, **kw):\n    return [0.0] * len(completions)\n")
    monkeypatch.chdir(tmp_path)
    run = fake_run(tmp_path, "s_zero:f")
    run_stage(run, 0, "score")
    with pytest.raises(RsftError, match="selection kept no samples"):
        run_stage(run, 0, "select")


def test_scorer_timeout_is_an_error_on_that_sample(tmp_path, monkeypatch):
    (tmp_path / "s_slow.py").write_text("import time\ndef f(prompts, completions, **kw):\n"
                                   "    if 'c' in completions: time.sleep(3)\n    return [1.0] * len(completions)\n")
    monkeypatch.chdir(tmp_path)
    run = fake_run(tmp_path, "s_slow:f", scoring={"timeout": 0.05})
    t0 = time.monotonic()
    run_stage(run, 0, "score")
    groups = read_groups(run.round(0).scored)
    errors = [s.error for g in groups for s in g.scores if not s.ok]
    assert len(errors) == 10 and all("timed out" in e for e in errors)
    assert all(g.scores[0].value == 1.0 for g in groups)
    assert time.monotonic() - t0 < 30
