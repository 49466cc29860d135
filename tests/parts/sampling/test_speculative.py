"""Speculative sampling in the transformers engine: the output is the model's distribution, whatever the draft.

The reference distributions are computed here with plain forward passes of the model and the filtering
written in tests/parts/sampling/stats.py, not with rsft's sampling code.
"""

from __future__ import annotations

import random

import pytest
import torch
from transformers import AutoModelForCausalLM

from rsft.core.errors import ConfigError, RsftError
from rsft.core.records import Prompt
from rsft.parts.sampling import speculative
from rsft.parts.sampling.base import SamplingParams
from rsft.parts.sampling.engines import check_engine_options
from rsft.parts.sampling.transformers_engine import TransformersEngine
from tests.parts.sampling.stats import chi_square_ok, reference_probs

N = 4000  # samples per distribution test
SETTINGS = [(1.0, 0, 1.0), (0.8, 6, 0.9)]  # (temperature, top_k, top_p): each nucleus holds several tokens


@pytest.fixture(scope="module")
def draft_dir(model_dir, tmp_path_factory):
    """The fixture model with noise added to every weight matrix: a draft that agrees with it on some tokens
    and clearly not on others (about 40-60% of the mass in common), so both acceptances and rejections are
    frequent."""
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.add_(torch.randn(p.shape, generator=gen) * 0.08)
    path = tmp_path_factory.mktemp("draft") / "model"
    model.save_pretrained(path)
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(model_dir).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def engines(model_dir, draft_dir):
    return {"plain": TransformersEngine.from_path(str(model_dir)),
            "draft": TransformersEngine.from_path(str(model_dir), draft=str(draft_dir), draft_tokens=2),
            "ngram": TransformersEngine.from_path(str(model_dir), draft="ngram", draft_tokens=3)}


def prompts(n: int, seed: int = 0) -> list[Prompt]:
    rng = random.Random(seed)
    return [Prompt(f"p{i}", text="".join(rng.choice("0123456789+") for _ in range(rng.randint(1, 9))) + "=")
            for i in range(n)]


def exact_joint(model, tok, text: str, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """P(first two tokens) [V * (V+1)] by enumeration; a first token that is EOS pairs with the extra cell V."""
    ids = tok(text)["input_ids"]
    vocab = model.config.vocab_size

    def next_probs(seq):
        with torch.no_grad():
            logits = model(torch.tensor([seq])).logits[0, -1].view(1, -1)
        return reference_probs(logits, temperature, top_k, top_p)[0]  # [V]

    first = next_probs(ids)
    joint = torch.zeros(vocab, vocab + 1, dtype=torch.float64)
    for t1 in first.nonzero().flatten().tolist():
        if t1 == tok.eos_token_id:
            joint[t1, vocab] = first[t1]
        else:
            joint[t1, :vocab] = first[t1] * next_probs(ids + [t1])
    return joint.flatten()


def cells(samples, vocab: int) -> list[int]:
    return [s.token_ids[0] * (vocab + 1) + (s.token_ids[1] if s.num_tokens > 1 else vocab) for s in samples]


def joint_fit(engine, text: str, setting, seed: int = 7) -> tuple[float, float, int]:
    temperature, top_k, top_p = setting
    params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, max_new_tokens=3, seed=seed)
    out = engine.generate([Prompt("chi", text=text)], N, params)[0]
    expected = exact_joint(engine.model, engine.tokenizer, text, temperature, top_k, top_p)
    return chi_square_ok(cells(out, engine.model.config.vocab_size), expected)


def reset(engine):
    engine.speculative_stats.update(dict.fromkeys(engine.speculative_stats, 0))
    return engine.speculative_stats


@pytest.mark.parametrize("setting", SETTINGS)
def test_joint_of_the_first_two_tokens_is_the_models(engines, setting):
    stats = reset(engines["draft"])
    chi2, crit, dof = joint_fit(engines["draft"], "12+34=", setting)
    assert dof >= 8 and chi2 < crit, (chi2, crit, dof)
    # both branches ran often: accepted draft tokens, and draws from the residual
    assert 0.2 < stats["accepted"] / stats["tested"] < 0.8, stats
    plain = joint_fit(engines["plain"], "12+34=", setting)  # the reference is right for plain sampling too
    assert plain[0] < plain[1], plain


@pytest.mark.parametrize("rule, broken", [
    ("residual", lambda p, q: p),  # resample from p after a rejection
    ("accept_prob", lambda p, q: torch.where(p > 0, (q / p.clamp_min(1e-30)).clamp(max=1.0), torch.zeros_like(p))),
])
def test_a_wrong_rule_is_caught(engines, monkeypatch, rule, broken):
    monkeypatch.setattr(speculative, rule, broken)
    chi2, crit, dof = joint_fit(engines["draft"], "12+34=", SETTINGS[0])
    assert chi2 > 2 * crit, (chi2, crit, dof)


NGRAM_TEXT = "6026026"  # its last n-grams occurred before, and the model gives the guesses middling probabilities


def test_ngram_draft_keeps_the_models_distribution(engines):
    stats = reset(engines["ngram"])
    chi2, crit, dof = joint_fit(engines["ngram"], NGRAM_TEXT, SETTINGS[0])
    assert dof >= 5 and chi2 < crit, (chi2, crit, dof)
    assert stats["tested"] > N and 0.1 < stats["accepted"] / stats["tested"] < 0.9, stats


