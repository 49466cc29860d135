"""One TrainJob: the steps and the precision are decided once, recorded, and part of the fingerprint."""

from __future__ import annotations

import json

import pytest

from rsft.core.config import TrainConfig, build_config
from rsft.core.errors import ConfigError
from rsft.core.records import Prompt
from rsft.core.rundir.files import atomic_write_jsonl
from rsft.core.rundir.layout import TRAIN_RESULT
from rsft.inputs.data.formats import sft_row
from rsft.learning.training import precision
from rsft.learning.training.job import TrainJob, TrainPlan, fingerprint, plan_job
from rsft.learning.training.precision import decide_precision
from rsft.learning.training.sft import train_sft
from rsft.learning.training.steps import decide_steps
from rsft.learning.training.warm_start import check_warm_start, warm_start


def rows(n: int = 8) -> list[dict]:
    return [sft_row(Prompt(str(i), text=f"{i % 10}+{i % 7}="), "11") for i in range(n)]


@pytest.fixture
def native_bf16(monkeypatch):
    """Flip the CPU-flag probe: `set(True)` is a CPU with AVX512_BF16, `set(False)` one without; the
    test model (64 wide) counts as wide enough."""
    monkeypatch.setattr(precision, "BF16_MIN_WIDTH", 64)

    def set_flag(value: bool) -> None:
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: value)
    return set_flag


def test_a_job_and_its_plan_go_through_json_unchanged(model_dir, tmp_path):
    job = TrainJob(str(model_dir), tmp_path / "model", TrainConfig(max_steps=3, extra={"logging_steps": 1}), seed=4,
                   dtype="bfloat16", report_to=["tensorboard"])
    assert TrainJob.from_json(json.loads(json.dumps(job.to_json()))) == job
    plan = plan_job(job, 10)
    assert TrainPlan.from_json(json.loads(json.dumps(plan.to_json()))) == plan
    assert job.work == tmp_path / "model-work" and job.adapter == tmp_path / "model-adapter"


@pytest.mark.parametrize(("cfg", "steps", "by"), [
    (dict(epochs=2, batch_size=4), 5, "train.epochs"),
    (dict(epochs=2, batch_size=4, min_steps=7), 7, "train.min_steps"),
    (dict(epochs=2, batch_size=4, step_cap=3), 3, "train.step_cap"),
    (dict(max_steps=9, batch_size=4, min_steps=60), 9, "train.max_steps"),
    (dict(max_steps=9, extra={"max_steps": 4}), 4, "train.extra.max_steps"),
    (dict(epochs=2, extra={"num_train_epochs": 3}), -1, "train.extra.num_train_epochs"),  # TRL counts
])
def test_the_steps_are_decided_by_one_input_and_say_which(cfg, steps, by):
    decided = decide_steps(TrainConfig(**cfg), 10)
    assert (decided.max_steps, decided.decided_by) == (steps, by)


def test_the_precision_follows_extra_then_the_setting_then_the_hardware(model_dir, native_bf16):
    native_bf16(True)
    auto = TrainConfig(extra={"use_cpu": True})
    assert decide_precision(auto, "float32", str(model_dir)).autocast == "bf16"
    native_bf16(False)
    assert decide_precision(auto, "float32", str(model_dir)).autocast == "no"
    given = TrainConfig(extra={"use_cpu": True, "bf16": True})
    assert (decide_precision(given).autocast, decide_precision(given).decided_by) == ("bf16", "train.extra")
    saved = decide_precision(TrainConfig(save_dtype="bfloat16"), "float32", str(model_dir))
    assert (saved.dtype, saved.save_dtype) == ("float32", "bfloat16")


def test_the_fingerprint_hashes_the_resolved_precision(model_dir, tmp_path, native_bf16):
    job = TrainJob(str(model_dir), tmp_path / "model", TrainConfig(max_steps=2, extra={"use_cpu": True}))
    native_bf16(False)
    fp32 = plan_job(job, 8)
    native_bf16(True)
    bf16 = plan_job(job, 8)
    assert (fp32.precision.autocast, bf16.precision.autocast) == ("no", "bf16")
    assert fingerprint(rows(), job, fp32) != fingerprint(rows(), job, bf16)
    assert fingerprint(rows(), job, bf16) == fingerprint(rows(), job, plan_job(job, 8))


def test_a_model_trained_in_fp32_is_not_reused_where_the_same_config_means_bf16(model_dir, tmp_path, native_bf16):
    """The same config on a CPU without native bf16 (fp32) and on one with it (bf16 autocast) trains two
    different models: the second is trained, not taken as finished, and each records its precision."""
    job = TrainJob(str(model_dir), tmp_path / "model", TrainConfig(max_steps=2, batch_size=4, save_steps=100,
                                                                   extra={"use_cpu": True}), label=None)
    native_bf16(False)
    first = train_sft(job, rows())
    key = json.loads((job.out_dir / TRAIN_RESULT).read_text())["fingerprint"]
    stamp = (job.out_dir / "model.safetensors").stat().st_mtime_ns
    native_bf16(True)
    second = train_sft(job, rows())
    record = json.loads((job.out_dir / TRAIN_RESULT).read_text())
    assert record["fingerprint"] != key and (job.out_dir / "model.safetensors").stat().st_mtime_ns != stamp
    assert (first.plan.precision.autocast, second.plan.precision.autocast) == ("no", "bf16")
    assert record["plan"]["precision"]["autocast"] == "bf16" and record["plan"]["steps"]["max_steps"] == 2


def test_train_json_records_the_plan(model_dir, tmp_path):
    from rsft.stages.run import Run
    from rsft.stages.train import train_stage

    cfg = build_config({"output_dir": str(tmp_path), "model": {"path": str(model_dir)},
                        "train": {"epochs": 2, "batch_size": 4, "save_steps": 100, "mixed_precision": "no"}})
    run = Run(cfg, cfg.run_dir)
    rd = run.round(0)
    rd.path.mkdir(parents=True)
    atomic_write_jsonl(rd.selected, rows(10))
    train_stage(run, 0)
    plan = json.loads((rd.path / "train.json").read_text())["plan"]
    assert plan["steps"] == {"max_steps": 5, "num_train_epochs": 2.0, "global_batch": 4, "decided_by": "train.epochs"}
    assert plan["precision"] == {"dtype": "float32", "autocast": "no", "save_dtype": "float32",
                                 "decided_by": "train.mixed_precision"}


def test_the_warm_start_checks_its_data_as_preflight_does(tmp_path):
    """One check, one error type and one key, whether preflight or the warm start itself finds it."""
    with pytest.raises(ConfigError, match=r"^key 'warm_start.enabled': task 'addition' has no gold completions"):
        check_warm_start([], [], "addition", column_hint=False)
    gold = [(Prompt("a", text="1+1="), "2")]
    with pytest.raises(ConfigError, match=r"^key 'warm_start.examples': no gold or train prompts are left"):
        check_warm_start(gold, [])
    with pytest.raises(ConfigError, match=r"^key 'warm_start.enabled': .*\(set task.completion_column\)$"):
        warm_start("unused", tmp_path / "base", [], [], None, build_config({}).warm_start, None)
