"""Steps that follow the data (epochs with a floor and a cap), batches grouped by length, and the
precision `train.mixed_precision: auto` picks: each checked on a real TRL trainer."""

from __future__ import annotations

import pytest

from rsft.core.config import TrainConfig, build_config
from rsft.core.errors import ConfigError
from rsft.learning.training import precision
from rsft.learning.training.batching import grouped_order
from rsft.learning.training.job import TrainJob
from rsft.learning.training.precision import autocast
from rsft.learning.training.sft import make_sft_trainer, train_sft
from rsft.learning.training.steps import decide_steps


def rows(n: int, length: int = 4) -> list[dict[str, str]]:
    return [{"prompt": f"{i % 10}+{i % 7}=", "completion": "1" * length} for i in range(n)]


@pytest.mark.parametrize(("cfg", "n_rows", "global_batch", "steps"), [
    (dict(epochs=8, batch_size=64, min_steps=60, step_cap=200), 417, None, 60),     # 52.1 -> floor 60
    (dict(epochs=8, batch_size=64, min_steps=60, step_cap=200), 1000, None, 125),   # 125 exactly
    (dict(epochs=8, batch_size=64, min_steps=60, step_cap=200), 1798, None, 200),   # 224.75 -> cap 200
    (dict(epochs=8, batch_size=64, min_steps=60, step_cap=200), 1001, None, 126),   # 125.1 rounds up
    (dict(epochs=8, batch_size=32, grad_accum=2), 1000, 128, 63),                # 2 ranks: 62.5
    (dict(epochs=0.5, batch_size=16), 10, None, 1),                                 # at least one step
    (dict(max_steps=400, batch_size=64, min_steps=60, step_cap=200), 417, None, 400),  # max_steps: exact
])
def test_steps_follow_the_rows(cfg, n_rows, global_batch, steps):
    assert decide_steps(TrainConfig(**cfg), n_rows, global_batch).max_steps == steps


def test_bounds_out_of_order_are_one_line_naming_the_keys():
    with pytest.raises(ConfigError) as err:
        build_config({"task": {"name": "addition"}, "train": {"min_steps": 300, "step_cap": 200}})
    assert "train" in str(err.value) and "step_cap" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(("changes", "steps"), [({}, 5), ({"min_steps": 7}, 7), ({"step_cap": 3}, 3)])
def test_a_real_training_runs_the_steps_its_rows_give(model_dir, tmp_path, changes, steps):
    cfg = TrainConfig(epochs=2, batch_size=4, learning_rate=1e-3, save_steps=100, **changes)
    result = train_sft(TrainJob(str(model_dir), tmp_path / "out", cfg, label=None), rows(10))
    assert result.steps == steps  # 2 epochs x 10 rows / batch 4 = 5 steps, then the floor or the cap


def padded_tokens(trainer) -> tuple[int, int]:
    """(positions in the padded batches, real tokens) over one epoch of the trainer's own dataloader."""
    positions = real = 0
    for batch in trainer.get_train_dataloader():
        positions += batch["input_ids"].numel()
        real += int(batch["attention_mask"].sum())
    return positions, real


def test_grouped_batches_pad_less_than_random_ones(model_dir, tmp_path):
    # half the rows 3 tokens long, half 40: random batches of 4 almost always mix them and pad to 40+
    # (320 rows: transformers sorts by length within megabatches of up to 50 batches, fewer on small data)
    data = [{"prompt": "1+2=", "completion": "3" * (3 if i % 2 else 40)} for i in range(320)]
    grouped = make_sft_trainer(data, TrainJob(str(model_dir), tmp_path / "g", TrainConfig(batch_size=4), label=None))
    uniform = make_sft_trainer(data, TrainJob(str(model_dir), tmp_path / "u",
                                              TrainConfig(batch_size=4, group_by_length=False), label=None))
    g_pos, g_real = padded_tokens(grouped)
    u_pos, u_real = padded_tokens(uniform)
    assert g_real == u_real  # the same rows, once each
    assert g_pos < 0.7 * u_pos  # grouped: batches of one length; random: mixed, padded to the longest


