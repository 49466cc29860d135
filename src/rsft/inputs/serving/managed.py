"""`vllm serve` started and stopped by rsft: managed mode of the openai engine and of the judge scorer.

The server runs on 127.0.0.1 on a free port, in its own process group, with the interpreter `python`
(vLLM may live in a venv of its own: its CPU build pins an older transformers than rsft's). rsft
waits for ``/health``, uses it, and stops the whole group: at `stop`, at interpreter exit, and, as the
server is started with a parent-death signal, when rsft itself is killed. Its output goes to a log
file; a server that fails to start is a one-line error quoting the log's last line.

It starts vLLM's OpenAI-compatible server and nothing else: it does not download models or choose
GPUs (pass vLLM's own flags in `args`).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rsft.core.errors import RsftError

CPU_KV_CACHE_GIB = "4"


def cpu_kv_cache_env() -> dict[str, str]:
    """On a machine without CUDA, vLLM's CPU build reserves `gpu_memory_utilization` (0.92) of all RAM for
    its KV cache unless VLLM_CPU_KVCACHE_SPACE (GiB) is set, and refuses to start when anything else
    holds memory. rsft sets 4 GiB then, and says so; a value the user set is kept."""
    import torch

    if torch.cuda.is_available() or "VLLM_CPU_KVCACHE_SPACE" in os.environ:
        return {}
    from rsft.core.progress import notice

    notice(f"vllm on CPU: VLLM_CPU_KVCACHE_SPACE is not set; using {CPU_KV_CACHE_GIB} GiB for the KV cache "
           "(set it to choose)")
    return {"VLLM_CPU_KVCACHE_SPACE": CPU_KV_CACHE_GIB}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child, before exec: its own session, and SIGTERM when rsft dies (Linux prctl)."""
    os.setsid()
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ManagedServer:
    """One `vllm serve MODEL` process; `start` returns its base URL (…/v1)."""

    def __init__(self, model: str, python: str | None = None, dtype: str = "float32", args: list[str] = (),
                 served_name: str = "rsft", startup_timeout: float = 900.0, lora_rank: int | None = None,
                 port: int | None = None) -> None:
        self.model, self.python, self.dtype = model, python or sys.executable, dtype
        self.args, self.served_name, self.startup_timeout = list(args), served_name, startup_timeout
        self.lora_rank, self.port = lora_rank, port
        self.proc: subprocess.Popen | None = None
        self.log = Path(tempfile.mkstemp(prefix="rsft-vllm-serve-", suffix=".log")[1])
        self.base_url = ""

    def command(self, port: int) -> list[str]:
        # the server's own entry point: `vllm serve` reads the version of a distribution named "vllm",
        # which vLLM's CPU build (distribution "vllm-cpu") does not provide
        cmd = [self.python, "-m", "vllm.entrypoints.launchers.api_server.entry", "--model", self.model, "--host", "127.0.0.1",
               "--port", str(port), "--served-model-name", self.served_name, "--dtype", self.dtype]
        if self.lora_rank:
            cmd += ["--enable-lora", "--max-lora-rank", str(self.lora_rank)]
        return cmd + self.args

    def start(self) -> str:
        import httpx

        if not Path(self.python).exists():
            raise RsftError(f"engine_options.python {self.python!r}: no such interpreter")
        port = self.port or free_port()
        env = {**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True", **cpu_kv_cache_env()}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(self.command(port), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, preexec_fn=_die_with_parent)
        atexit.register(self.stop)
        root = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                self.stop()
                raise RsftError(f"vllm serve {self.model} exited with code {code} while starting: "
                                f"{self._last_log_line()} (log: {self.log})")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{root}/health", timeout=2).status_code == 200:
                    self.base_url = f"{root}/v1"
                    return self.base_url
            time.sleep(0.5)
        self.stop()
        raise RsftError(f"vllm serve {self.model} did not answer /health within {self.startup_timeout:.0f} s "
                        f"(log: {self.log})")

    def _last_log_line(self) -> str:
        lines = [x for x in self.log.read_text(errors="replace").splitlines() if x.strip()]
        return lines[-1].strip()[:300] if lines else "no output"

    def stop(self) -> None:
        """Stop the server's whole process group: SIGTERM, then SIGKILL after 30 s."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        with contextlib.suppress(ProcessLookupError):  # anything of the group that outlived its leader
            os.killpg(proc.pid, signal.SIGKILL)
        atexit.unregister(self.stop)
