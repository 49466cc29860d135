"""The `ray` section, `rsft run --ray`, and Ray as an optional extra; no cluster is started here."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rsft.core.config import RayConfig, build_config
from rsft.core.errors import ConfigError, RsftError
from rsft.parts.distributed import connect
from rsft.parts.distributed.cluster import runtime_env


def test_no_ray_section_means_no_ray():
    cfg = build_config({})
    assert cfg.ray is None and not cfg.uses_ray


def test_an_empty_section_means_a_local_cluster_with_one_worker():
    cfg = build_config({"ray": {}})
    assert cfg.uses_ray and cfg.ray.address == "local" and cfg.ray.num_workers == 1


@pytest.mark.parametrize("ray, message", [
    ({"num_workers": 0}, "key 'ray.num_workers': input should be greater than or equal to 1, got 0"),
    ({"address": "localhost"}, "key 'ray.address': 'localhost' is not local, auto, ray://HOST:PORT or HOST:PORT"),
    ({"address": "http://head:10001"}, "key 'ray.address': 'http://head:10001' is not local, auto, "
                                       "ray://HOST:PORT or HOST:PORT"),
    ({"resources_per_worker": {"num_gpu": 1}}, "unknown key 'ray.resources_per_worker.num_gpu'"),
    ({"resources_per_worker": {"num_gpus": -1}}, "key 'ray.resources_per_worker.num_gpus': input should be greater "
                                                 "than or equal to 0, got -1"),
    ({"score_resources": {"custom": {"GPU": 1}}}, "key 'ray.score_resources.custom': 'GPU' is not a custom "
                                                  "resource; use num_cpus, num_gpus or memory"),
])
def test_a_bad_ray_setting_is_one_line_naming_the_key(ray, message):
    with pytest.raises(ConfigError) as err:
        build_config({"ray": ray})
    assert str(err.value) == f"config: {message}"


@pytest.mark.parametrize("address", ["local", "auto", "ray://head.example:10001", "10.0.0.5:6379"])
def test_every_address_form_loads(address):
    assert build_config({"ray": {"address": address}}).ray.address == address


@pytest.mark.parametrize("given, address", [
    ({}, "local"), ({"ray": None}, "local"), ({"ray": {"address": "auto", "enabled": False}}, "auto")])
def test_the_ray_flag_turns_ray_on_and_keeps_a_configured_address(given, address, tmp_path, monkeypatch):
    import yaml

    from rsft.cli import app
    from rsft.core.config import load_config
    from rsft.loop import rounds

    seen = {}
    monkeypatch.setattr(rounds, "run_from_file", lambda path, overrides: seen.setdefault(
        "cfg", load_config(path, overrides)) and tmp_path)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(given))
    result = CliRunner().invoke(app, ["run", str(tmp_path / "c.yaml"), "--ray", "ray.num_workers=3"])
    assert result.exit_code == 0, result.output
    assert seen["cfg"].uses_ray and seen["cfg"].ray.address == address and seen["cfg"].ray.num_workers == 3


def test_a_remote_cluster_s_workers_import_from_the_working_directory_and_the_user_s_env_wins(tmp_path,
                                                                                              monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = runtime_env(RayConfig(address="auto", runtime_env={"env_vars": {"A": "1"}, "pip": ["x"]}))
    assert env == {"env_vars": {"PYTHONPATH": f"{tmp_path}:${{PYTHONPATH}}", "A": "1"}, "pip": ["x"]}


def test_asking_for_ray_without_it_installed_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ConfigError, match=r"^key 'ray': Ray is not installed \(pip install 'rsft\[ray\]'\)$"):
        connect(RayConfig())


def test_no_module_imports_ray_when_it_is_imported():
    """`import ray` only inside functions, so rsft imports without the extra (a subprocess without ray
    would say the same, in seconds more)."""
    src = Path(__file__).resolve().parents[3] / "src" / "rsft"
    at_import = []
    for f in src.rglob("*.py"):
        todo = list(ast.parse(f.read_text()).body)
        while todo:
            node = todo.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "ray" for a in node.names) or \
                    isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "ray":
                at_import.append(f"{f.relative_to(src)}:{node.lineno}")
            todo.extend(ast.iter_child_nodes(node))
    assert at_import == []


def test_an_unreachable_cluster_is_one_line_within_the_connect_timeout(monkeypatch):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("this process is already connected to a cluster")
    for address in ("ray://127.0.0.1:1", "127.0.0.1:1"):
        with pytest.raises(RsftError, match=rf"^key 'ray.address': no Ray cluster answers at {address} "):
            connect(RayConfig(address=address, connect_timeout=2))
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # what `auto` reads first
    with pytest.raises(RsftError, match=r"^key 'ray.address': no Ray cluster answers at auto "):
        connect(RayConfig(address="auto", connect_timeout=2))
    assert not ray.is_initialized()
