"""The cached sampling loop against transformers' own generate and forward pass, on a real tiny model."""

from __future__ import annotations

import random

import pytest
import torch

from rsft.core.records import Prompt
from rsft.parts.sampling.base import SamplingParams
from rsft.parts.sampling.transformers_engine import TransformersEngine
from tests.parts.sampling.stats import chi_square_ok, reference_probs, wide_nucleus_prompt


@pytest.fixture(scope="module")
def engine(model_dir):
    return TransformersEngine.from_path(str(model_dir))


def prompts(n: int, seed: int = 0) -> list[Prompt]:
    rng = random.Random(seed)
    out = []
    for i in range(n):  # varied lengths so left padding matters
        text = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 7))) + "+" + str(rng.randint(0, 99)) + "="
        out.append(Prompt(f"p{i}", text=text))
    return out


def test_greedy_equals_generate(engine):
    ps = prompts(16)
    ours = engine.generate(ps, 1, SamplingParams(temperature=0, max_new_tokens=12))
    tok = engine.tokenizer
    for p, group in zip(ps, ours):
        enc = tok([p.text], return_tensors="pt")
        ref = engine.model.generate(**enc, do_sample=False, max_new_tokens=12)[0, enc.input_ids.shape[1]:].tolist()
        if tok.eos_token_id in ref:
            ref = ref[: ref.index(tok.eos_token_id) + 1]
        assert list(group[0].token_ids) == ref, p.text
    reasons = {g[0].finish_reason for g in ours}
    assert reasons == {"stop", "length"}, "the fixture model should end some rows by EOS and some by length"


def test_samples_do_not_depend_on_batch_composition(engine):
    ps = prompts(12)
    params = SamplingParams(temperature=1.0, max_new_tokens=10, seed=3, round=1)
    whole = engine.generate(ps, 4, params)
    part = engine.generate(ps[5:7], 4, params)
    assert [[s.token_ids for s in g] for g in part] == [[s.token_ids for s in g] for g in whole[5:7]]


def test_seed_and_round_change_the_draws(engine):
    ps = prompts(4)
    a = engine.generate(ps, 4, SamplingParams(max_new_tokens=10, seed=1, round=0))
    b = engine.generate(ps, 4, SamplingParams(max_new_tokens=10, seed=1, round=1))
    assert [s.token_ids for g in a for s in g] != [s.token_ids for g in b for s in g]


def test_top_k_one_is_greedy(engine):
    ps = prompts(6)
    greedy = engine.generate(ps, 1, SamplingParams(temperature=0, max_new_tokens=10))
    topk = engine.generate(ps, 3, SamplingParams(temperature=1.0, top_k=1, max_new_tokens=10))
    for g, t in zip(greedy, topk):
        assert all(s.token_ids == g[0].token_ids for s in t)


def test_logprob_is_the_teacher_forced_sum(engine):
    p = prompts(1)[0]
    s = engine.generate([p], 1, SamplingParams(temperature=1.0, max_new_tokens=10, seed=5))[0][0]
    tok = engine.tokenizer
    prompt_ids = tok(p.text)["input_ids"]
    ids = torch.tensor([prompt_ids + list(s.token_ids)])
    with torch.no_grad():
        logp = engine.model(ids).logits.log_softmax(-1)[0]  # [T, V]
    expected = sum(logp[len(prompt_ids) - 1 + i, t].item() for i, t in enumerate(s.token_ids))
    assert s.logprob == pytest.approx(expected, abs=1e-3)
    assert s.entropy > 0


def test_max_new_tokens_and_stop_strings(engine):
    ps = prompts(8)
    out = engine.generate(ps, 2, SamplingParams(max_new_tokens=3, seed=2))
    assert all(s.num_tokens <= 3 for g in out for s in g)
    long = engine.generate(ps, 2, SamplingParams(max_new_tokens=12, seed=2))
    stop_char = next(s.text[1] for g in long for s in g if len(s.text) > 2)
    cut = engine.generate(ps, 2, SamplingParams(max_new_tokens=12, seed=2, stop=(stop_char,)))
    for g in cut:
        for s in g:
            assert stop_char not in s.text


