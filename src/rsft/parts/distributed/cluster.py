"""Joining a Ray cluster, and turning the config's resources into what Ray reserves.

`connect` starts a local cluster (``ray.address: local``) or joins the one the
address names, once per process. An address that does not answer is a
one-line error naming ``ray.address`` within ``ray.connect_timeout`` seconds:
Ray's own connect retries for half a minute (Ray Client) or minutes (a GCS
address) before it gives up, so the address is probed with a plain TCP
connection first. `check_ray` does the cheap part of that (Ray imports, the
address answers) for preflight, without starting anything.

Workers must import rsft and the user's ``module:function`` code. On a local
cluster they do already: Ray starts them in the driver's working directory with
it on ``sys.path``. On a remote cluster the working directory is put on
``PYTHONPATH`` (which helps on one machine or a shared filesystem), and
``ray.runtime_env`` passes anything else through to Ray (``working_dir``,
``pip``); rsft does not upload code by itself, since a run directory beside the
code can hold gigabytes of checkpoints.

Ray is imported inside functions only: without the ``ray`` extra, importing
this module works and asking for Ray is a one-line error.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from rsft.core.config import RayConfig, RayResources
from rsft.core.errors import ConfigError, RsftError
from rsft.core.progress import notice

INSTALL = "pip install 'rsft[ray]'"


def require_ray() -> Any:
    """The `ray` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"key 'ray': Ray is not installed ({INSTALL})") from None
    return ray


def check_ray(cfg: RayConfig) -> None:
    """Ray imports and the cluster's address answers; starts nothing (for preflight)."""
    ray = require_ray()
    if cfg.address != "local" and not ray.is_initialized():
        _probe(cfg)


def connect(cfg: RayConfig) -> None:
    """Start or join the cluster `cfg.address` names; does nothing when this process is already connected
    (to whichever cluster: the first connection wins, as with `ray.init`)."""
    ray = require_ray()
    if ray.is_initialized():
        return
    if cfg.address == "local":
        # address="local" starts a new cluster even when RAY_ADDRESS names another one
        try:
            ray.init(address="local", include_dashboard=False, logging_level=logging.ERROR,
                     runtime_env=cfg.runtime_env or None)
        except (ConnectionError, TimeoutError, RuntimeError, ValueError, OSError) as e:
            raise RsftError(f"key 'ray.address': cannot start a local Ray cluster: {one_line(e)}") from None
        _watch_local_cluster()
        return
    _probe(cfg)
    try:
        ray.init(address=cfg.address, logging_level=logging.ERROR, runtime_env=runtime_env(cfg))
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as e:
        raise RsftError(f"key 'ray.address': cannot join the Ray cluster at {cfg.address}: {one_line(e)}") from None


def _watch_local_cluster() -> None:
    """Start `rsft.parts.distributed.reaper` for the cluster just started (Linux: it reads /proc), so a killed
    driver does not leave the cluster's daemons running."""
    try:
        from ray._private import worker as ray_worker

        session = ray_worker._global_node.session_name
    except (ImportError, AttributeError):  # a private attribute: if it moves, only the watchdog is lost
        session = None
    if not session or not Path("/proc/self/cmdline").exists():
        notice("ray: no watchdog for the local cluster here (it needs Linux's /proc and this Ray's session name): "
               "if this run is killed, stop the cluster's processes with `ray stop`")
        return
    subprocess.Popen([sys.executable, "-m", "rsft.parts.distributed.reaper", str(os.getpid()), session],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)


def runtime_env(cfg: RayConfig) -> dict[str, Any]:
    """The working directory on the workers' PYTHONPATH (appended to theirs), under the user's runtime_env."""
    env = {"env_vars": {"PYTHONPATH": f"{Path.cwd()}{os.pathsep}${{PYTHONPATH}}"}}
    user = dict(cfg.runtime_env)
    env["env_vars"].update(user.pop("env_vars", None) or {})
    return {**env, **user}


def _probe(cfg: RayConfig) -> None:
    """A TCP connection to the address, so an unreachable cluster fails in seconds, not minutes."""
    address = cfg.address
    if address == "auto":
        address = _auto_address(cfg)
        if address is None:
            notice("ray.address auto: this Ray cannot tell which address auto means, so it is not checked first; "
                   "if no cluster answers, joining may take minutes to fail")
            return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=cfg.connect_timeout):
            pass
    except OSError as e:
        reason = "timed out" if isinstance(e, TimeoutError) else (e.strerror or type(e).__name__)
        raise RsftError(f"key 'ray.address': no Ray cluster answers at {cfg.address} ({reason} after "
                        f"{cfg.connect_timeout:g} s; ray.connect_timeout)") from None


def _auto_address(cfg: RayConfig) -> str | None:
    """What `auto` resolves to (RAY_ADDRESS, or the cluster `ray start` left on this machine); None when
    Ray's private helper is not there to ask."""
    env = os.environ.get("RAY_ADDRESS")
    if env:
        return env if env not in ("auto", "local") else None
    try:
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:
        return None
    try:
        return canonicalize_bootstrap_address("auto")
    except ConnectionError:
        raise RsftError("key 'ray.address': auto found no running Ray cluster on this machine (start one with "
                        "`ray start --head`, or use address: local)") from None
    except Exception:  # noqa: BLE001 - a private helper: if it changes, ray.init says what it says
        return None


def ray_options(res: RayResources, gpus: float) -> dict[str, Any]:
    """`.options(...)` for an actor or task reserving `res` (`gpus` when num_gpus is not set)."""
    out: dict[str, Any] = {"num_cpus": res.num_cpus, "num_gpus": gpus if res.num_gpus is None else res.num_gpus}
    if res.memory is not None:
        out["memory"] = res.memory
    if res.custom:
        out["resources"] = dict(res.custom)
    return out


def bundle(options: dict[str, Any]) -> dict[str, float]:
    """The placement-group bundle holding one worker with these options (zeros left out)."""
    out = {"CPU": options["num_cpus"], "GPU": options["num_gpus"], "memory": options.get("memory", 0),
           **options.get("resources", {})}
    return {k: float(v) for k, v in out.items() if v}


def cluster_gpus() -> float:
    return float(require_ray().cluster_resources().get("GPU", 0))


def check_fits(cfg: RayConfig, options: dict[str, Any], count: int, key: str) -> None:
    """On a local cluster (a fixed size), `count` workers that cannot all be placed are an error now, not a
    wait of ray.start_timeout. A remote cluster may grow (an autoscaler), so it is left to the timeout."""
    if cfg.address != "local":
        return
    have = require_ray().cluster_resources()
    for name, amount in bundle(options).items():
        if amount * count > have.get(name, 0) + 1e-9:
            raise RsftError(f"key '{key}': {count} × {amount:g} {name} do not fit on the local Ray cluster, which "
                            f"has {have.get(name, 0):g} {name}")


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
