"""ReST-EM style rounds (every round restarts from the base) with LoRA, through the real loop."""

from __future__ import annotations

import json

import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from rsft.core.config import build_config
from rsft.loop.rounds import run
from tests.conftest import ROOT


def test_init_base_with_lora(tmp_path):
    data = yaml.safe_load((ROOT / "tests" / "e2e" / "mini.yaml").read_text())
    data.update({"output_dir": str(tmp_path), "name": "restem"})
    data["train"].update({"init": "base", "lora": {"r": 4, "alpha": 8}, "learning_rate": 0.01})
    data["eval"] = {"enabled": False}
    run_dir = run(build_config(data))
    base = str(run_dir / "base-model")
    for r in (0, 1):
        rd = run_dir / f"round-00{r}"
        assert json.loads((rd / "train.json").read_text())["init"] == base
        assert (rd / "model-adapter" / "adapter_config.json").exists()
        assert (rd / "model" / "config.json").exists() and not (rd / "model" / "adapter_config.json").exists()
    # round 1 sampled from round 0's model (trained from the base): its recorded logprobs are round 0's
    group = json.loads((run_dir / "round-001" / "samples.jsonl").read_text().splitlines()[0])
    text, sample = group["prompt"]["text"], group["samples"][0]
    under_round0 = sequence_logprob(run_dir / "round-000" / "model", text, sample["token_ids"])
    under_base = sequence_logprob(run_dir / "base-model", text, sample["token_ids"])
    assert abs(sample["logprob"] - under_round0) < 1e-3 < abs(sample["logprob"] - under_base)


def sequence_logprob(model_dir, prompt_text, completion_ids):
    """Sum of log p(completion token | prefix) under the model at model_dir."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    prompt_ids = tok(prompt_text)["input_ids"]
    ids = torch.tensor([prompt_ids + list(completion_ids)])  # [1, P + C]
    with torch.inference_mode():
        logp = model(ids).logits[0, :-1].float().log_softmax(-1)  # [P + C - 1, V]
    targets = ids[0, len(prompt_ids):]  # [C]
    return logp[len(prompt_ids) - 1:].gather(-1, targets.unsqueeze(-1)).sum().item()
