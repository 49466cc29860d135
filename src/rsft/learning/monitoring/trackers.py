"""Experiment trackers (`report_to: [tensorboard, wandb, trackio, mlflow, 'module:Class']`), a registry kind.

Two streams go to them:
- the round metrics, once per round, with the round as the step (`log_round`, called by the monitor
  stage): every number of the round's metrics row (`rsft.core.metrics_schema`), the held-out ones as ``eval/...``;
- the SFT loss curve, by TRL itself (`SFTConfig.report_to`): `train_env` points each library at the run
  directory (``RUN/trackers/``) through the environment variables it reads.

Each tracker is an object with `library` (the module its extra installs), `trl_name` (what TRL's own
`report_to` calls it; None for a tracker TRL does not know, which then gets the round metrics only),
`train_env(run_dir, label)` and `log_round(run_dir, values, step)`. A user's is ``'module:Class'``, built
with no arguments.

Nothing here plots; `rsft.learning.monitoring.report` writes the HTML report. wandb runs offline when
WANDB_MODE=offline (the tests), and logs to the service otherwise, as its own login says.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from rsft.core.errors import ConfigError
from rsft.core.metrics_schema import ROUND, SECONDS, SURVIVORS, Row
from rsft.core.registry import lookup, resolve
from rsft.core.rundir.layout import RunDir


class Tracker:
    """A tracker the built-ins share the shape of; `library` is checked installed before a run."""

    library: str | None = None
    trl_name: str | None = None

    def train_env(self, run_dir: Path, label: str) -> dict[str, str]:
        """Environment variables pointing TRL's reporting for one training under ``RUN/trackers/``."""
        return {}

    def log_round(self, run_dir: Path, values: dict[str, float], step: int) -> None:
        """One round's numbers, the round as the step."""


class TensorBoard(Tracker):
    library = trl_name = "tensorboard"

    def train_env(self, run_dir: Path, label: str) -> dict[str, str]:
        return {"TENSORBOARD_LOGGING_DIR": str(_root(run_dir) / "tensorboard" / label)}

    def log_round(self, run_dir: Path, values: dict[str, float], step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(_root(run_dir) / "tensorboard" / "rounds"))
        for key, value in values.items():
            writer.add_scalar(key, value, step)
        writer.close()


class Wandb(Tracker):
    library = trl_name = "wandb"

    def train_env(self, run_dir: Path, label: str) -> dict[str, str]:
        return {"WANDB_DIR": str(_root(run_dir)), "WANDB_PROJECT": os.environ.get("WANDB_PROJECT", "rsft"),
                "WANDB_NAME": f"{Path(run_dir).name}-{label}"}

    def log_round(self, run_dir: Path, values: dict[str, float], step: int) -> None:
        import wandb

        run = wandb.init(project=os.environ.get("WANDB_PROJECT", "rsft"), name=Path(run_dir).name,
                         id=_run_id(run_dir), resume="allow", dir=str(_root(run_dir)), reinit="finish_previous")
        run.log(values, step=step)
        run.finish()


class Trackio(Tracker):
    library = trl_name = "trackio"

    def train_env(self, run_dir: Path, label: str) -> dict[str, str]:
        return {"TRACKIO_DIR": os.environ.get("TRACKIO_DIR", str(_root(run_dir) / "trackio"))}

    def log_round(self, run_dir: Path, values: dict[str, float], step: int) -> None:
        import trackio

        os.environ.setdefault("TRACKIO_DIR", str(_root(run_dir) / "trackio"))
        trackio.init(project=Path(run_dir).name, name="rounds", resume="allow")
        trackio.log(values, step=step)
        trackio.finish()


class Mlflow(Tracker):
    library = trl_name = "mlflow"

    def train_env(self, run_dir: Path, label: str) -> dict[str, str]:
        return {"MLFLOW_TRACKING_URI": os.environ.get("MLFLOW_TRACKING_URI", (_root(run_dir) / "mlruns").as_uri()),
                "MLFLOW_EXPERIMENT_NAME": Path(run_dir).name}

    def log_round(self, run_dir: Path, values: dict[str, float], step: int) -> None:
        import mlflow

        root = _root(run_dir)
        mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", (root / "mlruns").as_uri()))
        mlflow.set_experiment(Path(run_dir).name)
        id_file = root / "mlflow_run_id"
        run_id = id_file.read_text().strip() if id_file.exists() else None
        with mlflow.start_run(run_id=run_id, run_name="rounds") as active:
            mlflow.log_metrics({k.replace("@", "_at_"): v for k, v in values.items()}, step=step)
            id_file.parent.mkdir(parents=True, exist_ok=True)
            id_file.write_text(active.info.run_id)


def build_tracker(name: str, key: str = "report_to") -> Tracker:
    """The tracker `name` means: a built-in, or a user's 'module:Class' (built with no arguments)."""
    cls = lookup("tracker", name, key)
    if not isinstance(cls, type) or not callable(getattr(cls, "log_round", None)):  # refused before it runs
        raise ConfigError(f"key '{key}': {name!r} is not a tracker (it needs log_round(run_dir, values, step); "
                          "see rsft.learning.monitoring.trackers.Tracker)")
    return cls()


def trackers(names: list[str]) -> list[Tracker]:
    return [resolve("tracker", n) for n in names]


def trl_names(names: list[str]) -> tuple[str, ...]:
    """What TRL's `report_to` gets for the SFT loss: the trackers it knows."""
    return tuple(t.trl_name for t in trackers(names) if t.trl_name)


def check_trackers(names: list[str]) -> None:
    """Each tracker builds and its library is installed (a one-line error naming the extra otherwise)."""
    for name, t in zip(names, trackers(names), strict=True):
        if t.library and importlib.util.find_spec(t.library) is None:
            how = f"pip install 'rsft[{name}]'" if ":" not in name else f"it needs the module {t.library!r}"
            raise ConfigError(f"key 'report_to': {name} is not installed ({how})")


def flatten(row: Row) -> dict[str, float]:
    """The numbers of a metrics row, nested keys joined with '/'."""
    out: dict[str, float] = {}
    for key, value in row.items():
        if isinstance(value, dict):
            out.update({f"{key}/{k}": v for k, v in flatten(value).items()})
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
            out[key] = float(value)
    return out


def _root(run_dir: Path) -> Path:
    return RunDir(Path(run_dir).resolve()).trackers


def _run_id(run_dir: Path) -> str:
    return "rsft-" + hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:12]


def train_env(names: list[str], run_dir: Path, label: str) -> dict[str, str]:
    """Environment for TRL's own reporting during one training (the SFT loss), under ``RUN/trackers/``."""
    env: dict[str, str] = {}
    for t in trackers(names):
        env.update(t.train_env(run_dir, label))
    return env


def log_round(names: list[str], run_dir: Path, row: Row, step: int) -> None:
    """One round's metrics to every tracker, with the round as the step (so not the round itself, nor the
    per-stage seconds and per-rule survivors, which are bookkeeping rather than curves)."""
    values = flatten({k: v for k, v in row.items() if k not in (ROUND, SECONDS, SURVIVORS)})
    for t in trackers(names):
        t.log_round(run_dir, values, step)
