"""The vllm engine (in-process vLLM, CPU build) against transformers on the same tiny model."""

from __future__ import annotations

import random

import pytest
import torch

from rsft.core.records import Prompt
from rsft.parts.sampling.base import SamplingParams
from tests.parts.sampling.stats import chi_square_ok, reference_probs, wide_nucleus_prompt


@pytest.fixture(scope="module")
def hf(vmodel):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(vmodel).eval(), AutoTokenizer.from_pretrained(vmodel)


def next_logits(hf, text: str) -> torch.Tensor:
    model, tok = hf
    with torch.no_grad():
        return model(torch.tensor([tok(text)["input_ids"]])).logits[0, -1].double()  # [V]


def prompts(n: int, seed: int = 0) -> list[Prompt]:
    rng = random.Random(seed)
    return [Prompt(f"p{i}", text="".join(rng.choice("0123456789") for _ in range(rng.randint(1, 6))) + "+"
                   + str(rng.randint(0, 99)) + "=") for i in range(n)]


def test_greedy_equals_generate(vengine, hf):
    model, tok = hf
    ps = prompts(16)
    ours = vengine.generate(ps, 1, SamplingParams(temperature=0, max_new_tokens=12))
    reasons = set()
    for p, group in zip(ps, ours):
        enc = tok([p.text], return_tensors="pt")
        ref = model.generate(**enc, do_sample=False, max_new_tokens=12)[0, enc.input_ids.shape[1]:].tolist()
        if tok.eos_token_id in ref:
            ref = ref[: ref.index(tok.eos_token_id) + 1]
        got = list(group[0].token_ids)
        assert got == ref or got == ref[:-1] and ref[-1] == tok.eos_token_id, (p.text, got, ref)
        reasons.add(group[0].finish_reason)
    assert reasons == {"stop", "length"}, "the model should end some rows by EOS and some by length"


def test_first_token_frequencies_match_softmax_and_reject_another_temperature(vengine, hf):
    p = Prompt("chi", text="12+34=")
    out = vengine.generate([p], 3000, SamplingParams(temperature=1.0, max_new_tokens=1, seed=11))[0]
    drawn = [s.token_ids[0] for s in out]
    logits = next_logits(hf, p.text)
    chi2, crit, dof = chi_square_ok(drawn, logits.softmax(-1))
    assert dof >= 3 and chi2 < crit, (chi2, crit, dof)
    assert chi_square_ok(drawn, (logits / 0.8).softmax(-1))[0] > crit  # T=0.8 is not what was sampled


def test_top_p_frequencies_match_the_renormalised_nucleus(vengine, hf):
    text, _ = wide_nucleus_prompt([f"{a}{b}+{c}=" for a in range(10) for b in range(10) for c in (1, 5)],
                                  lambda t: next_logits(hf, t), 0.8)
    expected = reference_probs(next_logits(hf, text).view(1, -1), top_p=0.8)[0]
    out = vengine.generate([Prompt("tp", text=text)], 3000, SamplingParams(top_p=0.8, max_new_tokens=1, seed=9))[0]
    drawn = [s.token_ids[0] for s in out]
    chi2, crit, dof = chi_square_ok(drawn, expected)
    assert set(drawn) <= set(expected.nonzero().flatten().tolist()) and dof >= 2 and chi2 < crit


def test_logprob_is_the_raw_models_and_entropy_the_sampled_distributions(vengine, hf):
    model, tok = hf
    p = prompts(1)[0]
    params = SamplingParams(temperature=0.7, top_k=5, max_new_tokens=8, seed=2)
    for s in vengine.generate([p], 3, params)[0]:
        ids = tok(p.text)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids + list(s.token_ids)])).logits[0]  # [T, V]
        steps = logits[len(ids) - 1: len(ids) - 1 + s.num_tokens]  # [t, V]
        logp = steps.log_softmax(-1)
        assert s.logprob == pytest.approx(sum(logp[i, t].item() for i, t in enumerate(s.token_ids)), abs=2e-3)
        probs = reference_probs(steps, temperature=0.7, top_k=5)  # the vocabulary fits in the top 20: exact
        expected = float((-(probs * probs.clamp_min(1e-30).log()).sum(-1)).mean())
        assert s.entropy == pytest.approx(expected, abs=2e-3)


def test_a_sample_does_not_depend_on_its_batch_or_its_wave(vengine):
    ps = prompts(8)
    params = SamplingParams(max_new_tokens=8, seed=5, round=2)
    whole = vengine.generate(ps, 4, params)
    alone = vengine.generate(ps[3:4], 4, params)
    assert [s.token_ids for s in alone[0]] == [s.token_ids for s in whole[3]]
    first = vengine.generate(ps[3:4], 2, params)[0]
    second = vengine.generate(ps[3:4], 2, SamplingParams(max_new_tokens=8, seed=5, round=2, first_index=2))[0]
    assert [s.token_ids for s in first + second] == [s.token_ids for s in whole[3]]
    assert [s.index for s in second] == [2, 3]


def test_stop_strings_cut_and_finish(vengine):
    ps = prompts(8)
    long = vengine.generate(ps, 2, SamplingParams(max_new_tokens=12, seed=2))
    stop_char = next(s.text[1] for g in long for s in g if len(s.text) > 2)
    cut = vengine.generate(ps, 2, SamplingParams(max_new_tokens=12, seed=2, stop=(stop_char,)))
    assert all(stop_char not in s.text for g in cut for s in g)
    assert any(s.finish_reason == "stop" and len(s.text) < len(t.text) for g, h in zip(cut, long) for s, t in zip(g, h))


@pytest.mark.slow  # a third vLLM load (25 s); the ids it is given are rsft's prompt_ids, whose one-BOS rule
# tests/inputs/data/test_formats.py checks in the default tier
def test_chat_prompts_get_one_bos(tmp_path):
    from rsft.inputs.modeling import load_tokenizer
    from rsft.parts.sampling.vllm_engine import VLLMEngine
    from tests.conftest import make_model_dir
    from tests.inputs.data.test_formats import BOS_TEMPLATE
    from tests.vllm.conftest import VLLM_OPTIONS

    path = make_model_dir(tmp_path / "chat", alphabet="0123456789+=ua:\n", heads=2)
    tok = load_tokenizer(str(path))
    tok.chat_template = BOS_TEMPLATE  # it writes its own BOS: the engine must not add a second
    tok.save_pretrained(path)
    engine = VLLMEngine.from_path(str(path), **VLLM_OPTIONS)
    try:
        chat = Prompt("c", messages=({"role": "user", "content": "1+2="},))
        plain = Prompt("t", text="u:1+2=\na:")
        a, b = engine.generate([chat, plain], 1, SamplingParams(temperature=0, max_new_tokens=6))
    finally:
        engine.close()
    assert a[0].token_ids == b[0].token_ids


def test_a_misspelt_option_is_one_line_before_loading(vmodel):
    from rsft.core.errors import ConfigError
    from rsft.parts.sampling.engines import check_engine_options

    with pytest.raises(ConfigError, match="sampling.engine_options.max_model_length") as e:
        check_engine_options("vllm", {"max_model_length": 64})
    assert "\n" not in str(e.value)
    check_engine_options("vllm", {"max_model_len": 64, "enforce_eager": True, "tensor_parallel_size": 1})
