"""Launchers are a registry kind: built-in names and a user's 'module:function', checked before any work."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rsft.core.config import build_config
from rsft.core.errors import ConfigError, DataError
from rsft.core.registry import resolve
from rsft.learning.training.launchers import check_launcher
from rsft.learning.training.preference import RewardModelTraining

USER_LAUNCHERS = '''
def srun(processes, module, args):
    return ["/usr/bin/env", "srun", "-n", str(processes), "python", "-m", module, *args]


def missing(processes, module, args):
    return ["/nowhere/launch", str(processes), module, *args]


def broken(processes, module, args):
    return "torchrun -m x"
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_launchers.py").write_text(USER_LAUNCHERS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_launchers"


def test_the_built_ins_build_a_command_for_n_processes():
    torchrun = resolve("launcher", "torchrun")(2, "rsft.learning.training.worker", ["JOB.json"])
    assert Path(torchrun[0]).name == "torchrun" and Path(torchrun[0]).is_file()
    assert torchrun[torchrun.index("--nproc_per_node") + 1] == "2" and torchrun[-3:] == ["-m", "rsft.learning.training.worker",
                                                                                          "JOB.json"]
    accelerate = resolve("launcher", "accelerate")(3, "m", ["a"])
    assert Path(accelerate[0]).name == "accelerate" and accelerate[1] == "launch"
    assert "--multi_gpu" in accelerate and "--cpu" not in accelerate  # --cpu starts one process, whatever N says
    assert accelerate[accelerate.index("--num_processes") + 1] == "3" and accelerate[-3:] == ["-m", "m", "a"]
    assert Path(torchrun[0]).parent == Path(sys.executable).parent  # the venv rsft runs from


def test_a_user_launcher_is_a_module_function(user_module):
    cfg = build_config({"train": {"processes": 4, "launcher": f"{user_module}:srun"}})
    argv = resolve("launcher", cfg.train.launcher)(cfg.train.processes, "rsft.learning.training.worker", ["J"])
    assert argv == ["/usr/bin/env", "srun", "-n", "4", "python", "-m", "rsft.learning.training.worker", "J"]
    assert check_launcher(cfg.train.launcher, 4)[0] == "/usr/bin/env"


def test_an_unknown_launcher_or_no_process_is_one_line_naming_the_key():
    with pytest.raises(ConfigError, match=r"key 'train.launcher': unknown launcher 'nope', expected one of "
                                          r"\['accelerate', 'torchrun'\]"):
        build_config({"train": {"launcher": "nope"}})
    with pytest.raises(ConfigError, match=r"key 'train.processes': input should be greater than or equal to 1"):
        build_config({"train": {"processes": 0}})
    with pytest.raises(DataError, match="processes = 0 is out of range"):
        RewardModelTraining(init="m", processes=0)
    with pytest.raises(ConfigError, match="unknown launcher 'nope'"):
        RewardModelTraining(init="m", processes=2, launcher="nope")


def test_a_launcher_whose_program_is_missing_fails_the_check(user_module):
    with pytest.raises(ConfigError, match=r"key 'train.launcher': launcher 'my_launchers:missing' runs "
                                          r"/nowhere/launch, which does not exist"):
        check_launcher(f"{user_module}:missing", 2)
    with pytest.raises(ConfigError, match="must return the command as a list of strings"):
        check_launcher(f"{user_module}:broken", 2)


def test_the_launcher_is_checked_once_as_the_config_loads(user_module):
    """With processes > 1 the program is checked where the name is, as the config loads (preflight and
    the reward-model command do not check it again); one process never runs the launcher."""
    with pytest.raises(ConfigError, match=r"key 'train.launcher': launcher 'my_launchers:missing' runs "
                                          r"/nowhere/launch, which does not exist"):
        build_config({"train": {"processes": 2, "launcher": f"{user_module}:missing"}})
    assert build_config({"train": {"launcher": f"{user_module}:missing"}}).train.processes == 1
    with pytest.raises(ConfigError, match=r"key 'launcher': launcher 'my_launchers:broken' must return"):
        RewardModelTraining(init="m", processes=2, launcher=f"{user_module}:broken")
