"""Tokenizers and embeddings that disagree in size, both ways (real checkpoints do): engines work on the ids
both share, say what is left out in one line, never sample a row no token decodes to, and refuse a prompt
holding a token the model has no row for. Tiny models built from config, each with a tokenizer built for
the case."""

from __future__ import annotations

import pytest
import torch

from rsft.core.config import TinyModelConfig
from rsft.core.errors import RsftError
from rsft.core.records import Prompt
from rsft.inputs.tasks.tiny_model import char_tokenizer, tiny_llama
from rsft.parts.sampling.base import SamplingParams

ENGINES = ["transformers", "ctranslate2"]
PROMPT = Prompt("p", text="12+3=")


def build(name, path):
    from rsft.parts.sampling.ctranslate2_engine import CTranslate2Engine
    from rsft.parts.sampling.transformers_engine import TransformersEngine

    if name == "transformers":
        return TransformersEngine.from_path(str(path))
    return CTranslate2Engine.from_path(str(path), compute_type="float32", cache_dir=path.parent / "ct2")


@pytest.fixture
def padded_embedding(tmp_path):
    """An embedding with 6 rows past the tokenizer's 16 tokens, and those rows made the most likely output
    (scaled copies of the hidden state's direction), so an engine that did not leave them out would draw
    them nearly every time."""
    tok = char_tokenizer("0123456789+=")
    model = tiny_llama(tok, TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, max_position_embeddings=32))
    n = len(tok)
    model.resize_token_embeddings(n + 6)
    with torch.no_grad():
        ids = tok(PROMPT.text, return_tensors="pt")["input_ids"]
        hidden = model.model(ids).last_hidden_state[0, -1]  # [H]
        model.get_output_embeddings().weight[n:] = 50 * hidden / hidden.norm()
        assert int(model(ids).logits[0, -1].argmax()) >= n  # the padded rows do dominate
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    return tmp_path / "m", n


@pytest.mark.parametrize("name", ENGINES)
def test_rows_past_the_tokenizer_are_never_sampled(padded_embedding, name, capsys):
    path, n = padded_embedding
    engine = build(name, path)
    err = capsys.readouterr().err
    assert "6 embedding rows past the tokenizer's 16 tokens" in err and len(
        [line for line in err.splitlines() if "embedding rows" in line]) == 1
    out = engine.generate([PROMPT], 64, SamplingParams(temperature=1.0, max_new_tokens=4, seed=3))
    assert all(t < n for s in out[0] for t in s.token_ids)
    (g,), = engine.generate([PROMPT], 1, SamplingParams(temperature=0, max_new_tokens=4))
    assert all(t < n for t in g.token_ids)


@pytest.fixture
def tokens_past_the_embedding(tmp_path):
    """A tokenizer with two special tokens past the model's last embedding row (16 rows, 18 tokens)."""
    tok = char_tokenizer("0123456789+=")
    model = tiny_llama(tok, TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, max_position_embeddings=32))
    model.save_pretrained(tmp_path / "m")
    tok.add_special_tokens({"additional_special_tokens": ["<tool>", "<think>"]})
    assert len(tok) == model.config.vocab_size + 2
    tok.save_pretrained(tmp_path / "m")
    return tmp_path / "m"


@pytest.mark.parametrize("name", ENGINES)
def test_tokens_past_the_embedding_are_said_and_refused_in_prompts(tokens_past_the_embedding, name, capsys):
    engine = build(name, tokens_past_the_embedding)  # CTranslate2 refused this before ("first difference at id None")
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if "past the model's 16 embedding rows" in line]
    assert len(said) == 1 and "<tool>" in said[0] and "never emit" in said[0]
    (s,), = engine.generate([PROMPT], 1, SamplingParams(temperature=0, max_new_tokens=4))
    assert s.token_ids and all(t < 16 for t in s.token_ids)
    with pytest.raises(RsftError, match=r"prompt 'x': token id 16 \(<tool>\) is past the model's 16 embedding rows"):
        engine.generate([Prompt("x", text="1<tool>2")], 1, SamplingParams(temperature=0, max_new_tokens=2))


def test_a_vocabulary_that_names_other_tokens_is_still_refused(tmp_path):
    """Sizes may differ; the shared ids may not: a tokenizer with two tokens swapped is the wrong one."""
    from rsft.parts.sampling.ctranslate2_engine import CTranslate2Engine

    tok = char_tokenizer("0123456789+=")
    model = tiny_llama(tok, TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, max_position_embeddings=32))
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    swapped = char_tokenizer("1023456789+=")
    swapped.save_pretrained(tmp_path / "other")
    with pytest.raises(RsftError, match="does not match the tokenizer at id"):
        CTranslate2Engine.from_path(str(tmp_path / "m"), tokenizer_path=str(tmp_path / "other"),
                                    compute_type="float32", cache_dir=tmp_path / "ct2")
