"""Training the real SmolLM2-135M-Instruct: what is trained is what was sampled, the end-of-turn token stays in
the labels although it is also the pad token, LoRA on its real module names and a full fine-tune, a bf16
checkpoint trained in fp32 and saved back in bf16, and the trained model reloads in the engines (a LoRA
adapter merged before CTranslate2 converts it). Expected token ids are written out by hand."""

from __future__ import annotations

import json

import pytest
import torch

from rsft.core.config import LoraConfig, TrainConfig
from rsft.core.records import Prompt
from rsft.inputs.data.formats import prompt_ids

pytestmark = pytest.mark.real_model

QUESTION = Prompt("q", messages=({"role": "user", "content": "Write twelve after two spaces."},))


@pytest.fixture(scope="module")
def tok(smol_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smol_dir)


def sampled_row(tok, pieces):
    """An SFT row as the select stage writes it, for a sample whose tokens were `pieces` then <|im_end|>."""
    ids = tok.convert_tokens_to_ids(pieces) + [2]
    text = tok.decode(ids, skip_special_tokens=True)
    return {"prompt": list(QUESTION.messages), "completion": [{"role": "assistant", "content": text}],
            "completion_ids": ids, "prompt_id": "q", "reward": 1.0}


def test_the_trainer_sees_the_sampled_tokens_not_a_retokenization(smol_dir, tok, tmp_path):
    """The model sampled "  12" as Ġ, Ġ, 1, 2 (two single spaces); the tokenizer would encode the text as ĠĠ,
    1, 2. Training on the re-encoded text would teach a sequence the model did not produce."""
    from rsft.learning.training.job import TrainJob
    from rsft.learning.training.sft import make_sft_trainer

    row = sampled_row(tok, ["Ġ", "Ġ", "1", "2"])
    assert row["completion"][0]["content"] == "  12"
    assert tok("  12", add_special_tokens=False)["input_ids"] != row["completion_ids"][:-1]  # they differ here
    trainer = make_sft_trainer([row], TrainJob(str(smol_dir), tmp_path / "w", TrainConfig(max_steps=1, batch_size=1),
                                               label=None))
    example = trainer.train_dataset[0]
    head = prompt_ids(QUESTION, tok)
    assert example["input_ids"] == head + row["completion_ids"]
    assert head[:2] != [1, 1]  # one BOS-like <|im_start|> at the start, not two
    labels = example["labels"]
    assert labels[: len(head)] == [-100] * len(head) and labels[len(head):] == row["completion_ids"]


def test_the_end_of_turn_label_survives_padding_when_pad_is_eos(smol_dir, tok, tmp_path):
    """pad == eos == <|im_end|> (id 2) here. A collator that masked the pad id out of the labels would mask
    every end-of-turn, and the model would never learn to stop: the classic symptom."""
    from rsft.learning.training.job import TrainJob
    from rsft.learning.training.sft import make_sft_trainer

    assert tok.pad_token_id == tok.eos_token_id == 2
    short, long = sampled_row(tok, ["Ġ", "Ġ", "1", "2"]), sampled_row(tok, ["Ġ", "Ġ", "1", "2", "Ġtwelve", "."])
    trainer = make_sft_trainer([short, long], TrainJob(str(smol_dir), tmp_path / "w",
                                                       TrainConfig(max_steps=1, batch_size=2), label=None))
    batch = trainer.data_collator([trainer.train_dataset[0], trainer.train_dataset[1]])
    n_short = len(prompt_ids(QUESTION, tok)) + len(short["completion_ids"])
    labels = batch["labels"]  # [2, T]
    assert labels[0, n_short - 1] == 2 and (labels[0, n_short:] == -100).all()  # its end, then padding
    assert batch["input_ids"][0, n_short:].eq(2).all()  # the padding is id 2 too, and out of the loss
    assert labels[1, -1] == 2


def train_rows(tok, n=4):
    return [sampled_row(tok, ["Ġ", "Ġ", "1", "2"]) for _ in range(n)]