def test_first_token_frequencies_match_softmax(engine):
    """Chi-square goodness of fit of first tokens at T=1 against the model's softmax."""
    p = Prompt("chi", text="12+34=")
    n = 3000
    out = engine.generate([p], n, SamplingParams(temperature=1.0, max_new_tokens=1, seed=11))[0]
    tok = engine.tokenizer
    with torch.no_grad():
        probs = engine.model(torch.tensor([tok(p.text)["input_ids"]])).logits[0, -1].softmax(-1)  # [V]
    chi2, crit, dof = chi_square_ok([s.token_ids[0] for s in out], probs.double())  # rare tokens pooled
    assert chi2 < crit, (chi2, crit, dof)


def test_top_p_restricts_support(engine):
    p = Prompt("tp", text="7+7=")
    out = engine.generate([p], 400, SamplingParams(temperature=1.0, top_p=0.5, max_new_tokens=1, seed=4))[0]
    tok = engine.tokenizer
    with torch.no_grad():
        probs = engine.model(torch.tensor([tok(p.text)["input_ids"]])).logits[0, -1].softmax(-1)
    order = probs.argsort(descending=True)
    mass = probs[order].cumsum(0)
    allowed = set(order[: int((mass < 0.5).sum()) + 1].tolist())
    assert {s.token_ids[0] for s in out} <= allowed


@pytest.mark.parametrize("top_p, top_k", [(0.8, 0), (0.95, 4)])
def test_top_p_frequencies_match_the_renormalised_nucleus(engine, top_p, top_k):
    """A nucleus of several tokens (not the greedy special case): their frequencies follow p / mass."""
    tok = engine.tokenizer

    def next_logits(text):
        with torch.no_grad():
            return engine.model(torch.tensor([tok(text)["input_ids"]])).logits[0, -1]  # [V]

    text, _ = wide_nucleus_prompt([f"{a}{b}+{c}=" for a in range(10) for b in range(10) for c in (1, 5)],
                                  next_logits, top_p, top_k)
    expected = reference_probs(next_logits(text).view(1, -1), top_k=top_k, top_p=top_p)[0]
    assert int((expected > 0).sum()) >= 3
    out = engine.generate([Prompt("tp", text=text)], 3000,
                          SamplingParams(temperature=1.0, top_p=top_p, top_k=top_k, max_new_tokens=1, seed=9))[0]
    drawn = [s.token_ids[0] for s in out]
    assert set(drawn) <= set(expected.nonzero().flatten().tolist())
    chi2, crit, dof = chi_square_ok(drawn, expected)
    assert dof >= 2 and chi2 < crit, (chi2, crit, dof)
    # a wrong nucleus (plain softmax, no renormalisation) is rejected by the same test
    assert chi_square_ok(drawn, next_logits(text).double().softmax(-1))[0] > crit


def test_chat_prompts_use_the_chat_template(tmp_path):
    from transformers import AutoTokenizer

    from tests.conftest import make_model_dir

    path = make_model_dir(tmp_path / "m", alphabet="0123456789+=ua:\n")
    tok = AutoTokenizer.from_pretrained(path)
    # a template that writes its own BOS (Llama 3 / Gemma style): the engine must not add a second one,
    # so the chat prompt is exactly the plain prompt that the tokenizer gives a BOS
    tok.chat_template = "{{ bos_token }}{% for m in messages %}{{ m['role'][0] }}:{{ m['content'] }}\n{% endfor %}" \
                        "{% if add_generation_prompt %}a:{% endif %}"
    tok.save_pretrained(path)
    eng = TransformersEngine.from_path(str(path))
    chat = Prompt("c", messages=({"role": "user", "content": "1+2="},))
    plain = Prompt("t", text="u:1+2=\na:")
    a = eng.generate([chat], 1, SamplingParams(temperature=0, max_new_tokens=6))[0][0]
    b = eng.generate([plain], 1, SamplingParams(temperature=0, max_new_tokens=6))[0][0]
    assert a.token_ids == b.token_ids


def test_threads_apply_while_sampling_and_are_restored(engine, monkeypatch):
    seen = []
    real_generate = engine._generate
    monkeypatch.setattr(engine, "_generate", lambda *a: (seen.append(torch.get_num_threads()), real_generate(*a))[1])
    monkeypatch.setattr(engine, "threads", 1)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        engine.generate([Prompt("p", text="12+3=")], 2, SamplingParams(max_new_tokens=3))
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
