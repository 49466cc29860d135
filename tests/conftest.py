"""Shared fixtures: real tiny transformers models built from config, and a CLI runner."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rsft.config import TinyModelConfig
from rsft.tasks.tiny_model import char_tokenizer, tiny_llama

ROOT = Path(__file__).resolve().parents[1]
ALPHABET = "0123456789+="

torch.set_num_threads(2)


def make_model_dir(path: Path, alphabet: str = ALPHABET, init_range: float = 0.3, seed: int = 0,
                   hidden: int = 64, layers: int = 2, heads: int = 4) -> Path:
    """A random tiny Llama whose large init makes its distributions peaky and varied, so greedy and
    sampled outputs differ per prompt and EOS shows up at different steps."""
    tok = char_tokenizer(alphabet)
    model = tiny_llama(tok, TinyModelConfig(hidden_size=hidden, num_layers=layers, num_heads=heads,
                                            max_position_embeddings=64), seed=seed)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(seed)
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, init_range, generator=gen)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


# tests/vllm need vLLM in-process: they run in .venv-vllm (tests/test_vllm_venv.py starts them there)
collect_ignore = [] if importlib.util.find_spec("vllm") is not None else ["vllm"]


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("tiny") / "model")


def run_cli(*args: str, cwd: Path | None = None, check: bool = False, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "rsft.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"rsft {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc
