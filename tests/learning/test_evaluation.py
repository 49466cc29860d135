"""Held-out evaluation measures what the rounds train: same stop strings, the checkpoint's own precision,
and a warm start that never looks at the held-out prompts."""

from __future__ import annotations

import json

import yaml

from rsft.core.config import build_config
from rsft.loop.rounds import open_run
from rsft.stages.evaluate import eval_model
from tests.conftest import ROOT

RECORDER = '''
import json, os
def judge(prompts, completions, answer, **kw):
    with open(os.environ.get("RSFT_TEST_RECORD", "seen.jsonl"), "a") as f:
        for p, c in zip(prompts, completions):
            f.write(json.dumps({"prompt": p, "completion": c}) + "\\n")
    return [0.0] * len(completions)
'''


def dataset_run(tmp_path, model_dir, **extra):
    tmp_path.mkdir(parents=True, exist_ok=True)
    rows = [{"prompt": f"{a}+{b}=", "answer": a + b} for a in range(6) for b in range(3)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    held = [{"prompt": f"{a}+{b}=", "answer": a + b} for a in range(6, 9) for b in range(6)]
    (tmp_path / "h.jsonl").write_text("".join(json.dumps(r) + "\n" for r in held))
    data = {"name": "ev", "output_dir": str(tmp_path / "runs"), "model": {"path": str(model_dir)},
            "task": {"name": "dataset", "train": str(tmp_path / "d.jsonl"), "eval": str(tmp_path / "h.jsonl")},
            "scorer": "addition", "sampling": {"engine": "transformers", "max_new_tokens": 10, "n": 2},
            "eval": {"n": 4, "k": [1, 4]}}
    for key, value in extra.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return open_run(build_config(data))


def test_eval_cuts_completions_at_the_rounds_stop_strings(tmp_path, model_dir, monkeypatch):
    (tmp_path / "rec.py").write_text(RECORDER)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RSFT_TEST_RECORD", str(tmp_path / "seen.jsonl"))
    run = dataset_run(tmp_path, model_dir, sampling={"stop": ["1", "7"]}, eval={"scorer": "rec:judge"})
    eval_model(run, str(model_dir), 0)
    seen = [json.loads(x)["completion"] for x in (tmp_path / "seen.jsonl").read_text().splitlines()]
    assert len(seen) == 18 * (1 + 4)
    assert not any("1" in c or "7" in c for c in seen)
    # the stop strings matter here: without them this model writes them in most completions
    unstopped = dataset_run(tmp_path / "u", model_dir, name="u")
    from rsft.parts.sampling.base import SamplingParams

    raw = unstopped.engine(str(model_dir)).generate(unstopped.task.eval, 4, SamplingParams(max_new_tokens=10, seed=0))
    assert sum(("1" in s.text or "7" in s.text) for g in raw for s in g) > 18


def test_eval_runs_in_the_checkpoints_precision_unless_told_otherwise(tmp_path, model_dir):
    run = dataset_run(tmp_path, model_dir, sampling={"engine": "ctranslate2", "engine_options": {"compute_type": "int8"}})
    assert run.engine(str(model_dir)).precision.startswith("int8")  # the rounds sample from the quantized model...
    metrics = eval_model(run, str(model_dir), 0)
    assert (metrics["engine"], metrics["precision"]) == ("ctranslate2", "float32")  # ...eval measures the checkpoint
    chosen = dataset_run(tmp_path / "c", model_dir, name="c",
                         eval={"engine": "ctranslate2", "engine_options": {"compute_type": "int8"}})
    assert eval_model(chosen, str(model_dir), 0)["precision"].startswith("int8")  # as CTranslate2 loaded it


def test_the_warm_start_checks_on_a_dev_split_with_the_judge(tmp_path, monkeypatch):
    from rsft.loop.rounds import run

    (tmp_path / "rec.py").write_text(RECORDER)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RSFT_TEST_RECORD", str(tmp_path / "seen.jsonl"))
    data = yaml.safe_load((ROOT / "tests" / "e2e" / "mini.yaml").read_text())
    data.update({"output_dir": str(tmp_path / "runs"), "rounds": 0, "eval": {"enabled": False, "scorer": "rec:judge"}})
    data["warm_start"].update({"max_steps": 15, "check_every": 15, "examples": 150, "eval_prompts": 30})
    run_dir = run(build_config(data))
    seen = {json.loads(x)["prompt"] for x in (tmp_path / "seen.jsonl").read_text().splitlines()}
    task = open_run(build_config(data)).task
    gold_trained = {p.text for p, _ in task.gold[:150]}
    assert len(seen) == 30  # the judge scored the checks (the run's scorer did not)
    assert not seen & {p.text for p in task.eval} and not seen & gold_trained
    assert seen == {p.text for p, _ in task.gold[150:180]}
    assert json.loads((run_dir / "base.json").read_text())["warm_start"]["dev_prompts"] == 30
