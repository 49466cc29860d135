"""Where `make test` installs vLLM's CPU build (.venv-vllm), and why a test that needs it skips."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
VENV = ROOT / ".venv-vllm"
PYTHON = VENV / "bin" / "python"


def vllm_python() -> str:
    """The interpreter that has vLLM, or a pytest skip saying why there is none."""
    if not PYTHON.exists():
        failed = VENV / ".failed"
        pytest.skip(f"no {VENV}: {failed.read_text().strip() if failed.exists() else 'run make vllm-venv'}")
    probe = subprocess.run([str(PYTHON), "-c", "import vllm"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"vllm does not import in {VENV}: {probe.stderr.strip().splitlines()[-1:]}")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # servers started by the tests inherit it
    return str(PYTHON)
