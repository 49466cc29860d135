"""A killed SFT run resumes to what an uninterrupted one records: the real TRL trainer on a tiny model.

A kill is simulated in-process by a callback that raises (after a checkpoint, or inside the save
before rsft marks the checkpoint complete); the expected numbers come from an uninterrupted run of the
same inputs, never from the code under test.
"""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file
from transformers import TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

from rsft.core.config import TrainConfig
from rsft.core.records import Prompt
from rsft.inputs.data.formats import sft_row
from rsft.learning.training import sft
from rsft.learning.training.checkpoints import MARKER
from rsft.learning.training.job import TrainJob
from rsft.learning.training.sft import RESULT_FILE, train_sft
from rsft.stages.runner import TRAIN_RESULT

CFG = TrainConfig(max_steps=8, batch_size=8, learning_rate=3e-3, save_steps=3)


class Killed(Exception):
    pass


class KillAt(TrainerCallback):
    """Raises at `step`: after that step's checkpoint is marked (`when="step"`, the next step's end), or
    inside the save, after the Trainer wrote the checkpoint and before rsft marks it (`when="save"`)."""

    def __init__(self, step: int, when: str) -> None:
        self.step, self.when = step, when

    def on_step_end(self, args, state, control, **kwargs):
        if self.when == "step" and state.global_step == self.step + 1:
            raise Killed(state.global_step)

    def on_save(self, args, state, control, **kwargs):
        if self.when == "save" and state.global_step == self.step:
            raise Killed(state.global_step)


class CountSteps(TrainerCallback):
    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def rows(n=48):
    return [sft_row(Prompt(str(i), text=f"{i % 97}+{i % 13}="), str(i % 7)) for i in range(n)]


@pytest.fixture(scope="module")
def uninterrupted(model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "model"
    return train_sft(TrainJob(str(model_dir), out, CFG), rows()), out


def test_loss_after_a_resume_is_the_uninterrupted_runs(model_dir, tmp_path, uninterrupted):
    whole, whole_dir = uninterrupted
    out = tmp_path / "model"
    with pytest.raises(Killed):
        train_sft(TrainJob(str(model_dir), out, CFG), rows(), callbacks=[KillAt(6, "step")])
    # only the newest complete checkpoint is kept
    assert sorted(p.name for p in (tmp_path / "model-work").glob("checkpoint-*")) == ["checkpoint-6"]
    counter = CountSteps()
    resumed = train_sft(TrainJob(str(model_dir), out, CFG), rows(), callbacks=[counter])
    assert counter.steps == [7, 8]  # continued from checkpoint-6, not from step 0
    assert resumed.steps == whole.steps == 8
    assert resumed.loss == pytest.approx(whole.loss, abs=1e-6)
    # transformers alone would record the mean over steps 7-8 only
    tail = [e["loss"] for e in whole.log if "loss" in e and e["step"] > 6]
    assert abs(resumed.loss - sum(tail) / len(tail)) > 1e-3
    recorded = json.loads((out / RESULT_FILE).read_text())
    assert recorded["loss"] == resumed.loss and recorded["steps"] == 8
    before, after = load_file(whole_dir / "model.safetensors"), load_file(out / "model.safetensors")
    assert all((before[k] - after[k]).abs().max().item() < 1e-5 for k in before)


def test_a_checkpoint_torn_by_a_kill_is_skipped(model_dir, tmp_path, uninterrupted):
    """The wedge: killed while checkpoint-6 was being written. transformers would resume from it and fail
    forever; rsft drops it and resumes from checkpoint-3, the last complete one."""
    whole, _ = uninterrupted
    out, work = tmp_path / "model", tmp_path / "model-work"
    with pytest.raises(Killed):
        train_sft(TrainJob(str(model_dir), out, CFG), rows(), callbacks=[KillAt(6, "save")])
    torn = work / "checkpoint-6"
    assert (work / "checkpoint-3" / MARKER).is_file() and not (torn / MARKER).exists()
    state = torn / "trainer_state.json"
    state.write_text(state.read_text()[:40])  # the kill cut the trainer state short
    assert get_last_checkpoint(str(work)) == str(torn)  # what resume_from_checkpoint=True would pick
    counter = CountSteps()
    resumed = train_sft(TrainJob(str(model_dir), out, CFG), rows(), callbacks=[counter])
    assert counter.steps == [4, 5, 6, 7, 8]
    assert (resumed.steps, resumed.loss) == (whole.steps, pytest.approx(whole.loss, abs=1e-6))
    assert not work.exists()


def test_a_kill_during_the_final_save_records_the_real_loss(model_dir, tmp_path, uninterrupted, monkeypatch):
    """Killed after the last checkpoint, while the model was moved into place: the rerun trains no step,
    and records the run's loss (transformers' own would be 0.0)."""
    whole, whole_dir = uninterrupted
    out = tmp_path / "model"

    def killed(*args):
        raise Killed("final save")

    with monkeypatch.context() as m:
        m.setattr(sft, "replace_dir", killed)
        with pytest.raises(Killed):
            train_sft(TrainJob(str(model_dir), out, CFG), rows())
    assert (tmp_path / "model-work" / "checkpoint-8" / MARKER).is_file() and not out.exists()
    counter = CountSteps()
    again = train_sft(TrainJob(str(model_dir), out, CFG), rows(), callbacks=[counter])
    assert counter.steps == []
    assert (again.steps, again.loss) == (8, pytest.approx(whole.loss, abs=1e-6))
    assert again.loss != 0.0
    before, after = load_file(whole_dir / "model.safetensors"), load_file(out / "model.safetensors")
    assert all((before[k] - after[k]).abs().max().item() < 1e-5 for k in before)  # the checkpoint's weights
    # the recorded log is the uninterrupted run's, its closing entry included (wall-clock fields aside)
    clock = {"train_runtime", "train_samples_per_second", "train_steps_per_second"}
    strip = lambda log: [{k: v for k, v in e.items() if k not in clock} for e in log]  # noqa: E731
    assert strip(again.log) == strip(whole.log)


def test_a_model_in_place_with_its_result_is_not_trained_again(model_dir, tmp_path, uninterrupted):
    """Killed after the model was moved into place, before the caller recorded the result."""
    whole, whole_dir = uninterrupted
    out = tmp_path / "model"
    first = train_sft(TrainJob(str(model_dir), out, CFG), rows())
    (tmp_path / "model-work").mkdir()  # a kill before the work directory was removed, too
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    again = train_sft(TrainJob(str(model_dir), out, CFG), rows())
    assert (again.steps, again.loss) == (first.steps, first.loss) == (whole.steps, pytest.approx(whole.loss))
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp and not (tmp_path / "model-work").exists()
    assert TRAIN_RESULT == RESULT_FILE  # what `--force` removes, so a forced stage trains again
    # other rows, or other settings, are another training
    changed = train_sft(TrainJob(str(model_dir), out, CFG), rows(40))
    assert (out / "model.safetensors").stat().st_mtime_ns != stamp and changed.rows == 40
