"""`rsft run` on the real SmolLM2-135M-Instruct, given as its GGUF file, with a default engine (auto: CTranslate2
here), LoRA, chat prompts and a verifier: every stage runs on the real model and the files say what happened."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import run_cli

pytestmark = pytest.mark.real_model


def sums(n, start=0):
    return [{"prompt": [{"role": "user", "content": f"What is {a} + {a + 1}? Answer with just the number."}],
             "answer": 2 * a + 1} for a in range(start, start + n)]


def write_config(tmp_path, smol_gguf, rounds=1, n_train=6, n_eval=4, **extra):
    for name, rows in (("train", sums(n_train, 1)), ("eval", sums(n_eval, 50))):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {
        "name": "smol", "output_dir": str(tmp_path / "runs"), "rounds": rounds, "seed": 3,
        "model": {"path": str(smol_gguf)},
        "task": {"name": "dataset", "train": str(tmp_path / "train.jsonl"), "eval": str(tmp_path / "eval.jsonl")},
        "scorer": {"name": "numeric"},
        "sampling": {"n": 4, "temperature": 0.9, "max_new_tokens": 24},
        "selection": {"rules": [{"rule": "passes"}, {"rule": "dedup"}]},
        "train": {"max_steps": 2, "batch_size": 4, "learning_rate": 1e-4, "lora": {"r": 8, "alpha": 16}},
        "eval": {"n": 2, "k": [1, 2]},
        "report": False,
        **extra,
    }
    path = tmp_path / "smol.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow  # the README test runs examples/smollm2.yaml (the same path) in the default tier and checks
# the engine, the trained ids and the LoRA targets on it
def test_one_round_on_the_real_model_from_its_gguf_file(smol_gguf, smol_dir, tmp_path):
    proc = run_cli("run", str(write_config(tmp_path, smol_gguf)), cwd=tmp_path, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "smol"
    assert "cached conversion" in proc.stderr and str(smol_dir) in proc.stderr  # the GGUF source, said once
    assert "after round 0" in proc.stdout  # the round's metrics table
    metrics = json.loads((run / "round-000" / "metrics.json").read_text())
    assert metrics["samples"] == 24 and metrics["train_steps"] == 2
    assert metrics["eval"]["engine"] == "ctranslate2" and metrics["eval"]["precision"] == "float32"
    kept = [json.loads(x) for x in (run / "round-000" / "kept.jsonl").read_text().splitlines()]
    rows = [json.loads(x) for x in (run / "round-000" / "selected.jsonl").read_text().splitlines()]
    assert rows, "the model solves some of these sums"
    sampled = {tuple(s["token_ids"]): s["finish_reason"] for g in kept for s in g["samples"]}
    for row in rows:  # trained on what was sampled; a sample that stopped ends with the end-of-turn token
        ids = tuple(row["completion_ids"])
        assert ids in sampled
        assert (ids[-1] == 2) == (sampled[ids] == "stop")  # a cut-off one (it can pass numeric) has no <|im_end|>
    assert any(sampled[tuple(row["completion_ids"])] == "stop" for row in rows)
    adapter = json.loads((run / "round-000" / "model-adapter" / "adapter_config.json").read_text())
    assert {"q_proj", "v_proj", "down_proj"} <= set(adapter["target_modules"])  # all-linear on Llama's names
    assert (run / "round-000" / "model" / "model.safetensors").exists()


@pytest.mark.slow
def test_three_rounds_on_the_real_model(smol_gguf, tmp_path):
    """The same with 24 prompts, 3 rounds, replay and the transformers engine: the loop goes on over rounds
    (each round samples from the previous round's merged model)."""
    config = write_config(tmp_path, smol_gguf, rounds=3, n_train=24, n_eval=8,
                          train={"max_steps": 4, "batch_size": 4, "learning_rate": 2e-4, "replay": "all_rounds",
                                 "lora": {"r": 8, "alpha": 16}})
    proc = run_cli("run", str(config), "sampling.engine=transformers", cwd=tmp_path, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(run_cli("metrics", str(tmp_path / "runs" / "smol"), "--json", check=True).stdout)
    assert len(rows) == 4 and all(r["eval"]["engine"] == "transformers" for r in rows)
