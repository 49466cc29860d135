"""The openai engine with a managed `vllm serve` (rsft starts vLLM's CPU build from .venv-vllm) on the real
SmolLM2-135M-Instruct: greedy tokens equal HF generate's in float32, and a turn ends on <|im_end|>,
recorded as the last token id as every other engine records it. About 2 minutes (the server's start)."""

from __future__ import annotations

import pytest
import torch

from rsft.core.records import Prompt
from rsft.inputs.data.formats import prompt_ids
from rsft.parts.sampling.base import SamplingParams
from tests.inputs.serving.vllm_venv import vllm_python

pytestmark = [pytest.mark.real_model, pytest.mark.slow]


def test_greedy_through_a_managed_vllm_serve_equals_generate(smol_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rsft.parts.sampling.openai_engine import OpenAIEngine

    python = vllm_python()
    engine = OpenAIEngine.from_path(str(smol_dir), serve=True, python=python,
                                    serve_args=["--max-model-len", "512", "--enforce-eager",
                                                "--max-num-batched-tokens", "8192"])
    try:
        prompts = [Prompt("sum", messages=({"role": "user", "content": "What is 2+3? Answer with a number."},)),
                   Prompt("sky", messages=({"role": "user", "content": "What colour is the sky? Answer in one word."},))]
        out = engine.generate(prompts, 1, SamplingParams(temperature=0, max_new_tokens=40))
    finally:
        engine.close()
    model, tok = AutoModelForCausalLM.from_pretrained(smol_dir).eval(), AutoTokenizer.from_pretrained(smol_dir)
    for p, (s,) in zip(prompts, out):
        ids = torch.tensor([prompt_ids(p, tok)])
        with torch.no_grad():
            ref = model.generate(ids, max_new_tokens=40, do_sample=False, eos_token_id=[2], pad_token_id=2)
        assert list(s.token_ids) == ref[0, ids.shape[1]:].tolist(), p.id
        assert s.finish_reason == "stop" and s.token_ids[-1] == 2
