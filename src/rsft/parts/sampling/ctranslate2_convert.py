"""CTranslate2's converted models: converted once per checkpoint, compute type and CTranslate2 version,
cached by a hash of what the converter reads, and written atomically (an entry appears whole or not at
all, so two runs converting the same checkpoint do not collide). The engine that samples from them is
`rsft.parts.sampling.ctranslate2_engine`; nothing here samples.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import struct
import tempfile
from pathlib import Path

import ctranslate2

from rsft.core.errors import RsftError
from rsft.inputs.modeling import adapter_base, load_tokenizer

CACHE_FORMAT = 1  # bump to invalidate every cached conversion
AUTO_INT8_MIN_PARAMS = 10_000_000  # see resolve_compute_type
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def default_cache_dir() -> Path:
    """$RSFT_CACHE/ct2, or ~/.cache/rsft/ct2."""
    root = os.environ.get("RSFT_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "rsft") / "ct2"


def checkpoint_hash(path: Path, compute_type: str) -> str:
    """sha256 over every top-level file of the checkpoint (config, weights, tokenizer; and of a LoRA
    adapter's local base), the compute type and the CTranslate2 version: any change to what the
    converter reads gives a new cache entry."""
    h = hashlib.sha256(f"rsft-ct2/{CACHE_FORMAT}/{ctranslate2.__version__}/{compute_type}\n".encode())
    for f in sorted(p for p in path.iterdir() if p.is_file()):
        h.update(f"{f.name}\0{f.stat().st_size}\0".encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    base = adapter_base(path)
    if base is not None:
        h.update(checkpoint_hash(base, compute_type).encode())
    return h.hexdigest()[:32]


def count_parameters(path: Path) -> int:
    """Parameter count read from safetensors headers (no weights loaded); other weight files by size / 4."""
    base = adapter_base(path)
    total = count_parameters(base) if base is not None else 0
    for f in path.iterdir():
        if f.suffix == ".safetensors":
            with open(f, "rb") as fh:
                (size,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(size))
            total += sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__")
        elif f.suffix in WEIGHT_SUFFIXES:
            total += f.stat().st_size // 4
    return total


def resolve_compute_type(requested: str, n_params: int) -> str:
    """'auto' is int8 from ~10M parameters up, float32 below. Measured (bench/throughput.py, 2 cores):
    int8 samples 1.6x faster than float32 at 25M, 1.25x at 1M, but it changes the policy (~0.01
    nats/token of logprob error on random-init models, 0.25 on a peaky tiny one), so tiny models,
    whose runs sampling rarely limits, keep the exact float policy."""
    supported = ctranslate2.get_supported_compute_types("cpu")
    if requested == "auto":
        requested = "int8" if n_params >= AUTO_INT8_MIN_PARAMS and "int8" in supported else "float32"
    if requested not in supported:
        raise RsftError(f"ctranslate2 compute_type {requested!r} is not supported on this CPU ({sorted(supported)})")
    return requested


def convert_cached(path: Path, compute_type: str, cache_dir: Path | None = None,
                   trust_remote_code: bool = False) -> Path:
    """The converted model directory for `path`, converting only when the cache has no entry for it."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out = cache_dir / checkpoint_hash(path, compute_type)
    if ctranslate2.contains_model(str(out)):
        return out
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=cache_dir))
    try:
        source = path
        if (path / "adapter_config.json").exists():  # LoRA adapter: merge onto its base first
            from rsft.inputs.modeling import load_model

            source = tmp / "merged"
            load_model(str(path), trust_remote_code=trust_remote_code).save_pretrained(source)
            load_tokenizer(str(path), trust_remote_code=trust_remote_code).save_pretrained(source)
        converter = ctranslate2.converters.TransformersConverter(
            str(source), low_cpu_mem_usage=True, trust_remote_code=trust_remote_code)
        converter.convert(str(tmp / "model"), quantization=compute_type, force=True)
        try:
            os.rename(tmp / "model", out)  # atomic: the entry appears complete or not at all
        except OSError:
            if not ctranslate2.contains_model(str(out)):  # lost a race only if the winner's entry is whole
                raise
    except Exception as e:
        if isinstance(e, RsftError):
            raise
        raise RsftError(f"model.path {str(path)!r}: ctranslate2 conversion failed ({str(e).splitlines()[0]})") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
