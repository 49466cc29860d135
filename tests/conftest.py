"""Shared fixtures: real tiny transformers models built from config, and a CLI runner."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rsft.core.config import TinyModelConfig
from rsft.inputs.tasks.tiny_model import char_tokenizer, tiny_llama

ROOT = Path(__file__).resolve().parents[1]
ALPHABET = "0123456789+="
# where rsft caches conversions (GGUF -> HF, HF -> CTranslate2): the project's own, as `make test` sets it,
# so a test never reads or fills a user's ~/.cache
os.environ.setdefault("RSFT_CACHE", str(ROOT / ".cache" / "rsft"))
SMOL_GGUF = ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

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


def _real_model() -> Path:
    """The SmolLM2-135M-Instruct GGUF file `make model` fetched (through the package registry). Without it a
    real-model test skips and says how to get it, except under `make test` (RSFT_REAL_MODEL=required),
    where a missing model is a failure: CI must not pass by skipping them."""
    if not SMOL_GGUF.is_file():
        message = f"the real model is not here ({SMOL_GGUF}); run `make model`"
        if os.environ.get("RSFT_REAL_MODEL") == "required":
            pytest.fail(message)
        pytest.skip(message)
    return SMOL_GGUF


@pytest.fixture(scope="session")
def smol_gguf() -> Path:
    return _real_model()


@pytest.fixture(scope="session")
def smol_dir() -> Path:
    """SmolLM2-135M-Instruct as an HF checkpoint in float32 (the GGUF's dequantized weights exactly),
    converted by rsft's own GGUF path (cached: `make model` did it once)."""
    from rsft.inputs.gguf import convert_gguf

    return convert_gguf(_real_model(), "float32")


@pytest.fixture(scope="session")
def smol_bf16() -> Path:
    """The same model saved in bfloat16, the dtype the hub checkpoint has."""
    from rsft.inputs.gguf import convert_gguf

    return convert_gguf(_real_model(), "bfloat16")


def run_cli(*args: str, cwd: Path | None = None, check: bool = False, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "rsft.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"rsft {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


# The fast tier (`make test-unit`, under 2 minutes): no model training, no subprocess runs, no real model.
# Everything below is marked `integration` here, in one place, so `-m "not slow and not integration"` is the
# fast tier and `make test` (not slow) runs both. A folder is integration as a whole where its tests run the
# loop, a cluster or the real model; single files and fixtures name the rest.
INTEGRATION_DIRS = {"e2e", "faults", "real", "distributed", "scale", "vllm", "training", "serving"}
INTEGRATION_FILES = {"test_readme.py", "test_vllm_venv.py", "test_runlock.py", "test_ctf_run.py",
                     "test_rollout_context.py", "test_best_of_n.py", "test_speculative.py", "test_reward_model.py",
                     "test_sandbox.py", "test_code.py", "test_trl_compat.py", "test_ctranslate2_engine.py",
                     "test_transformers_engine.py", "test_vocabulary.py", "test_openai_engine.py", "test_judge.py",
                     "test_humaneval.py"}
INTEGRATION_FIXTURES = {"smol_dir", "smol_gguf", "smol_bf16"}
INTEGRATION_TESTS = {"test_the_warm_start_checks_on_a_dev_split_with_the_judge",  # trains the warm start
                     "test_a_hostile_agent_is_contained"}  # runs the agent's tools in sandboxed processes


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        rel = Path(str(item.fspath)).relative_to(ROOT / "tests")
        if (INTEGRATION_DIRS & set(rel.parts[:-1]) or rel.name in INTEGRATION_FILES
                or item.name.split("[")[0] in INTEGRATION_TESTS
                or INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ()))):
            item.add_marker(pytest.mark.integration)


def invoke(args: list[str], cwd: Path) -> tuple[int, str, str]:
    """`rsft ARGS` through the CLI's own entry point in this process: (exit code, stdout, stderr) as a shell
    would see them, without an interpreter start and the imports (run_cli runs a real process)."""
    import contextlib
    import io

    from rsft.cli import main

    out, err = io.StringIO(), io.StringIO()
    old_argv, old_cwd = sys.argv, os.getcwd()
    sys.argv = ["rsft", *args]
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
                rc = 0
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
    return rc, out.getvalue(), err.getvalue()
