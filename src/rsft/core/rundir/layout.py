"""The layout of a run directory: every file and folder rsft keeps there, named once.

`RunDir` names what lives beside the rounds (the config, the base model and its eval, the report, the
GRPO hand-off), `RoundDir` the files of one round, `GraduateDir` those of the hand-off. A module that reads
or writes one of these files asks them for its path instead of spelling the name, so a file is renamed in
one place. They only name paths: nothing here creates a directory, and only the done-markers and
``stage_times.json`` (the runner's bookkeeping) are written here.
"""

from __future__ import annotations

from pathlib import Path

from rsft.core.errors import RsftError
from rsft.core.rundir.files import atomic_write_json, atomic_write_text, read_json

DONE = ".done"  # ``<stage>.done``: written last, its existence means the stage finished
TRAIN_RESULT = "rsft-train.json"  # beside a model rsft trained: its result and the fingerprint of its inputs


def work_dir(out: Path) -> Path:
    """Where a trainer writing `out` keeps its checkpoints until `out` is in place: ``OUT-work``."""
    return out.with_name(f"{out.name}-work")


def done_marker(where: Path, stage: str) -> Path:
    return Path(where) / f"{stage}{DONE}"


def is_done_marker(path: Path) -> bool:
    return Path(path).name.endswith(DONE)


def is_done(where: Path, stage: str) -> bool:
    """Whether `stage` finished in directory `where` (its done-marker exists)."""
    return done_marker(where, stage).exists()


def mark_done(where: Path, stage: str) -> None:
    atomic_write_text(done_marker(where, stage), "")


def stage_times_file(where: Path) -> Path:
    return Path(where) / "stage_times.json"


def record_time(where: Path, stage: str, seconds: float) -> None:
    """Add a stage's seconds to ``where/stage_times.json``."""
    path = stage_times_file(where)
    times = read_json(path) if path.exists() else {}
    times[stage] = round(seconds, 3)
    atomic_write_json(path, times)


class RoundDir:
    """Paths and done-markers of one round: ``RUN/round-NNN/``."""

    def __init__(self, run_dir: Path, round_index: int) -> None:
        self.run_dir = Path(run_dir)
        self.index = round_index
        self.path = self.run_dir / f"round-{round_index:03d}"

    samples = property(lambda self: self.path / "samples.jsonl")
    presample = property(lambda self: self.path / "presample.jsonl")  # GVM's first samples per prompt
    allocation = property(lambda self: self.path / "allocation.json")  # what the allocation decided (GVM's plan, carry's count)

    def pass_file(self, name: str) -> Path:
        """Where one of the allocation's sampling passes writes: ``draw`` is samples.jsonl, GVM's ``presample``
        presample.jsonl, a user strategy's own pass ``<name>.jsonl``."""
        return {"draw": self.samples, "presample": self.presample}.get(name, self.path / f"{name}.jsonl")
    scored = property(lambda self: self.path / "scored.jsonl")
    rationalized = property(lambda self: self.path / "rationalized.jsonl")  # STaR rationales, prompts without the hint
    eval_greedy = property(lambda self: self.path / "eval-greedy.jsonl")  # each held-out prompt's greedy score
    scored_failed = property(lambda self: self.path / "scored.failed.jsonl")  # groups whose scorer raised, kept aside
    selected = property(lambda self: self.path / "selected.jsonl")
    kept = property(lambda self: self.path / "kept.jsonl")
    pairs = property(lambda self: self.path / "pairs.jsonl")
    selection_file = property(lambda self: self.path / "selection.json")  # what the select stage counted
    model = property(lambda self: self.path / "model")
    model_work = property(lambda self: work_dir(self.path / "model"))  # training checkpoints of `model`
    train_file = property(lambda self: self.path / "train.json")  # the train stage's steps and loss
    eval_file = property(lambda self: self.path / "eval.json")
    metrics_file = property(lambda self: self.path / "metrics.json")  # one row of `rsft.core.metrics_schema`
    monitor_file = property(lambda self: self.path / "monitor.json")  # the triggers that fired, and the action
    stage_times = property(lambda self: stage_times_file(self.path))

    def done_marker(self, stage: str) -> Path:
        return done_marker(self.path, stage)

    def done(self, stage: str) -> bool:
        return is_done(self.path, stage)

    def mark_done(self, stage: str) -> None:
        mark_done(self.path, stage)

    def times(self) -> dict[str, float]:
        return read_json(self.stage_times) if self.stage_times.exists() else {}


class GraduateDir:
    """The GRPO hand-off a monitor's `graduate` action writes (`rsft.learning.monitoring.graduate`): ``RUN/graduate/``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    prompts = property(lambda self: self.path / "prompts.jsonl")  # the prompts that still discriminate
    grpo_config = property(lambda self: self.path / "grpo_config.json")  # TRL GRPOConfig settings
    graduation = property(lambda self: self.path / "graduation.json")  # round, trigger, model to start from
    grpo_work = property(lambda self: self.path / "grpo-work")  # `rsft graduate`'s trainer output, until done
    model = property(lambda self: self.path / "model")  # what `rsft graduate` trained
    grpo_log = property(lambda self: self.path / "grpo.json")  # its steps and TRL's log


class RunDir:
    """What a run directory holds beside its rounds: ``RUN/``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def existing(cls, path: str | Path) -> RunDir:
        """The run directory at `path`; a one-line error when it is none (no config.yaml)."""
        run_dir = cls(Path(path))
        if not run_dir.config.is_file():
            raise RsftError(f"{run_dir.path}: not a run directory (no {run_dir.config.name})")
        return run_dir

    config = property(lambda self: self.path / "config.yaml")  # the resolved config, written first
    base_init = property(lambda self: self.path / "base-init")  # the tiny model as built, before a warm start
    base_model = property(lambda self: self.path / "base-model")  # the base rsft built or warm-started
    base_info = property(lambda self: self.path / "base.json")  # how the base was made
    base_eval = property(lambda self: self.path / "base-eval.json")  # the base's held-out metrics
    base_eval_greedy = property(lambda self: self.path / "base-eval-greedy.jsonl")  # its greedy score per prompt
    control = property(lambda self: self.path / "control.json")  # where `rsft run --control` put this run's control
    report = property(lambda self: self.path / "report.html")
    exports = property(lambda self: self.path / "exports")  # what `rsft export` writes
    trackers = property(lambda self: self.path / "trackers")  # the experiment trackers' own files
    graduate = property(lambda self: GraduateDir(self.path / "graduate"))
    stage_times = property(lambda self: stage_times_file(self.path))  # the base stages' seconds

    def round(self, r: int) -> RoundDir:
        return RoundDir(self.path, r)

    def rounds(self) -> list[RoundDir]:
        """Existing rounds, in order."""
        return round_dirs(self.path)


def round_dirs(run_dir: Path) -> list[RoundDir]:
    """Existing rounds of a run, in order."""
    out = []
    for p in sorted(Path(run_dir).glob("round-[0-9][0-9][0-9]")):
        out.append(RoundDir(run_dir, int(p.name.split("-")[1])))
    return out
