"""Whole runs with `sampling.engine: vllm`: each round samples from the previous round's model, and a LoRA
run serves each round's adapter on the loaded base instead of reloading."""

from __future__ import annotations

import functools
import json

import pytest
import torch
import yaml

from rsft.core.config import build_config
from rsft.loop.rounds import run
from tests.conftest import ROOT


def mini(tmp_path, name, **changes):
    data = yaml.safe_load((ROOT / "tests" / "e2e" / "mini.yaml").read_text())
    data["model"]["tiny"]["num_heads"] = 2  # head size 32, which vLLM's CPU attention supports
    data.update({"output_dir": str(tmp_path), "name": name, "rounds": 2,
                 "sampling": {**data["sampling"], "engine": "vllm", "engine_options": {"enforce_eager": True}}})
    for key, value in changes.items():
        data[key] = {**data.get(key, {}), **value}
    return build_config(data)


def teacher_forced(model_dir, prompt: str, token_ids: list[int]) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(model_dir), AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ids = tok(prompt)["input_ids"]
    with torch.no_grad():
        logp = model(torch.tensor([ids + token_ids])).logits.log_softmax(-1)[0]  # [T, V]
    return sum(logp[len(ids) - 1 + i, t].item() for i, t in enumerate(token_ids))


def first_sample(run_dir, r):
    group = json.loads((run_dir / f"round-{r:03d}" / "samples.jsonl").read_text().splitlines()[0])
    sample = max(group["samples"], key=lambda s: len(s["token_ids"]))
    return group["prompt"]["text"], sample


@pytest.mark.slow  # three vLLM loads (~1.5 min); the default tier's vLLM evidence is tests/vllm/test_*engine*, test_real_model
def test_each_round_samples_from_the_previous_rounds_model(tmp_path):
    run_dir = run(mini(tmp_path, "v"))
    metrics = json.loads((run_dir / "round-001" / "metrics.json").read_text())
    assert metrics["samples"] == 48 * 4 and metrics["eval"]["engine"] == "vllm"
    text, sample = first_sample(run_dir, 1)
    own = teacher_forced(run_dir / "round-000" / "model", text, sample["token_ids"])
    base = teacher_forced(run_dir / "base-model", text, sample["token_ids"])
    assert sample["logprob"] == pytest.approx(own, abs=2e-3) and abs(own - base) > 1e-2


@pytest.mark.slow
def test_a_lora_run_serves_adapters_on_one_loaded_base(tmp_path, monkeypatch):
    from rsft.parts.sampling import vllm_engine

    loads = []
    real = vllm_engine.VLLMEngine.from_path.__func__

    @functools.wraps(real)  # keeps the signature: rsft passes lora_rank because the factory takes it
    def counting(cls, model_path, *args, **kwargs):
        loads.append(model_path)
        return real(cls, model_path, *args, **kwargs)

    monkeypatch.setattr(vllm_engine.VLLMEngine, "from_path", classmethod(counting))
    cfg = mini(tmp_path, "lora", train={"init": "base", "lora": {"r": 8, "alpha": 16}, "learning_rate": 0.01})
    run_dir = run(cfg)
    assert loads == [str(run_dir / "base-model")]  # one load; every round after it is an adapter switch
    text, sample = first_sample(run_dir, 1)
    own = teacher_forced(run_dir / "round-000" / "model", text, sample["token_ids"])
    base = teacher_forced(run_dir / "base-model", text, sample["token_ids"])
    assert sample["logprob"] == pytest.approx(own, abs=5e-3) and abs(own - base) > 1e-2
