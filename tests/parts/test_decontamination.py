"""Held-out prompts never reach training: exact prompt matches and shared word n-grams are dropped."""

from __future__ import annotations

import json

from rsft.core.records import Group, Prompt, Sample, Score
from rsft.parts.decontamination import Contamination, shared_prompts


def test_exact_prompts_and_ngrams_are_caught():
    held = [Prompt("e0", text="What is the capital of France ?  Answer in one word please")]
    c = Contamination(held, n=5)
    assert c.hits("what is the CAPITAL of france ?  answer in one word please")  # the same prompt, normalised
    assert c.hits("Tell me: what is the capital of France today", "")  # shares a 5-gram
    assert c.hits("Unrelated question", "the capital of france ? answer is Paris")  # via the completion
    assert not c.hits("What is the capital city of Spain", "Madrid")  # words in common, no 5-gram
    assert not Contamination(held, n=None).hits("Tell me: what is the capital of France today")  # exact only


def test_groups_and_rows_lose_only_the_contaminated_samples():
    held = [Prompt("e", text="12+34=")]
    c = Contamination(held, n=13)
    p_bad, p_ok = Prompt("a", text="12+34="), Prompt("b", text="5+6=")
    groups = [Group(p_bad, (Sample("a", 0, "46"),), (Score(1.0),)),
              Group(p_ok, (Sample("b", 0, "11"), Sample("b", 1, "12")), (Score(1.0), Score(1.0)))]
    kept, dropped = c.groups(groups)
    assert dropped == 1 and [g.prompt.id for g in kept] == ["b"] and len(kept[0].samples) == 2
    rows, dropped = c.rows([{"prompt": "12+34=", "completion": "46"}, {"prompt": "5+6=", "completion": "11"}])
    assert dropped == 1 and rows == [{"prompt": "5+6=", "completion": "11"}]
    assert shared_prompts([p_bad, p_ok], held) == 1


def test_a_run_whose_files_share_prompts_says_so_and_never_trains_on_them(tmp_path, model_dir, capsys):
    from rsft.core.config import build_config
    from rsft.loop.rounds import open_run
    from rsft.stages.runner import run_stage

    rows = [{"prompt": f"{a}+{b}=", "answer": a + b, "fake": [str(a + b)]} for a in range(4) for b in range(3)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    cfg = build_config({"name": "d", "output_dir": str(tmp_path / "runs"), "model": {"path": str(model_dir)},
                        "task": {"name": "dataset", "train": str(tmp_path / "train.jsonl"),
                                 "eval": str(tmp_path / "eval.jsonl")},
                        "scorer": "addition", "sampling": {"engine": "fake", "n": 2, "max_new_tokens": 8},
                        "selection": {"rules": [{"rule": "passes", "min": 0.0}]}})
    run = open_run(cfg)
    assert "3 of the 12 train prompts are also held-out prompts" in capsys.readouterr().err
    for stage in ("sample", "score", "select"):
        run_stage(run, 0, stage)
    selected = [json.loads(x) for x in run.round(0).selected.read_text().splitlines()]
    assert {r["prompt"] for r in selected} == {r["prompt"] for r in rows[3:]}
    assert json.loads((run.round(0).path / "selection.json").read_text())["decontaminated"] == 3 * 2
