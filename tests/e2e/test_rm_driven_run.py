"""Reward-model-driven RFT: rounds scored by a reward model alone, held-out metrics judged by the verifier."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

from rsft.core.config import build_config
from rsft.loop.rounds import run
from rsft.parts.scoring.spec import build_scorer
from rsft.stages.run import Run
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def base_and_rm(tmp_path_factory):
    """The mini run's warm-started base, and a tiny reward model on its tokenizer."""
    out = tmp_path_factory.mktemp("rm-run")
    data = yaml.safe_load((ROOT / "tests" / "e2e" / "mini.yaml").read_text())
    data.update({"output_dir": str(out), "name": "base", "rounds": 0})
    data["warm_start"].update({"max_steps": 300, "check_every": 100, "target_pass1": 0.3})  # some right answers
    base = run(build_config(data)) / "base-model"
    tok = AutoTokenizer.from_pretrained(base)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, num_labels=1, pad_token_id=tok.pad_token_id,
                      max_position_embeddings=64)
    torch.manual_seed(0)
    LlamaForSequenceClassification(cfg).save_pretrained(out / "rm")
    tok.save_pretrained(out / "rm")
    return out, base, out / "rm"


@pytest.mark.slow  # 1 to 2 minutes (a warm start, then rounds); the reward-hacking metrics are unit-tested in
# tests/learning/monitoring/test_reward_hacking_metrics.py, the reward_model scorer in tests/parts/scoring
def test_rounds_scored_by_a_reward_model_are_evaluated_by_the_verifier(base_and_rm):
    out, base, rm = base_and_rm
    data = yaml.safe_load((ROOT / "tests" / "e2e" / "mini.yaml").read_text())
    data.update({"output_dir": str(out), "name": "rm-driven", "rounds": 1, "model": {"path": str(base)},
                 "warm_start": {"enabled": False},
                 "scorer": {"name": "reward_model", "kwargs": {"path": str(rm)}},
                 "selection": {"rules": [{"rule": "dedup"}, {"rule": "top_k", "k": 1}]}})
    # a random RM picks mostly wrong answers: train gently, so the verifier still has right ones to count
    data["train"]["learning_rate"] = 1e-4
    data["eval"] = {"n": 4, "k": [1, 4], "scorer": "addition"}
    run_dir = run(build_config(data))

    # the round was scored by the reward model: real-valued rewards equal to the RM's own
    group = json.loads((run_dir / "round-000" / "scored.jsonl").read_text().splitlines()[0])
    rm_scorer = build_scorer({"name": "reward_model", "kwargs": {"path": str(rm)}})
    texts = [s["text"] for s in group["samples"]]
    expected = [float(s) for s in rm_scorer(prompts=[group["prompt"]["text"]] * len(texts), completions=texts)]
    assert [c["value"] for c in group["scores"]] == pytest.approx(expected, abs=1e-4)
    assert any(v not in (0.0, 1.0) for v in expected)

    # held-out greedy pass@1 is the verifier's verdict on HF greedy output of the round's model
    task = Run.open(run_dir).task
    model_dir = run_dir / "round-000" / "model"
    tok, model = AutoTokenizer.from_pretrained(model_dir), AutoModelForCausalLM.from_pretrained(model_dir).eval()
    passed = 0
    for prompt in task.eval:
        ids = tok(prompt.text, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            new = model.generate(ids, max_new_tokens=data["sampling"]["max_new_tokens"], do_sample=False)[0, ids.shape[1]:]
        completion = tok.decode(new, skip_special_tokens=True)
        score = task.scorer(prompts=[prompt.text], completions=[completion], **{k: [v] for k, v in prompt.fields.items()})[0]
        passed += float(score) >= 1.0
    metrics = json.loads((run_dir / "round-000" / "metrics.json").read_text())
    assert metrics["eval"]["greedy_pass@1"] == pytest.approx(passed / len(task.eval))
    # and the sampled eval rewards are the verifier's 0/1 (some right), not the RM's real values
    mean = metrics["eval"]["sampled_reward_mean"]  # over 16 prompts x 4 samples
    assert mean > 0 and mean * 64 == pytest.approx(round(mean * 64))