def test_ngram_with_a_wrong_residual_is_caught(engines, monkeypatch):
    monkeypatch.setattr(speculative, "residual", lambda p, q: p)
    chi2, crit, dof = joint_fit(engines["ngram"], NGRAM_TEXT, SETTINGS[0])
    assert chi2 > 2 * crit, (chi2, crit, dof)


def test_ngram_proposes_what_followed_the_last_earlier_occurrence():
    draft = speculative.NgramDraft()
    assert draft.guess(0, [5, 1, 2, 3, 9, 8, 1, 2, 3, 7, 6, 1, 2, 3], 3) == [7, 6, 1]  # the most recent (1, 2, 3)
    assert draft.guess(1, [4, 2, 9, 7, 2], 4) == [9, 7, 2]  # only the 1-gram (2) occurred before; what follows it
    assert draft.guess(2, [4, 5, 6], 2) == []


@pytest.mark.parametrize("kind", ["draft", "ngram"])
def test_greedy_is_plain_greedy(engines, kind):
    ps = prompts(16)
    params = SamplingParams(temperature=0, max_new_tokens=12)
    plain = engines["plain"].generate(ps, 1, params)
    spec = engines[kind].generate(ps, 1, params)
    for a, b in zip(plain, spec):
        assert a[0].token_ids == b[0].token_ids and a[0].finish_reason == b[0].finish_reason
        assert a[0].logprob == pytest.approx(b[0].logprob, abs=1e-4)
        assert a[0].entropy == pytest.approx(b[0].entropy, abs=1e-4)
    assert {g[0].finish_reason for g in spec} == {"stop", "length"}


@pytest.mark.parametrize("kind", ["draft", "ngram"])
def test_samples_are_reproducible_and_do_not_depend_on_the_batch(engines, kind):
    ps = prompts(12)
    params = SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=10, seed=3, round=1)
    whole = engines[kind].generate(ps, 4, params)
    again = engines[kind].generate(ps, 4, params)
    part = engines[kind].generate(ps[5:7], 4, params)
    ids = [[s.token_ids for s in g] for g in whole]
    assert ids == [[s.token_ids for s in g] for g in again]
    assert ids[5:7] == [[s.token_ids for s in g] for g in part]
    other = engines[kind].generate(ps, 4, SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=10, seed=4))
    assert ids != [[s.token_ids for s in g] for g in other]


def test_max_new_tokens_eos_and_stop_strings(engines):
    spec, ps = engines["draft"], prompts(8)
    for m in (1, 2, 5):
        out = spec.generate(ps, 4, SamplingParams(max_new_tokens=m, seed=2))
        assert all(s.num_tokens <= m for g in out for s in g)
        assert all(s.num_tokens == m for g in out for s in g if s.finish_reason == "length")
    eos = spec.tokenizer.eos_token_id
    long = spec.generate(ps, 4, SamplingParams(max_new_tokens=12, seed=2))
    for s in (s for g in long for s in g):
        assert eos not in s.token_ids[:-1] and (s.token_ids[-1] == eos) == (s.finish_reason == "stop")
    stop_char = next(s.text[1] for g in long for s in g if len(s.text) > 2)
    cut = spec.generate(ps, 4, SamplingParams(max_new_tokens=12, seed=2, stop=(stop_char,)))
    assert all(stop_char not in s.text for g in cut for s in g)


def test_logprob_is_the_teacher_forced_sum(engines):
    spec = engines["draft"]
    p = prompts(1)[0]
    for s in spec.generate([p], 4, SamplingParams(temperature=1.0, max_new_tokens=10, seed=5))[0]:
        ids = spec.tokenizer(p.text)["input_ids"]
        with torch.no_grad():
            logp = spec.model(torch.tensor([ids + list(s.token_ids)])).logits.log_softmax(-1)[0]  # [T, V]
        expected = sum(logp[len(ids) - 1 + i, t].item() for i, t in enumerate(s.token_ids))
        assert s.logprob == pytest.approx(expected, abs=1e-3)


def test_options_are_checked_when_the_config_loads(tmp_path, draft_dir):
    check_engine_options("transformers", {"draft": str(draft_dir), "draft_tokens": 3})
    check_engine_options("transformers", {"draft": "ngram"})
    cases = [({"draft": str(tmp_path / "nope")}, "sampling.engine_options.draft': "),
             ({"draft": str(tmp_path)}, "no config.json"),
             ({"draft": "ngram", "draft_tokens": 0}, "sampling.engine_options.draft_tokens': expected an int >= 1"),
             ({"draft": "ngram", "draft_tokens": "4"}, "sampling.engine_options.draft_tokens': expected int"),
             ({"draft_tokens": 4}, "only with a draft")]
    for options, message in cases:
        with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")) as e:
            check_engine_options("transformers", options)
        assert "\n" not in str(e.value)


def test_a_draft_with_another_vocabulary_is_a_one_line_error(tmp_path, model_dir):
    from tests.conftest import make_model_dir

    other = make_model_dir(tmp_path / "other", alphabet="0123456789+-")
    with pytest.raises(RsftError, match=r"key 'sampling\.engine_options\.draft': the draft's tokenizer") as e:
        TransformersEngine.from_path(str(model_dir), draft=str(other))
    assert "\n" not in str(e.value)