LORA = TrainConfig(max_steps=2, batch_size=2, learning_rate=1e-3, save_steps=1000,
                   lora=LoraConfig(r=8, alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))


@pytest.fixture(scope="module")
def lora_round(smol_bf16, tok, tmp_path_factory):
    """Two LoRA steps on the bfloat16 checkpoint, loaded in float32 to train on the CPU."""
    from rsft.learning.training.job import TrainJob
    from rsft.learning.training.sft import train_sft

    out = tmp_path_factory.mktemp("lora") / "model"
    result = train_sft(TrainJob(str(smol_bf16), out, LORA, dtype="float32"), train_rows(tok))
    return out, result


def test_lora_on_the_real_module_names_saves_a_merged_bf16_model_and_its_adapter(lora_round, smol_bf16):
    from safetensors import safe_open

    out, result = lora_round
    assert result.steps == 2
    adapter = json.loads((out.parent / "model-adapter" / "adapter_config.json").read_text())
    assert set(adapter["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj"} and adapter["r"] == 8
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"  # saved back in its own dtype
    with safe_open(out / "model.safetensors", "pt") as trained, safe_open(smol_bf16 / "model.safetensors", "pt") as base:
        name = "model.layers.0.self_attn.q_proj.weight"
        assert trained.get_tensor(name).dtype == torch.bfloat16
        assert not torch.equal(trained.get_tensor(name), base.get_tensor(name))  # the adapter was merged in
        mlp = "model.layers.0.mlp.down_proj.weight"
        assert torch.equal(trained.get_tensor(mlp), base.get_tensor(mlp))  # not a target: untouched


def test_the_round_model_reloads_in_the_engines_and_the_adapter_merges_before_ctranslate2(smol_dir, tok,
                                                                                          tmp_path):
    """On the float32 checkpoint (both merges then happen in float32): the merged model through the
    transformers engine, and the adapter directory itself through CTranslate2 (which merges it onto its base
    before converting), give the same greedy tokens, and two LoRA steps changed them."""
    from rsft.learning.training.job import TrainJob
    from rsft.learning.training.sft import train_sft
    from rsft.parts.sampling.base import SamplingParams
    from rsft.parts.sampling.ctranslate2_engine import CTranslate2Engine
    from rsft.parts.sampling.transformers_engine import TransformersEngine

    out = tmp_path / "model"
    train_sft(TrainJob(str(smol_dir), out, LORA), train_rows(tok))
    base = TransformersEngine.from_path(str(smol_dir)).generate([QUESTION], 1, SamplingParams(temperature=0,
                                                                                             max_new_tokens=12))
    greedy = SamplingParams(temperature=0, max_new_tokens=12)
    merged = TransformersEngine.from_path(str(out), dtype="float32").generate([QUESTION], 1, greedy)
    via_adapter = CTranslate2Engine.from_path(str(out.parent / "model-adapter"), compute_type="float32")
    assert via_adapter.generate([QUESTION], 1, greedy)[0][0].token_ids == merged[0][0].token_ids
    assert merged[0][0].token_ids != base[0][0].token_ids


@pytest.mark.slow
def test_a_full_fine_tune_learns_the_sampled_tokens(smol_dir, tok, tmp_path):
    """All weights, float32: a few steps on one sampled completion make it the greedy answer."""
    from rsft.learning.training.job import TrainJob
    from rsft.learning.training.sft import train_sft
    from rsft.parts.sampling.base import SamplingParams
    from rsft.parts.sampling.transformers_engine import TransformersEngine

    out = tmp_path / "model"
    result = train_sft(TrainJob(str(smol_dir), out, TrainConfig(max_steps=12, batch_size=4, learning_rate=1e-4,
                                                                save_steps=1000)), train_rows(tok, 8))
    assert result.steps == 12 and json.loads((out / "config.json").read_text())["dtype"] == "float32"
    (s,), = TransformersEngine.from_path(str(out)).generate([QUESTION], 1, SamplingParams(temperature=0,
                                                                                         max_new_tokens=8))
    assert list(s.token_ids) == tok.convert_tokens_to_ids(["Ġ", "Ġ", "1", "2"]) + [2]
