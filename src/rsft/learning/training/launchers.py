"""Launchers: the command line that starts N training processes on this machine.

A launcher is a plain function ``(processes, module, args) -> argv``: given the
number of processes and a Python module with its arguments, it returns the
command that runs ``python -m module *args`` as that many ranks of one job,
with RANK, WORLD_SIZE and the rendezvous set in each rank's environment. The
built-ins are `torchrun` and `accelerate` (``train.launcher``); a user's
``"package.module:function"`` with the same signature is another (a cluster's
own wrapper, say). They are resolved by the registry, kind ``launcher``.

`build_launcher` checks a launcher once, where it is configured: the name
resolves and, for more than one process, the command it builds runs a program
that exists.

A launcher only builds the command. It does not run it, pick a backend (gloo
on CPU, NCCL on GPU is the training code's choice, `rsft.learning.training.sft`), or
span several machines: every built-in is single-node.
"""

from __future__ import annotations

import shutil
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rsft.core.errors import ConfigError
from rsft.core.registry import lookup

Launcher = Callable[[int, str, list[str]], list[str]]


def executable(name: str) -> str:
    """`name` from the running interpreter's bin directory (the venv rsft is installed in), else from PATH;
    the bin-directory path when it is in neither, so a check can name where it looked."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    return shutil.which(name) or str(beside)


def free_port() -> int:
    """A TCP port nobody listens on right now, for a launcher that needs a fixed rendezvous port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun(processes: int, module: str, args: list[str]) -> list[str]:
    """``torchrun --standalone``: a one-node rendezvous on a free port, so two jobs never collide."""
    return [executable("torchrun"), "--standalone", "--nnodes", "1", "--nproc_per_node", str(processes),
            "-m", module, *args]


def accelerate(processes: int, module: str, args: list[str]) -> list[str]:
    """``accelerate launch --multi_gpu``. Its `--cpu` flag starts a single process whatever
    `--num_processes` says; `--multi_gpu` starts N, and the training code picks gloo when there is no GPU.
    The flags given here override the user's accelerate config file, which still supplies anything else."""
    return [executable("accelerate"), "launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(free_port()), "-m", module, *args]


def build_launcher(spec: Any, key: str = "train.launcher", processes: int = 1) -> Launcher:
    """The launcher function a config names (the registry's builder for kind ``launcher``), checked: for
    `processes` > 1 the command it builds must be one whose program exists (`check_launcher`).

    This is the one launcher check. It runs where a launcher is configured (`TrainConfig` as the config
    loads, `RewardModelTraining` as it is made), so a typo or a missing `accelerate` is one line naming
    the key before any work, not a failed launch after the earlier stages ran."""
    if processes > 1:
        check_launcher(spec, processes, key)
    return _named(spec, key)


def _named(spec: Any, key: str) -> Launcher:
    launcher = lookup("launcher", spec, key)
    if not callable(launcher):
        raise ConfigError(f"key '{key}': {spec!r} is not a function (processes, module, args) -> argv")
    return launcher


def check_launcher(spec: Any, processes: int, key: str = "train.launcher") -> list[str]:
    """The command the launcher would run for `processes` ranks, built once: a list of strings whose
    program exists. Returns the command."""
    try:
        argv = _named(spec, key)(processes, "rsft.learning.training.worker", ["JOB.json"])
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever a user's launcher raises
        raise ConfigError(f"key '{key}': launcher {spec!r} failed to build a command "
                          f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(argv, (list, tuple)) or not argv or not all(isinstance(a, str) for a in argv):
        raise ConfigError(f"key '{key}': launcher {spec!r} must return the command as a list of strings, "
                          f"got {argv!r}")
    program = argv[0]
    if not (Path(program).is_file() or shutil.which(program)):
        raise ConfigError(f"key '{key}': launcher {spec!r} runs {program}, which does not exist "
                          "(install it into the environment rsft runs from)")
    return list(argv)
