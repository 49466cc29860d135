"""tests/vllm need vLLM in-process, which lives in .venv-vllm (its CPU build pins an older transformers than
.venv's): this test runs them there, so `make test` runs them and its summary counts them."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.conftest import ROOT
from tests.inputs.serving.vllm_venv import vllm_python


def run_vllm_tests(marker: str) -> None:
    python = vllm_python()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    proc = subprocess.run([python, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", "-m", marker, "tests/vllm"],
                          cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=3000)
    summary = [x for x in proc.stdout.splitlines() if re.search(r"\d+ (passed|failed|error)", x)]
    print(f"tests/vllm in {python}: {summary[-1] if summary else proc.stdout[-500:]}")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert summary and "passed" in summary[-1] and "skipped" not in summary[-1], summary


def test_the_vllm_tests_pass_in_the_vllm_venv():
    run_vllm_tests("not slow")


@pytest.mark.slow
def test_the_slow_vllm_tests_pass_in_the_vllm_venv():
    run_vllm_tests("slow")
