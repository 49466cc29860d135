"""The CTranslate2 engine against transformers' own generate and forward pass, on a real tiny model."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

pytest.importorskip("ctranslate2")

from rsft.core.errors import RsftError  # noqa: E402
from rsft.core.records import Prompt  # noqa: E402
from rsft.inputs.modeling import load_model, load_tokenizer  # noqa: E402
from rsft.parts.sampling import ctranslate2_engine as ct2e  # noqa: E402
from rsft.parts.sampling.base import SamplingParams  # noqa: E402
from rsft.parts.sampling.ctranslate2_convert import checkpoint_hash  # noqa: E402
from rsft.parts.sampling.ctranslate2_engine import CTranslate2Engine, plan_batches  # noqa: E402
from tests.parts.sampling.stats import chi_square_ok, reference_probs, wide_nucleus_prompt  # noqa: E402


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("ct2cache")


@pytest.fixture(scope="module")
def engine(model_dir, cache):
    return CTranslate2Engine.from_path(str(model_dir), cache_dir=cache)


@pytest.fixture(scope="module")
def hf(model_dir):
    return load_model(str(model_dir)), load_tokenizer(str(model_dir))


def prompts(n: int, seed: int = 0) -> list[Prompt]:
    rng = random.Random(seed)
    out = []
    for i in range(n):  # varied lengths, so batches hold prompts longer than their shortest one
        text = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 7))) + "+" + str(rng.randint(0, 99)) + "="
        out.append(Prompt(f"p{i}", text=text))
    return out


def next_token_logits(hf, text: str) -> torch.Tensor:
    model, tok = hf
    with torch.no_grad():
        return model(torch.tensor([tok(text)["input_ids"]])).logits[0, -1].double()  # [V]


def test_small_models_run_in_float32(engine):
    assert engine.compute_type == "float32"
    assert ct2e.resolve_compute_type("auto", 25_000_000) == "int8"
    assert ct2e.resolve_compute_type("auto", 1_000_000) == "float32"


def test_greedy_equals_generate(engine, hf):
    model, tok = hf
    ps = prompts(16)
    ours = engine.generate(ps, 2, SamplingParams(temperature=0, max_new_tokens=12))
    for p, group in zip(ps, ours):
        enc = tok([p.text], return_tensors="pt")
        ref = model.generate(**enc, do_sample=False, max_new_tokens=12)[0, enc.input_ids.shape[1]:].tolist()
        if tok.eos_token_id in ref:
            ref = ref[: ref.index(tok.eos_token_id) + 1]
        assert [list(s.token_ids) for s in group] == [ref, ref], p.text
    reasons = {g[0].finish_reason for g in ours}
    assert reasons == {"stop", "length"}, "the fixture model should end some rows by EOS and some by length"


def test_groups_come_back_in_prompt_order_with_indexes(engine):
    ps = prompts(9)
    out = engine.generate(ps, 5, SamplingParams(max_new_tokens=6, seed=1))
    assert [g[0].prompt_id for g in out] == [p.id for p in ps]
    assert all([s.index for s in g] == list(range(5)) and {s.prompt_id for s in g} == {g[0].prompt_id} for g in out)
    assert engine.generate([], 3, SamplingParams()) == []


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_first_token_frequencies_match_softmax(engine, hf, temperature):
    """Chi-square goodness of fit of first tokens against softmax(logits / T) of the HF model."""
    p = Prompt("chi", text="12+34=")
    out = engine.generate([p], 3000, SamplingParams(temperature=temperature, max_new_tokens=1, seed=11))[0]
    probs = (next_token_logits(hf, p.text) / temperature).softmax(-1)
    chi2, crit, dof = chi_square_ok([s.token_ids[0] for s in out], probs)
    assert dof >= 3 and chi2 < crit, (chi2, crit, dof)


def test_logprob_is_the_teacher_forced_sum_under_the_raw_model(engine, hf):
    """At T=0.7 with top-p the logprob is still the raw model's (temperature 1, no truncation)."""
    model, tok = hf
    ps = prompts(4)
    for params in (SamplingParams(max_new_tokens=10, seed=5),
                   SamplingParams(temperature=0.7, top_p=0.9, max_new_tokens=10, seed=5)):
        for p, group in zip(ps, engine.generate(ps, 2, params)):
            prompt_ids = tok(p.text)["input_ids"]
            for s in group:
                with torch.no_grad():
                    logp = model(torch.tensor([prompt_ids + list(s.token_ids)])).logits.log_softmax(-1)[0]  # [T, V]
                expected = sum(logp[len(prompt_ids) - 1 + i, t].item() for i, t in enumerate(s.token_ids))
                assert s.logprob == pytest.approx(expected, abs=1e-3)