def test_auto_precision_is_bf16_only_where_it_pays(monkeypatch):
    """The CPU rule, asked for the CPU explicitly (cpu=True), so that a CUDA machine running this test
    checks the same thing; the GPU rule is checked below with the device's answers faked."""
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert autocast("auto", 512, cpu=True) == "bf16"
    assert autocast("auto", 128, cpu=True) == "no"  # narrow models: the casts cost more than they save
    assert autocast("no", 4096, cpu=True) == "no" and autocast("bf16", 64, cpu=True) == "bf16"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert autocast("auto", 4096, cpu=True) == "no"  # emulated bf16 is several times slower


def test_auto_precision_on_a_gpu_follows_its_bf16_support(monkeypatch):
    """On a GPU, width does not matter: bf16 where the card has it, else fp32 (never fp16)."""
    import torch

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert autocast("auto", 64, cpu=False) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert autocast("auto", 4096, cpu=False) == "no"


def test_auto_bf16_reaches_the_trainer_and_is_said_once(model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(precision, "BF16_MIN_WIDTH", 64)  # the test model is 64 wide
    precision.say_precision.cache_clear()
    trainer = make_sft_trainer(rows(8), TrainJob(str(model_dir), tmp_path / "w", TrainConfig(batch_size=4)))
    make_sft_trainer(rows(8), TrainJob(str(model_dir), tmp_path / "w2", TrainConfig(batch_size=4)))
    assert trainer.args.bf16 and not trainer.args.fp16
    err = capsys.readouterr().err
    assert err.count("bf16 autocast") == 1 and "train.mixed_precision: no" in err
    fp32 = make_sft_trainer(rows(8), TrainJob(str(model_dir), tmp_path / "w3",
                                              TrainConfig(batch_size=4, mixed_precision="no")))
    assert not fp32.args.bf16
    precision.say_precision.cache_clear()


def test_the_grouped_order_covers_every_row_once_per_epoch_and_depends_only_on_the_seed():
    lengths = [5, 40] * 50 + [7]  # 101 rows, batch 4: the epoch's last batch is topped up to 4
    order = grouped_order(lengths, 4, 3 * 104, seed=3)
    assert order == grouped_order(lengths, 4, 3 * 104, seed=3) != grouped_order(lengths, 4, 3 * 104, seed=4)
    for epoch in range(3):
        part = order[epoch * 104:(epoch + 1) * 104]
        assert set(part) == set(range(101))  # every row, 3 of them drawn again to fill the last batch
    batches = [order[i:i + 4] for i in range(0, 100, 4)]  # the first epoch's full batches
    assert sum(len({lengths[i] for i in b}) == 1 for b in batches) >= 23  # batches of one length


def test_a_row_trl_drops_is_never_drawn(model_dir, tmp_path):
    # a prompt that fills max_length leaves no completion token to learn: TRL drops the row, and the
    # grouped order is worked out from what TRL kept (an order over the given rows would index past it)
    data = rows(6) + [{"prompt": "1+2=" * 20, "completion": "3"}] * 2
    trainer = make_sft_trainer(data, TrainJob(str(model_dir), tmp_path / "w", TrainConfig(batch_size=4, max_length=32),
                                              label=None))
    assert len(trainer.train_dataset) == 6
    seen = [b["input_ids"].shape[0] for b in trainer.get_train_dataloader()]
    assert sum(seen) == trainer.args.max_steps * 4


def test_extra_precision_and_steps_decide_when_given(model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(precision, "BF16_MIN_WIDTH", 64)
    cfg = TrainConfig(batch_size=4, extra={"fp16": False, "bf16": False})
    trainer = make_sft_trainer(rows(8), TrainJob(str(model_dir), tmp_path / "a", cfg, label=None))
    assert not trainer.args.bf16 and not trainer.args.fp16  # extra set the flags: rsft adds neither
    cfg = TrainConfig(batch_size=4, epochs=1, extra={"num_train_epochs": 3})
    trainer = make_sft_trainer(rows(8), TrainJob(str(model_dir), tmp_path / "b", cfg, label=None))
    assert trainer.args.max_steps == -1 and trainer.args.num_train_epochs == 3  # TRL counts epochs then
