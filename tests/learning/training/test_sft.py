"""SFT through TRL's real SFTTrainer on a real tiny model."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from rsft.core.config import LoraConfig, TrainConfig
from rsft.core.records import Prompt
from rsft.inputs.data.formats import sft_row
from rsft.inputs.modeling import load_model
from rsft.learning.training.job import TrainJob
from rsft.learning.training.sft import make_sft_trainer, train_sft
from rsft.parts.sampling.base import SamplingParams
from rsft.parts.sampling.transformers_engine import TransformersEngine


def rows(n=64):
    return [sft_row(Prompt(str(i), text=f"{i % 97}+{i % 13}="), "77") for i in range(n)]


def test_loss_is_on_completion_tokens_only(model_dir, tmp_path):
    trainer = make_sft_trainer(rows(4), TrainJob(str(model_dir), tmp_path / "w", TrainConfig(max_steps=1)))
    example = trainer.train_dataset[0]
    batch = trainer.data_collator([example])
    labels = batch["labels"][0].tolist()
    ids = batch["input_ids"][0].tolist()
    tok = trainer.processing_class
    n_prompt = len(tok("0+0=")["input_ids"])
    assert labels[:n_prompt] == [-100] * n_prompt
    assert labels[n_prompt:] == ids[n_prompt:]
    assert ids[-1] == tok.eos_token_id  # TRL appends EOS to the completion, and it is trained on


def test_training_teaches_the_completion(model_dir, tmp_path):
    cfg = TrainConfig(max_steps=60, batch_size=16, learning_rate=3e-3, save_steps=1000)
    result = train_sft(TrainJob(str(model_dir), tmp_path / "model", cfg), rows())
    assert result.steps == 60 and not (tmp_path / "model-work").exists()
    engine = TransformersEngine.from_path(str(tmp_path / "model"))
    out = engine.generate([Prompt("new", text="5+5=")], 1, SamplingParams(temperature=0, max_new_tokens=4))
    assert out[0][0].text == "77" and out[0][0].finish_reason == "stop"


def test_lora_trains_an_adapter_and_saves_a_merged_model(model_dir, tmp_path):
    cfg = TrainConfig(max_steps=5, batch_size=8, learning_rate=1e-2, lora=LoraConfig(r=4, alpha=8), save_steps=1000)
    train_sft(TrainJob(str(model_dir), tmp_path / "model", cfg), rows(16))
    assert (tmp_path / "model-adapter" / "adapter_config.json").exists()
    assert not (tmp_path / "model" / "adapter_config.json").exists()
    before = load_file(model_dir / "model.safetensors")
    after = load_file(tmp_path / "model" / "model.safetensors")
    changed = [k for k in before if "proj" in k and not torch.equal(before[k], after[k])]
    assert changed, "merged LoRA weights should differ from the base"
    assert load_model(str(tmp_path / "model-adapter")) is not None  # the adapter loads onto its base too


def test_warmup_ratio_warms_up(model_dir, tmp_path):
    """warmup_ratio is a fraction of the round's steps (transformers reads warmup_steps < 1 that way)."""
    cfg = TrainConfig(max_steps=10, lr_scheduler="constant_with_warmup", warmup_ratio=0.5, learning_rate=1e-3)
    trainer = make_sft_trainer(rows(4), TrainJob(str(model_dir), tmp_path / "w", cfg))
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    lrs = []
    for _ in range(10):
        lrs.append(trainer.lr_scheduler.get_last_lr()[0])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    assert lrs[0] == 0.0 and lrs[2] == pytest.approx(4e-4) and lrs[5:] == [pytest.approx(1e-3)] * 5