def test_entropy_is_that_of_the_distribution_sampled_from(engine, hf):
    model, tok = hf
    p = prompts(1)[0]
    params = SamplingParams(temperature=0.7, top_k=5, max_new_tokens=8, seed=2)
    for s in engine.generate([p], 3, params)[0]:
        prompt_ids = tok(p.text)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([prompt_ids + list(s.token_ids)])).logits[0]  # [T, V]
        steps = logits[len(prompt_ids) - 1: len(prompt_ids) - 1 + s.num_tokens]  # [t, V]
        probs = reference_probs(steps, temperature=0.7, top_k=5)  # [t, V], not rsft's own filter
        expected = float((-(probs * probs.clamp_min(1e-30).log()).sum(-1)).mean())
        assert s.entropy == pytest.approx(expected, abs=1e-3)


def test_entropy_is_none_when_not_measured(model_dir, cache):
    eng = CTranslate2Engine.from_path(str(model_dir), cache_dir=cache, entropy=False)
    s = eng.generate(prompts(1), 2, SamplingParams(max_new_tokens=4, seed=1))[0][0]
    assert s.entropy is None  # "not measured" (issue 9: was NaN, which is not JSON), never a 0.0


def test_top_k_one_is_greedy_and_top_p_restricts_support(engine, hf):
    ps = prompts(6)
    greedy = engine.generate(ps, 1, SamplingParams(temperature=0, max_new_tokens=10))
    topk = engine.generate(ps, 3, SamplingParams(temperature=1.0, top_k=1, max_new_tokens=10))
    for g, t in zip(greedy, topk):
        assert all(s.token_ids == g[0].token_ids for s in t)
    p = Prompt("tp", text="7+7=")
    out = engine.generate([p], 400, SamplingParams(temperature=1.0, top_p=0.5, max_new_tokens=1, seed=4))[0]
    probs = next_token_logits(hf, p.text).softmax(-1)
    order = probs.argsort(descending=True)
    allowed = set(order[: int((probs[order].cumsum(0) < 0.5).sum()) + 1].tolist())
    assert {s.token_ids[0] for s in out} <= allowed


@pytest.mark.parametrize("top_p, top_k", [(0.8, 0), (0.95, 4)])
def test_top_p_frequencies_match_the_renormalised_nucleus(engine, hf, top_p, top_k):
    """A nucleus of several tokens (not the greedy special case): their frequencies follow p / mass."""
    text, _ = wide_nucleus_prompt([f"{a}{b}+{c}=" for a in range(10) for b in range(10) for c in (1, 5)],
                                  lambda t: next_token_logits(hf, t), top_p, top_k)
    expected = reference_probs(next_token_logits(hf, text).view(1, -1), top_k=top_k, top_p=top_p)[0]
    out = engine.generate([Prompt("tp", text=text)], 3000,
                          SamplingParams(temperature=1.0, top_p=top_p, top_k=top_k, max_new_tokens=1, seed=9))[0]
    drawn = [s.token_ids[0] for s in out]
    assert set(drawn) <= set(expected.nonzero().flatten().tolist())
    chi2, crit, dof = chi_square_ok(drawn, expected)
    assert dof >= 2 and chi2 < crit, (chi2, crit, dof)
    assert chi_square_ok(drawn, next_token_logits(hf, text).softmax(-1))[0] > crit  # the unrenormalised softmax fails


