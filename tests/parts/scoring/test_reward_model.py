"""The reward-model scorer on a tiny sequence classifier built from a config."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForSequenceClassification

from rsft.core.errors import RsftError
from rsft.inputs.tasks.tiny_model import char_tokenizer
from rsft.parts.scoring.spec import build_scorer


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("rm") / "rm"
    tok = char_tokenizer("0123456789+=abc")
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, num_labels=1, pad_token_id=tok.pad_token_id,
                      max_position_embeddings=64)
    torch.manual_seed(0)
    LlamaForSequenceClassification(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def reference(path, text, special=True):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path)
    with torch.no_grad():
        return model(**tok(text, return_tensors="pt", add_special_tokens=special)).logits[0, 0].item()


def test_batched_scores_equal_one_at_a_time(rm_dir):
    scorer = build_scorer({"name": "reward_model", "kwargs": {"path": str(rm_dir), "batch_size": 3}})
    prompts = ["1+2=", "12+3=", "a", "bb+c=", "9="]
    completions = ["3", "15", "abc", [{"role": "assistant", "content": "cc"}], "9999"]
    out = scorer(prompts=prompts, completions=completions)
    for p, c, s in zip(prompts, completions, out):
        text = p + (c[0]["content"] if isinstance(c, list) else c)
        assert s.value == pytest.approx(reference(rm_dir, text), abs=1e-4)
        assert s.parts["truncated"] == 0.0


def test_truncation_is_reported(rm_dir):
    scorer = build_scorer({"name": "reward_model", "kwargs": {"path": str(rm_dir), "max_length": 8}})
    out = scorer(prompts=["1+2=", "1"], completions=["3", "1" * 20])
    assert [s.parts["truncated"] for s in out] == [0.0, 1.0]


def test_chat_template_is_applied(rm_dir, tmp_path):
    import shutil

    from transformers import AutoTokenizer

    shutil.copytree(rm_dir, tmp_path / "rm")
    tok = AutoTokenizer.from_pretrained(tmp_path / "rm")
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}={% endfor %}"
    tok.save_pretrained(tmp_path / "rm")
    scorer = build_scorer({"name": "reward_model", "kwargs": {"path": str(tmp_path / "rm")}})
    s = scorer(prompts=["12"], completions=["3"])[0]
    # the template writes its own special tokens, so none are added on top
    assert s.value == pytest.approx(reference(tmp_path / "rm", "12=3=", special=False), abs=1e-4)


def test_missing_reward_model_path(tmp_path):
    with pytest.raises(RsftError, match="no such directory"):
        build_scorer({"name": "reward_model", "kwargs": {"path": str(tmp_path / "nope")}})
