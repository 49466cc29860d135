"""The process-reward-model scorer: steps split, scored at their last token (or per prefix), reduced.

The main test trains a tiny token-classification PRM on the real SmolLM2 tokenizer (its chat template
included) so that the steps "right", "wrong" and "okay" get known probabilities, then checks that each
reduction ranks two completions the way it should, through the selection chain too. The others check
positions and prefixes against a direct forward pass on a character tokenizer (one token per character).
"""

from __future__ import annotations

import math

import pytest
import torch
from transformers import (AutoTokenizer, LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification,
                          LlamaForTokenClassification)

from rsft.core.errors import ConfigError, RsftError
from rsft.core.records import Group, Prompt, Sample
from rsft.inputs.tasks.tiny_model import char_tokenizer
from rsft.parts.scoring.prm import split_steps
from rsft.parts.scoring.reward_model import render
from rsft.parts.scoring.spec import build_scorer
from rsft.parts.selection import build_rule, select

ALPHABET = "abcxyz q?\n|"


def tiny_config(vocab: int, pad: int, num_labels: int, layers: int = 1) -> LlamaConfig:
    return LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                       num_attention_heads=2, num_key_value_heads=2, num_labels=num_labels, pad_token_id=pad,
                       max_position_embeddings=128)


def save(model, tok, path):
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def char_dirs(tmp_path_factory):
    """Random char-level PRMs: a token classifier and a sequence classifier, both with two labels."""
    tok = char_tokenizer(ALPHABET)
    root = tmp_path_factory.mktemp("prm")
    torch.manual_seed(0)
    cfg = tiny_config(len(tok), tok.pad_token_id, 2)
    return {"token": save(LlamaForTokenClassification(cfg), tok, root / "token"),
            "sequence": save(LlamaForSequenceClassification(cfg), tok, root / "sequence")}


def prm(path, **kwargs):
    return build_scorer({"name": "prm", "kwargs": {"path": str(path), **kwargs}})


def test_steps_are_split_at_the_separator_and_blank_ones_dropped():
    text = "ab\n\n  c \nxyz\n"
    assert [text[s:e] for s, e in split_steps(text, "\n")] == ["ab", "c", "xyz"]
    tagged = "a|b||c"
    assert [tagged[s:e] for s, e in split_steps(tagged, "||")] == ["a|b", "c"]


def test_token_kind_reads_each_step_at_its_last_token(char_dirs):
    from transformers import AutoModelForTokenClassification

    path = char_dirs["token"]
    model = AutoModelForTokenClassification.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    prompts, completions = ["q?", "a", "xyz?"], ["ab\nc\nxyz", "b \n\nzz", "c"]
    out = prm(path, reduce="last", batch_size=2)(prompts=prompts, completions=completions)
    for p, c, s in zip(prompts, completions, out):
        text = p + c
        with torch.no_grad():
            probs = model(**tok(text, return_tensors="pt")).logits[0].softmax(-1)[:, 1]  # [T]
        # BOS then one token per character: the character at index i is token i + 1
        ends = [i for i, ch in enumerate(text) if i >= len(p) and ch.strip() and text[i + 1 : i + 2] in ("", "\n", " ")]
        ends = [i for i in ends if text[i + 1 : i + 2] != " " or text[i + 2 : i + 3] in ("", "\n")]
        want = [probs[i + 1].item() for i in ends]
        assert s.parts["steps"] == len(want)
        assert [s.parts[f"step_{k}"] for k in range(len(want))] == pytest.approx(want, abs=1e-5)
        assert s.value == pytest.approx(want[-1], abs=1e-5)
    assert out[0].parts["steps"] == 3 and out[1].parts["steps"] == 2


def test_sequence_kind_scores_each_prefix(char_dirs):
    from transformers import AutoModelForSequenceClassification

    path = char_dirs["sequence"]
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    out = prm(path, kind="sequence", reduce="product", batch_size=2)(prompts=["q?", "x"], completions=["ab\nc\nxyz", "zz"])
    with torch.no_grad():
        want = [model(**tok(t, return_tensors="pt")).logits[0].softmax(-1)[1].item()
                for t in ["q?ab", "q?ab\nc", "q?ab\nc\nxyz"]]
    assert [out[0].parts[f"step_{k}"] for k in range(3)] == pytest.approx(want, abs=1e-5)
    assert out[0].value == pytest.approx(math.prod(want), abs=1e-5)
    assert out[1].parts["steps"] == 1


def test_no_steps_scores_zero_and_too_long_is_an_error(char_dirs):
    out = prm(char_dirs["token"], max_length=12)(prompts=["q?"] * 3, completions=["", " \n\n", "ab\nc\nxyz\nabc"])
    assert [(s.value, s.parts, s.error) for s in out[:2]] == [(0.0, {"steps": 0.0}, None)] * 2
    assert out[2].value is None and "over max_length 12" in out[2].error


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"reduce": "mean"}, r"key 'scorer\.kwargs\.reduce': expected one of 'min', 'last', 'product', got 'mean'"),
    ({"kind": "step"}, r"key 'scorer\.kwargs\.kind': expected one of 'token', 'sequence'"),
    ({"kind": "sequence"}, r"key 'scorer\.kwargs\.kind': .* is a LlamaForTokenClassification; kind 'sequence'"),
    ({"separator": ""}, r"key 'scorer\.kwargs\.separator': must not be empty"),
])
def test_bad_options_are_one_line_errors_naming_the_key(char_dirs, kwargs, match):
    with pytest.raises(ConfigError, match=match) as e:
        prm(char_dirs["token"], **kwargs)
    assert "\n" not in str(e.value)