def test_max_new_tokens_stop_strings_and_finish_reasons(engine):
    ps = prompts(8)
    short = engine.generate(ps, 2, SamplingParams(max_new_tokens=3, seed=2))
    assert all(s.num_tokens <= 3 for g in short for s in g)
    assert all(s.finish_reason == ("stop" if s.token_ids[-1] == 2 else "length") for g in short for s in g)
    assert all(s.finish_reason == "stop" or s.num_tokens == 3 for g in short for s in g)
    long = engine.generate(ps, 2, SamplingParams(max_new_tokens=12, seed=2))
    stop_char = next(s.text[1] for g in long for s in g if len(s.text) > 2)
    cut = engine.generate(ps, 2, SamplingParams(max_new_tokens=12, seed=2, stop=(stop_char,)))
    hits = 0
    for g in cut:
        for s in g:
            assert stop_char not in s.text
            full = engine.tokenizer.decode(list(s.token_ids), skip_special_tokens=True)
            if stop_char in full:  # the row ended at the token that completed the stop string
                hits += 1
                assert s.finish_reason == "stop" and full.endswith(stop_char) and s.text == full[:full.index(stop_char)]
    assert hits > 0


def test_same_call_same_samples_and_seed_matters(model_dir, cache, engine):
    ps = prompts(10)
    params = SamplingParams(max_new_tokens=8, seed=3, round=1)
    a = engine.generate(ps, 4, params)
    engine.generate(ps[:3], 2, SamplingParams(max_new_tokens=5, seed=9))  # draws in between change nothing
    fresh = CTranslate2Engine.from_path(str(model_dir), cache_dir=cache)
    assert engine.generate(ps, 4, params) == a == fresh.generate(ps, 4, params)
    b = engine.generate(ps, 4, SamplingParams(max_new_tokens=8, seed=3, round=2))
    assert [s.token_ids for g in a for s in g] != [s.token_ids for g in b for s in g]
    one_worker = CTranslate2Engine.from_path(str(model_dir), cache_dir=cache, inter_threads=1, intra_threads=2)
    assert one_worker.generate(ps, 4, params) == one_worker.generate(ps, 4, params)


def test_sampling_leaves_torch_thread_count_alone(engine):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)  # differs from the engine's intra_threads=1
        engine.generate(prompts(2), 2, SamplingParams(max_new_tokens=3, seed=6))
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_chat_prompts_use_the_chat_template(tmp_path, cache):
    from tests.conftest import make_model_dir

    path = make_model_dir(tmp_path / "m", alphabet="0123456789+=ua:\n")
    tok = load_tokenizer(str(path))
    # a template that writes its own BOS (Llama 3 / Gemma style): the engine must not add a second one,
    # so the chat prompt is exactly the plain prompt that the tokenizer gives a BOS
    tok.chat_template = "{{ bos_token }}{% for m in messages %}{{ m['role'][0] }}:{{ m['content'] }}\n{% endfor %}" \
                        "{% if add_generation_prompt %}a:{% endif %}"
    tok.save_pretrained(path)
    eng = CTranslate2Engine.from_path(str(path), cache_dir=cache)
    chat = Prompt("c", messages=({"role": "user", "content": "1+2="},))
    plain = Prompt("t", text="u:1+2=\na:")
    a, b = eng.generate([chat, plain], 1, SamplingParams(temperature=0, max_new_tokens=6))
    assert a[0].token_ids == b[0].token_ids


