"""The select stage's outputs against the held-out prompts: pairs get the decontamination SFT rows get, in the
stage's pairs.jsonl and in `rsft export pairs` alike; and a round that decontamination empties says so."""

from __future__ import annotations

import json

import pytest

from rsft.core.config import build_config
from rsft.core.errors import RsftError
from rsft.core.rundir.files import read_jsonl
from rsft.loop.commands.export import export_pairs
from rsft.loop.rounds import open_run
from rsft.stages.runner import run_stage

# the fake engine's scripted texts, scored by a table: 'right' 1.0, 'close' 0.5, anything else 0.0
SCORER = ("def f(prompts, completions, **kw):\n"
          "    return [{'right': 1.0, 'close': 0.5}.get(c, 0.0) for c in completions]\n")


def scored_run(tmp_path, monkeypatch, model_dir, train, held_out, fake, rules=None, decontaminate=13):
    """A run whose round 0 is sampled (fake engine: the scripted texts) and scored; nothing selected yet."""
    (tmp_path / "s_table.py").write_text(SCORER)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"prompt": p, "fake": fake}) + "\n" for p in train))
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in held_out))
    cfg = build_config({"name": "d", "output_dir": str(tmp_path / "runs"), "model": {"path": str(model_dir)},
                        "task": {"name": "dataset", "train": str(tmp_path / "train.jsonl"),
                                 "eval": str(tmp_path / "eval.jsonl")},
                        "scorer": "s_table:f", "sampling": {"engine": "fake", "n": len(fake), "max_new_tokens": 8},
                        "selection": {"decontaminate": decontaminate,
                                      "rules": rules or [{"rule": "passes", "min": 0.0}]}})
    run = open_run(cfg)
    run_stage(run, 0, "sample")
    run_stage(run, 0, "score")
    return run


def test_a_prompt_that_is_a_held_out_prompt_gives_no_pair_in_the_stage_or_the_export(tmp_path, monkeypatch, model_dir):
    train = ["what is one plus one", "name a red fruit", "spell cat backwards"]
    run = scored_run(tmp_path, monkeypatch, model_dir, train, held_out=["Name a  RED fruit"], fake=["right", "wrong"])
    run_stage(run, 0, "select")
    pairs = list(read_jsonl(run.round(0).pairs))
    assert sorted(r["prompt"] for r in pairs) == ["spell cat backwards", "what is one plus one"]
    assert all((r["chosen"], r["rejected"]) == ("right", "wrong") for r in pairs)
    path, count = export_pairs(run.dir, 0)
    exported = list(read_jsonl(path))
    assert count == 2 and sorted(r["prompt"] for r in exported) == ["spell cat backwards", "what is one plus one"]
    selection = json.loads((run.round(0).path / "selection.json").read_text())
    assert selection["decontaminated"] == 2 and selection["pairs_decontaminated"] == 2  # the prompt's two samples


def test_a_completion_that_quotes_a_held_out_prompt_is_in_no_pair(tmp_path, monkeypatch, model_dir):
    # the worst sample repeats 3 words of the held-out prompt: the pair is made of the other two
    leaked = "the cat sat"
    run = scored_run(tmp_path, monkeypatch, model_dir, ["q one", "q two"], held_out=["where the cat sat today"],
                     fake=["right", "close", leaked], decontaminate=3)
    run_stage(run, 0, "select")
    for rows in (list(read_jsonl(run.round(0).pairs)), list(read_jsonl(export_pairs(run.dir, 0)[0]))):
        assert [(r["prompt"], r["chosen"], r["rejected"], r["margin"]) for r in rows] == [
            ("q one", "right", "close", 0.5), ("q two", "right", "close", 0.5)]


def test_a_round_that_decontamination_empties_names_it_in_the_error(tmp_path, monkeypatch, model_dir):
    train = ["what is one plus one", "name a red fruit"]
    run = scored_run(tmp_path, monkeypatch, model_dir, train, held_out=train, fake=["right", "wrong"],
                     rules=[{"rule": "passes", "min": 1.0}])
    with pytest.raises(RsftError, match=r"left after each rule: passes: 2, decontamination: 0\)") as e:
        run_stage(run, 0, "select")
    assert "held-out" in str(e.value)
    assert not run.round(0).done("select") and not run.round(0).pairs.exists()