def test_bad_models_are_refused_before_scoring(tmp_path):
    with pytest.raises(ConfigError, match="needs option 'path'"):
        build_scorer({"name": "prm", "kwargs": {}})
    with pytest.raises(RsftError, match=r"key 'scorer\.kwargs\.path'.*no such directory"):
        prm(tmp_path / "nope")
    tok = char_tokenizer(ALPHABET)
    three = save(LlamaForTokenClassification(tiny_config(len(tok), tok.pad_token_id, 3)), tok, tmp_path / "three")
    with pytest.raises(ConfigError, match=r"key 'scorer\.kwargs\.path'.* has num_labels=3"):
        prm(three)
    lm = save(LlamaForCausalLM(tiny_config(len(tok), tok.pad_token_id, 1)), tok, tmp_path / "lm")
    with pytest.raises(ConfigError, match="is a LlamaForCausalLM; kind 'token' needs a"):
        prm(lm)


WORDS = {"right": 1.0, "wrong": 0.0, "okay": 0.6}
A, B = "right\nwrong\nright", "right\nright\nokay"
PROMPT = "Solve the puzzle."


@pytest.fixture(scope="module")
def trained_prm(smol_dir, tmp_path_factory):
    """A 2-layer token-classification PRM on SmolLM2's tokenizer, trained (BCE, soft labels, at each step's
    last token found by token id, not by the scorer's offsets) until right ~1, wrong ~0 and okay ~0.6."""
    import itertools

    tok = AutoTokenizer.from_pretrained(smol_dir)
    last_id = {w: tok("\n" + w, add_special_tokens=False)["input_ids"][-1] for w in WORDS}  # okay is 2 tokens
    texts, labels = [], []
    for n in (1, 2, 3):
        for steps in itertools.product(WORDS, repeat=n):
            for prompt in (PROMPT, "What next?"):
                texts.append(render(tok, prompt, "\n".join(steps)))
                labels.append([WORDS[w] for w in steps])
    enc = tok(texts, padding=True, add_special_tokens=False, return_tensors="pt")
    ids = enc["input_ids"]  # [N, T]
    mask = torch.isin(ids, torch.tensor(list(last_id.values()))) & enc["attention_mask"].bool()  # [N, T]
    assert mask.sum(1).tolist() == [len(row) for row in labels]  # each step's last token, nowhere else
    target = torch.zeros(ids.shape)
    target[mask] = torch.tensor([p for row in labels for p in row])
    torch.manual_seed(0)
    model = LlamaForTokenClassification(tiny_config(len(tok), tok.pad_token_id, 1, layers=2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        logits = model(**enc).logits[..., 0]  # [N, T]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits[mask], target[mask])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return save(model.eval(), tok, tmp_path_factory.mktemp("trained") / "prm")


def test_reductions_rank_steps_as_they_should(trained_prm):
    scores = {r: prm(trained_prm, reduce=r)(prompts=[PROMPT, PROMPT], completions=[A, B])
              for r in ("min", "last", "product")}
    a, b = scores["min"]
    step = {"right": a.parts["step_0"], "wrong": a.parts["step_1"], "okay": b.parts["step_2"]}
    assert step["right"] > 0.85 and step["wrong"] < 0.15 and 0.45 < step["okay"] < 0.75, step
    assert a.parts["step_2"] > 0.85 and b.parts["step_1"] > 0.85
    assert a.parts["steps"] == b.parts["steps"] == 3
    for r, (sa, sb) in scores.items():
        assert sa.parts == a.parts and sb.parts == b.parts, r  # the reduction changes only the value
    assert a.value == pytest.approx(step["wrong"]) and b.value == pytest.approx(step["okay"])
    assert scores["min"][1].value > scores["min"][0].value  # B's weakest step beats A's wrong one
    last_a, last_b = scores["last"]
    assert last_a.value == pytest.approx(a.parts["step_2"]) and last_a.value > last_b.value  # A ends right
    for s in scores["product"]:
        assert s.value == pytest.approx(s.parts["step_0"] * s.parts["step_1"] * s.parts["step_2"], rel=1e-6)
    assert scores["product"][1].value > scores["product"][0].value

    # through selection: best-of-2 keeps B under min and A under last
    group = Group(Prompt("p", text=PROMPT), (Sample("p", 0, A), Sample("p", 1, B)))
    for r, want in (("min", B), ("last", A)):
        kept = select([group.with_scores(scores[r])], [build_rule({"rule": "top_k", "k": 1})]).groups[0]
        assert [s.text for s in kept.samples] == [want], r