def test_conversion_is_cached_and_keyed_by_the_checkpoint(model_dir, tmp_path, monkeypatch):
    from tests.conftest import make_model_dir

    calls = []
    real = ct2e.ctranslate2.converters.TransformersConverter

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(ct2e.ctranslate2.converters, "TransformersConverter", counting)
    monkeypatch.setenv("RSFT_CACHE", str(tmp_path / "rsft-cache"))
    first = CTranslate2Engine.from_path(str(model_dir))
    second = CTranslate2Engine.from_path(str(model_dir))
    assert len(calls) == 1 and first.model_dir == second.model_dir
    assert first.model_dir.parent == tmp_path / "rsft-cache" / "ct2"
    assert [p.name for p in first.model_dir.parent.iterdir()] == [first.model_dir.name]  # no temp dirs left
    other = make_model_dir(tmp_path / "other", seed=1)  # same shapes and files, other weights
    assert checkpoint_hash(other, "float32") != checkpoint_hash(model_dir, "float32")
    assert checkpoint_hash(model_dir, "int8") != checkpoint_hash(model_dir, "float32")
    CTranslate2Engine.from_path(str(other))
    assert len(calls) == 2


def test_a_lora_adapter_is_merged_onto_its_base_before_conversion(model_dir, tmp_path, cache, hf):
    from peft import LoraConfig, get_peft_model

    model, tok = hf
    peft_model = get_peft_model(load_model(str(model_dir)), LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                                       init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    tok.save_pretrained(tmp_path / "adapter")
    merged = peft_model.merge_and_unload()
    eng = CTranslate2Engine.from_path(str(tmp_path / "adapter"), cache_dir=cache)
    assert eng.model_dir.name != checkpoint_hash(model_dir, "float32")
    p = prompts(1)[0]
    s = eng.generate([p], 1, SamplingParams(temperature=0, max_new_tokens=8))[0][0]
    enc = tok([p.text], return_tensors="pt")
    ref = merged.generate(**enc, do_sample=False, max_new_tokens=8)[0, enc.input_ids.shape[1]:].tolist()
    assert list(s.token_ids) == (ref[: ref.index(2) + 1] if 2 in ref else ref)


def test_a_failed_conversion_leaves_no_cache_entry(model_dir, tmp_path, monkeypatch):
    class Crashing:
        def __init__(self, *args, **kwargs):
            pass

        def convert(self, out, **kwargs):
            Path(out).mkdir()
            (Path(out) / "model.bin").write_bytes(b"half")
            raise KeyboardInterrupt

    monkeypatch.setattr(ct2e.ctranslate2.converters, "TransformersConverter", Crashing)
    with pytest.raises(KeyboardInterrupt):
        ct2e.convert_cached(model_dir, "float32", tmp_path / "c")
    assert list((tmp_path / "c").iterdir()) == []


def test_a_tokenizer_that_does_not_match_the_conversion_is_refused(engine, tmp_path):
    from rsft.inputs.tasks.tiny_model import char_tokenizer

    with pytest.raises(RsftError, match="vocabulary does not match"):
        CTranslate2Engine(engine.model_dir, char_tokenizer("9876543210+="), [2])


def test_plan_batches_sorts_splits_by_budget_and_fills_workers():
    lengths = [9, 3, 1, 7, 7, 12, 5, 1, 20, 4]
    waves = plan_batches(lengths, n=4, max_new_tokens=10, max_batch_tokens=200, workers=2)
    batches = [b for w in waves for b in w]
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(w) <= 2 for w in waves)
    for b in batches:
        assert [lengths[i] for i in b] == sorted(lengths[i] for i in b)
        assert len(b) == 1 or len(b) * 4 * (max(lengths[i] for i in b) + 10) <= 200
        assert all(lengths[i] == 1 for i in b) or all(lengths[i] > 1 for i in b)
    assert plan_batches([5] * 16, 8, 32, 32768, 2) == [[list(range(8)), list(range(8, 16))]]
    assert plan_batches([5, 6], 8, 32, 32768, 4) == [[[0], [1]]]
