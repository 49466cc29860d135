"""GGUF files as a model source: converted once into an HF checkpoint, with its tokenizer corrected.

Users bring GGUF files (llama.cpp's format). transformers reads them (`from_pretrained(dir,
gguf_file=NAME)`, the `gguf` package, `pip install 'rsft[gguf]'`) and dequantizes the weights, but what
it builds is not yet a checkpoint rsft can train and sample correctly:

- `save_pretrained` refuses the model while ``config.quantization_config`` (the GGUF's) is set;
- the tokenizer's EOS may disagree with the chat template's end-of-turn token and with the config's EOS
  (a SmolLM2 conversion has been seen with ``<|im_start|>`` as EOS, where turns end with ``<|im_end|>``);
- the pre-tokenizer loses steps llama.cpp keeps as a named type (``tokenizer.ggml.pre``): SmolLM's and
  StarCoder's split every digit on its own before the byte-level split, which changes how a run of
  digits after two spaces tokenizes.

`convert_gguf` fixes each of these, writes the checkpoint into a cache entry named by the file's sha256
and the dtype (``$RSFT_CACHE/gguf/``; written to a temporary directory and renamed, so a killed
conversion leaves nothing half-written), and says in one line what it converted and what it corrected.
The weights are dequantized, not the original ones: a Q4_1 file gives a model close to the one that was
quantized, not equal to it. float32 holds the dequantized values exactly; bfloat16 rounds them.

It does not convert architectures transformers' GGUF reader does not know, and does not requantize.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from rsft.core.errors import RsftError

FORMAT = 1  # bump to invalidate every cached conversion
RECORD = "rsft-gguf.json"  # beside the converted checkpoint: where it came from and what was corrected
# llama.cpp pre-tokenizer types that split each digit on its own before the byte-level regex
# (llama-vocab.cpp: "\\p{N}" first, then the GPT-2 pattern)
DIGIT_SPLIT_PRE = {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"}
DTYPES = ("float32", "bfloat16", "float16")


def gguf_file(path: str | Path) -> Path | None:
    """The GGUF file a model path names: the file itself, or the one .gguf in a directory that holds no
    HF checkpoint (config.json); None for anything else. Two .gguf files in one directory are an error."""
    p = Path(path)
    if p.suffix == ".gguf":
        if not p.is_file():
            raise RsftError(f"{path}: no such GGUF file")
        return p
    if p.is_dir() and not (p / "config.json").exists() and not (p / "adapter_config.json").exists():
        found = sorted(p.glob("*.gguf"))
        if len(found) > 1:
            raise RsftError(f"{path}: holds {len(found)} GGUF files ({', '.join(f.name for f in found)}); "
                            "name the one to use")
        return found[0] if found else None
    return None


def cache_root() -> Path:
    root = os.environ.get("RSFT_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "rsft") / "gguf"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve(path: str, dtype: str = "float32") -> str:
    """`path` itself, or for a GGUF source the directory of its (cached) conversion."""
    source = gguf_file(path)
    return str(convert_gguf(source, dtype)) if source is not None else path


@functools.lru_cache(maxsize=None)
def _converted(source: str, size: int, mtime: float, dtype: str, root: str) -> Path:
    """One conversion per (file, dtype) and process; the file's size and mtime key the in-process memo,
    its sha256 the cache on disk."""
    src = Path(source)
    digest = file_sha256(src)
    out = Path(root) / f"{digest[:32]}-{dtype}-v{FORMAT}"
    if (out / RECORD).is_file():
        _say(src, out, json.loads((out / RECORD).read_text(encoding="utf-8")), cached=True)
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        record = _convert(src, tmp / "model", dtype, digest)
        try:
            os.rename(tmp / "model", out)
        except OSError:
            if not (out / RECORD).is_file():  # lost a race only if the winner's entry is whole
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _say(src, out, record, cached=False)
    return out


def convert_gguf(source: Path, dtype: str = "float32", cache_dir: Path | None = None) -> Path:
    """The HF checkpoint directory converted from the GGUF file `source` (converting only on a cache miss)."""
    if dtype not in DTYPES:
        raise RsftError(f"GGUF conversion dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    st = Path(source).stat()
    return _converted(str(Path(source).resolve()), st.st_size, st.st_mtime, dtype, str(cache_dir or cache_root()))


def _convert(src: Path, out: Path, dtype: str, digest: str) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import gguf  # noqa: F401 - transformers' GGUF reader needs it
    except ImportError:
        raise RsftError(f"{src}: reading GGUF files needs the gguf package (pip install 'rsft[gguf]')") from None
    from rsft.core.progress import notice, quiet_hf

    quiet_hf()
    notice(f"{src}: converting the GGUF file to an HF checkpoint (once; cached by its sha256)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
        model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    except Exception as e:  # noqa: BLE001 - the reader raises many types for files it cannot read
        raise RsftError(f"{src}: transformers cannot read this GGUF file ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''})") from None
    meta = _metadata(src)
    corrections = fix_tokenizer(tokenizer, model, meta)
    # save_pretrained refuses a model that says it is quantized; its weights are plain dequantized tensors
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    for name in ("hf_quantizer", "quantization_method"):
        if getattr(model, name, None) is not None:
            setattr(model, name, None)
    model.is_quantized = False
    model = model.to(getattr(torch, dtype))
    model.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    kinds = sorted({t for t in meta.get("tensor_types", []) if t not in ("F32", "F16", "BF16")})
    record = {"source": str(src), "sha256": digest, "dtype": dtype, "quantization": kinds,
              "architecture": meta.get("general.architecture"), "corrections": corrections}
    (out / RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return record


def _metadata(src: Path) -> dict[str, Any]:
    """The GGUF fields rsft reads (pre-tokenizer type, token ids, architecture) and the tensor types."""
    from gguf import GGUFReader

    reader = GGUFReader(str(src))
    out: dict[str, Any] = {}
    for key in ("general.architecture", "tokenizer.ggml.pre", "tokenizer.ggml.eos_token_id",
                "tokenizer.ggml.bos_token_id", "tokenizer.ggml.padding_token_id"):
        field = reader.fields.get(key)
        if field is not None:
            try:
                out[key] = field.contents()
            except Exception:  # noqa: BLE001, S112 - an unreadable optional field is simply absent
                continue
    out["tensor_types"] = sorted({t.tensor_type.name for t in reader.tensors})
    return out


def fix_tokenizer(tokenizer: Any, model: Any, meta: dict[str, Any]) -> list[str]:
    """Make the converted tokenizer agree with the chat template, the model config and llama.cpp's
    pre-tokenizer; returns what was changed, one phrase each."""
    from rsft.inputs.data.formats import end_of_turn_token

    changed: list[str] = []
    pre = meta.get("tokenizer.ggml.pre")
    if pre in DIGIT_SPLIT_PRE and _add_digit_split(tokenizer):
        changed.append(f"restored the digit-splitting pre-tokenizer step of {pre!r}")
    eot = end_of_turn_token(tokenizer)
    config_eos = _ids(getattr(model.config, "eos_token_id", None)) | _ids(model.generation_config.eos_token_id)
    gguf_eos = meta.get("tokenizer.ggml.eos_token_id")
    wanted = eot if eot is not None else (tokenizer.convert_ids_to_tokens(int(gguf_eos))
                                           if gguf_eos is not None else None)
    if wanted is not None and tokenizer.eos_token != wanted:
        changed.append(f"eos_token {tokenizer.eos_token!r} -> {wanted!r} (the chat template ends turns with it)"
                       if eot is not None else f"eos_token {tokenizer.eos_token!r} -> {wanted!r} (the GGUF's EOS)")
        tokenizer.eos_token = wanted
    eos_id = tokenizer.eos_token_id
    if eos_id is not None and eos_id not in config_eos:
        ids = sorted(config_eos | {eos_id})
        model.generation_config.eos_token_id = ids if len(ids) > 1 else ids[0]
        changed.append(f"generation_config.eos_token_id -> {model.generation_config.eos_token_id}")
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
        changed.append(f"pad_token unset -> {tokenizer.eos_token!r} (pad == eos)")
    if model.generation_config.pad_token_id is None and tokenizer.pad_token_id is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return changed


def _ids(value: Any) -> set[int]:
    if value is None:
        return set()
    return {int(v) for v in value} if isinstance(value, (list, tuple)) else {int(value)}


def _add_digit_split(tokenizer: Any) -> bool:
    """Put `Digits(individual_digits=True)` before the byte-level pre-tokenizer, unless it is there."""
    from tokenizers import pre_tokenizers

    backend = tokenizer.backend_tokenizer
    current = backend.pre_tokenizer
    if current is not None and "Digits" in repr(current):
        return False
    steps = [pre_tokenizers.Digits(individual_digits=True)]
    if current is not None:
        steps.append(current)
    backend.pre_tokenizer = pre_tokenizers.Sequence(steps)
    return True


_SAID: set[str] = set()


def _say(src: Path, out: Path, record: dict[str, Any], cached: bool) -> None:
    """One line per conversion and process: what was converted from what, and what was corrected."""
    from rsft.core.progress import notice

    if str(out) in _SAID:
        return
    _SAID.add(str(out))
    quant = "/".join(record.get("quantization") or []) or "unquantized"
    fixed = "; ".join(record.get("corrections") or []) or "nothing to correct"
    how = "using its cached conversion" if cached else "converted"
    notice(f"{src}: {how} {out} ({quant} weights dequantized to {record['dtype']}, not the original weights; "
           f"tokenizer: {fixed})")
