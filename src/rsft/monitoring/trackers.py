"""Experiment trackers (`report_to: [tensorboard, wandb, trackio, mlflow]`), through their own libraries.

Two streams go to them:
- the round metrics, once per round, with the round as the step (`log_round`, called by the monitor
  stage): every number of the round's metrics row (`rsft.metrics_schema`), the held-out ones as ``eval/...``;
- the SFT loss curve, by TRL itself (`SFTConfig.report_to`): `train_env` points each library at the run
  directory (``RUN/trackers/``) through the environment variables it reads.

Nothing here plots; `rsft.monitoring.report` writes the HTML report. wandb runs offline when
WANDB_MODE=offline (the tests), and logs to the service otherwise, as its own login says.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from rsft.errors import ConfigError
from rsft.metrics_schema import ROUND, SECONDS, SURVIVORS, Row
from rsft.rundir.layout import RunDir

MODULES = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio", "mlflow": "mlflow"}


def check_trackers(backends: list[str]) -> None:
    """Each tracker's library is installed (a one-line error naming the extra otherwise)."""
    for name in backends:
        if importlib.util.find_spec(MODULES[name]) is None:
            raise ConfigError(f"key 'report_to': {name} is not installed (pip install 'rsft[{name}]')")


def flatten(row: Row) -> dict[str, float]:
    """The numbers of a metrics row, nested keys joined with '/'."""
    out: dict[str, float] = {}
    for key, value in row.items():
        if isinstance(value, dict):
            out.update({f"{key}/{k}": v for k, v in flatten(value).items()})
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
            out[key] = float(value)
    return out


def _run_id(run_dir: Path) -> str:
    return "rsft-" + hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:12]


def train_env(backends: list[str], run_dir: Path, label: str) -> dict[str, str]:
    """Environment for TRL's own reporting during one training (the SFT loss), under ``RUN/trackers/``."""
    root = RunDir(Path(run_dir).resolve()).trackers
    env: dict[str, str] = {}
    if "tensorboard" in backends:
        env["TENSORBOARD_LOGGING_DIR"] = str(root / "tensorboard" / label)
    if "wandb" in backends:
        env.update({"WANDB_DIR": str(root), "WANDB_PROJECT": os.environ.get("WANDB_PROJECT", "rsft"),
                    "WANDB_NAME": f"{Path(run_dir).name}-{label}"})
    if "mlflow" in backends:
        env.setdefault("MLFLOW_TRACKING_URI", os.environ.get("MLFLOW_TRACKING_URI", (root / "mlruns").as_uri()))
        env["MLFLOW_EXPERIMENT_NAME"] = Path(run_dir).name
    if "trackio" in backends:
        env["TRACKIO_DIR"] = os.environ.get("TRACKIO_DIR", str(root / "trackio"))
    return env


def log_round(backends: list[str], run_dir: Path, row: Row, step: int) -> None:
    """One round's metrics to every tracker, with the round as the step (so not the round itself, nor the
    per-stage seconds and per-rule survivors, which are bookkeeping rather than curves)."""
    values = flatten({k: v for k, v in row.items() if k not in (ROUND, SECONDS, SURVIVORS)})
    root = RunDir(Path(run_dir).resolve()).trackers
    name = Path(run_dir).name
    if "tensorboard" in backends:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(root / "tensorboard" / "rounds"))
        for key, value in values.items():
            writer.add_scalar(key, value, step)
        writer.close()
    if "wandb" in backends:
        import wandb

        run = wandb.init(project=os.environ.get("WANDB_PROJECT", "rsft"), name=name, id=_run_id(run_dir),
                         resume="allow", dir=str(root), reinit="finish_previous")
        run.log(values, step=step)
        run.finish()
    if "trackio" in backends:
        import trackio

        os.environ.setdefault("TRACKIO_DIR", str(root / "trackio"))
        trackio.init(project=name, name="rounds", resume="allow")
        trackio.log(values, step=step)
        trackio.finish()
    if "mlflow" in backends:
        import mlflow

        mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", (root / "mlruns").as_uri()))
        mlflow.set_experiment(name)
        id_file = root / "mlflow_run_id"
        run_id = id_file.read_text().strip() if id_file.exists() else None
        with mlflow.start_run(run_id=run_id, run_name="rounds") as active:
            mlflow.log_metrics({k.replace("@", "_at_"): v for k, v in values.items()}, step=step)
            id_file.parent.mkdir(parents=True, exist_ok=True)
            id_file.write_text(active.info.run_id)
