"""The vllm engine (vLLM's CPU build, in-process) on the real SmolLM2-135M-Instruct: greedy tokens equal HF
generate's in float32, a turn ends on <|im_end|> recorded as the last token id (as every engine records it),
and the first token follows the model's softmax."""

from __future__ import annotations

import pytest
import torch

from rsft.core.records import Prompt
from rsft.inputs.data.formats import prompt_ids
from rsft.parts.sampling.base import SamplingParams
from tests.parts.sampling.stats import chi_square_ok

pytestmark = pytest.mark.real_model

CHAT = [Prompt("hello", messages=({"role": "user", "content": "Say hello."},)),
        Prompt("sum", messages=({"role": "user", "content": "What is 2+3? Answer with a number."},)),
        Prompt("sky", messages=({"role": "user", "content": "What colour is the sky? Answer in one word."},))]


@pytest.fixture(scope="module")
def smol_vllm(smol_dir):
    from rsft.parts.sampling.vllm_engine import VLLMEngine

    # a token budget per step that holds every prompt of a batch: vLLM 0.32's CPU build fails a seeded request
    # whose prefill is split across steps ("CPU Generator does not use offset")
    engine = VLLMEngine.from_path(str(smol_dir), dtype="float32", max_model_len=512, enforce_eager=True,
                                 max_num_batched_tokens=131072)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def hf(smol_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(smol_dir, dtype=torch.float32).eval(), \
        AutoTokenizer.from_pretrained(smol_dir)


def test_greedy_equals_generate_and_the_turn_ends_on_im_end(smol_vllm, hf):
    model, tok = hf
    out = smol_vllm.generate(CHAT, 1, SamplingParams(temperature=0, max_new_tokens=40))
    for p, (s,) in zip(CHAT, out):
        ids = torch.tensor([prompt_ids(p, tok)])
        with torch.no_grad():
            ref = model.generate(ids, max_new_tokens=40, do_sample=False, eos_token_id=[2], pad_token_id=2)
        assert list(s.token_ids) == ref[0, ids.shape[1]:].tolist(), p.id
        assert s.finish_reason == "stop" and s.token_ids[-1] == 2


@pytest.mark.slow  # 2,000 draws take vLLM's CPU build about 4 minutes here
def test_the_first_token_follows_the_softmax(smol_vllm, hf):
    model, tok = hf
    p = Prompt("first", messages=({"role": "user", "content": "Give me one word."},))
    with torch.no_grad():
        probs = model(torch.tensor([prompt_ids(p, tok)])).logits[0, -1].double().softmax(-1)
    out = smol_vllm.generate([p], 2000, SamplingParams(temperature=1.0, max_new_tokens=1, seed=7))
    chi2, crit, dof = chi_square_ok([s.token_ids[0] for s in out[0]], probs)
    assert dof >= 4 and chi2 < crit, (chi2, crit, dof)
