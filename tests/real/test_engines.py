"""The engines on the real SmolLM2-135M-Instruct: they stop on the same ids, agree token for token in
float32, cut multi-token stop strings the same way, and sample from the model's own distribution.

Reference values come from HF transformers directly (a plain forward pass, `generate`), never from an rsft
engine. vLLM (CPU build) and the managed `vllm serve` are tested in .venv-vllm (tests/vllm)."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from rsft.core.records import Prompt
from rsft.parts.sampling.base import SamplingParams
from tests.parts.sampling.stats import chi_square_ok

pytestmark = pytest.mark.real_model

CHAT = [Prompt("hello", messages=({"role": "user", "content": "Say hello."},)),
        Prompt("sum", messages=({"role": "user", "content": "What is 2+3? Answer with a number."},)),
        Prompt("sky", messages=({"role": "user", "content": "What colour is the sky? Answer in one word."},))]
TEXT = [Prompt("paris", text="The capital of France is"), Prompt("code", text="def add(a, b):")]
GREEDY = SamplingParams(temperature=0, max_new_tokens=40)


@pytest.fixture(scope="module")
def engines(smol_dir):
    from rsft.parts.sampling.ctranslate2_engine import CTranslate2Engine
    from rsft.parts.sampling.transformers_engine import TransformersEngine

    return {"transformers": TransformersEngine.from_path(str(smol_dir)),
            "ctranslate2": CTranslate2Engine.from_path(str(smol_dir), compute_type="float32")}


@pytest.fixture(scope="module")
def hf(smol_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(smol_dir, dtype=torch.float32).eval(), \
        AutoTokenizer.from_pretrained(smol_dir)


def test_greedy_agrees_token_for_token_across_engines_and_with_generate(engines, hf):
    from rsft.inputs.data.formats import prompt_ids

    model, tok = hf
    prompts = CHAT + TEXT
    outs = {name: e.generate(prompts, 1, GREEDY) for name, e in engines.items()}
    for i, p in enumerate(prompts):
        ids = torch.tensor([prompt_ids(p, tok)])
        with torch.no_grad():
            ref = model.generate(ids, max_new_tokens=40, do_sample=False, eos_token_id=[2], pad_token_id=2)
        expected = ref[0, ids.shape[1]:].tolist()
        for name in engines:
            assert list(outs[name][i][0].token_ids) == expected, (name, p.id)
    # every chat answer here ends its turn within 40 tokens, on <|im_end|>, recorded as the last id
    for name in engines:
        for (s,) in outs[name][: len(CHAT)]:
            assert s.finish_reason == "stop" and s.token_ids[-1] == 2, (name, s)


@pytest.fixture(scope="module")
def eos_elsewhere(smol_dir, tmp_path_factory):
    """The same model whose tokenizer and configs name <|endoftext|> (id 0) as EOS: only the chat template
    still says that a turn ends with <|im_end|> (id 2)."""
    out = tmp_path_factory.mktemp("eos") / "model"
    out.mkdir()
    for f in smol_dir.iterdir():
        if f.name.endswith(".safetensors"):
            os.symlink(f, out / f.name)
        elif f.is_file():
            shutil.copy(f, out / f.name)
    for name in ("config.json", "generation_config.json"):
        data = json.loads((out / name).read_text())
        data["eos_token_id"] = 0
        (out / name).write_text(json.dumps(data))
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    tok.eos_token = "<|endoftext|>"
    tok.save_pretrained(out)
    return out


def test_every_engine_stops_on_the_templates_end_of_turn(eos_elsewhere):
    """An engine that stopped only on the tokenizer's (or the config's) EOS would run past <|im_end|>."""
    from rsft.inputs.modeling import load_tokenizer, stop_token_ids
    from rsft.parts.sampling.ctranslate2_engine import CTranslate2Engine
    from rsft.parts.sampling.transformers_engine import TransformersEngine

    tok = load_tokenizer(str(eos_elsewhere))
    assert tok.eos_token_id == 0 and stop_token_ids(tok, 0) == [0, 2]
    for engine in (TransformersEngine.from_path(str(eos_elsewhere)),
                   CTranslate2Engine.from_path(str(eos_elsewhere), compute_type="float32")):
        for (s,) in engine.generate(CHAT, 1, GREEDY):
            assert s.finish_reason == "stop" and s.token_ids[-1] == 2 and list(s.token_ids).count(2) == 1, \
                (engine.name, s)


def test_a_stop_string_spanning_several_tokens_cuts_the_same_everywhere(engines, hf):
    """Greedy after "The capital of France is" runs " Paris.\\n\\nThe answer is ..." here (HF generate
    says so below): the stop string "\\n\\nThe" is two or more BPE tokens, and the text ends before it."""
    model, tok = hf
    ids = tok("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        ref = tok.decode(model.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=2)[0, ids.shape[1]:])
    stop = "\n\nThe"
    assert stop in ref and len(tok(stop, add_special_tokens=False)["input_ids"]) >= 2
    expected = ref[: ref.index(stop)]
    params = SamplingParams(temperature=0, max_new_tokens=24, stop=(stop,))
    for name, engine in engines.items():
        (s,), = engine.generate([TEXT[0]], 1, params)
        assert (s.text, s.finish_reason) == (expected, "stop"), name


@pytest.mark.parametrize("name", ["transformers", pytest.param("ctranslate2", marks=pytest.mark.slow)])
def test_the_first_token_is_drawn_from_the_models_softmax(engines, hf, name):
    """4,000 first tokens at T=1 against softmax of the model's own logits (HF forward pass), pooled where
    fewer than 5 are expected; the 99.9% critical value, so a correct engine fails 1 run in 1,000.
    (CTranslate2 takes ~80 s to draw 4,000 hypotheses here: slow tier.)"""
    from rsft.inputs.data.formats import prompt_ids

    model, tok = hf
    p = Prompt("first", messages=({"role": "user", "content": "Give me one word."},))
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids(p, tok)])).logits[0, -1].double()  # [V]
    probs = logits.softmax(-1)
    assert (probs > 0.02).sum() >= 4  # a spread-out distribution: a broken sampler has room to show
    out = engines[name].generate([p], 4000, SamplingParams(temperature=1.0, max_new_tokens=1, seed=11))
    chi2, crit, dof = chi_square_ok([s.token_ids[0] for s in out[0]], probs)
    assert dof >= 4 and chi2 < crit, (chi2, crit, dof)
    # the same draws against the distribution at temperature 0.7 do not fit: the test can tell them apart
    assert chi_square_ok([s.token_ids[0] for s in out[0]], (logits / 0.7).softmax(-1))[0] > crit


@pytest.mark.slow
def test_speculative_sampling_with_the_ngram_draft_stays_exact(smol_dir, hf):
    """Prompt-lookup drafts on a repetitive prompt (so the draft proposes often): greedy equals plain greedy,
    and the first token's distribution is still the model's (chi-square as above)."""
    from rsft.inputs.data.formats import prompt_ids
    from rsft.parts.sampling.transformers_engine import TransformersEngine

    model, tok = hf
    spec = TransformersEngine.from_path(str(smol_dir), draft="ngram", draft_tokens=4)
    plain = TransformersEngine.from_path(str(smol_dir))
    p = Prompt("rep", text="red green blue red green blue red green blue red green")
    assert spec.generate([p], 1, GREEDY)[0][0].token_ids == plain.generate([p], 1, GREEDY)[0][0].token_ids
    assert spec.speculative_stats["proposed"] > 0
    q = Prompt("spread", messages=({"role": "user", "content": "Give me one word."},))
    with torch.no_grad():
        probs = model(torch.tensor([prompt_ids(q, tok)])).logits[0, -1].double().softmax(-1)
    out = spec.generate([q], 3000, SamplingParams(temperature=1.0, max_new_tokens=2, seed=5))
    chi2, crit, dof = chi_square_ok([s.token_ids[0] for s in out[0]], probs)
    assert dof >= 4 and chi2 < crit, (chi2, crit, dof)


def test_int8_is_said_and_measured_against_float32(smol_dir, engines, hf):
    """CTranslate2 int8 quantizes the model; by how much, per token: the log-probability of float32's greedy
    tokens under each CT2 model (`score_batch`) against HF's own float32 forward pass.

    Measured on an AMD EPYC (AVX2): CT2 float32 within 9e-6 of HF on every token; int8 off by 0.15 to 0.21
    nats per token on average (0.76 at most), and its greedy text departs from float32's. The bounds: float32
    within 1e-3 (100x the float noise; AVX-512 kernels round differently, not by more), int8 between 0.02 (it
    really is quantized, not float32 said to be int8) and 1.0 nats per token on average (still this model)."""
    from rsft.inputs.data.formats import prompt_ids
    from rsft.parts.sampling.ctranslate2_engine import CTranslate2Engine

    model, tok = hf
    int8 = CTranslate2Engine.from_path(str(smol_dir), compute_type="int8")
    assert int8.precision.startswith("int8") and engines["ctranslate2"].precision == "float32"
    report = []
    for p, (s,) in zip(CHAT, engines["ctranslate2"].generate(CHAT, 1, GREEDY)):
        ids, n = prompt_ids(p, tok) + list(s.token_ids), len(s.token_ids)
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)  # [T, V]
        ref = [logp[len(ids) - n - 1 + k, ids[len(ids) - n + k]].item() for k in range(n)]
        gap = {}
        for name, engine in (("float32", engines["ctranslate2"]), ("int8", int8)):
            scored = engine._fresh_generator().score_batch([tok.convert_ids_to_tokens(ids)])[0]
            gap[name] = [abs(a - b) for a, b in zip(ref, list(scored.log_probs)[-n:], strict=True)]
        assert max(gap["float32"]) < 1e-3, (p.id, gap["float32"])
        mean8 = sum(gap["int8"]) / n
        assert 0.02 < mean8 < 1.0, (p.id, mean8)
        report.append(f"{p.id}: {mean8:.3f} mean, {max(gap['int8']):.3f} max over {n} tokens")
    print("int8 vs float32, |log p| per token:", "; ".join(report))
