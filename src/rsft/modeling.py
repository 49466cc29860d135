"""Loading a policy (model + tokenizer) from a path, with one-line errors.

The same `from_pretrained(path)` call serves the built-in tiny model (a local
directory rsft wrote) and any hub causal LM. A directory holding a LoRA adapter
is loaded onto its base and merged, so sampling always sees a plain model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from rsft.errors import RsftError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def check_model_path(path: str, what: str, need_config: bool = True) -> None:
    """A path that looks local must be a model directory (a tokenizer directory when `need_config` is False);
    a hub id (``org/name``) is left to from_pretrained."""
    p = Path(path)
    looks_local = p.is_absolute() or path.startswith(".") or p.exists() or path.count("/") > 1
    if not looks_local:
        return
    if not p.exists():
        raise RsftError(f"{what} {path!r}: no such directory")
    if not p.is_dir():
        raise RsftError(f"{what} {path!r}: is a file, expected a model directory")
    if need_config and not (p / "config.json").exists() and not (p / "adapter_config.json").exists():
        raise RsftError(f"{what} {path!r}: not a model directory (no config.json)")


def load_tokenizer(path: str, what: str = "model.path", trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    check_model_path(path, what, need_config=False)
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as e:  # noqa: BLE001 - OSError, ValueError, a tokenizers parse error...
        raise RsftError(f"{what} {path!r}: cannot load tokenizer ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(
    path: str, dtype: str = "float32", what: str = "model.path", trust_remote_code: bool = False
) -> PreTrainedModel:
    check_model_path(path, what)
    kwargs = {"dtype": DTYPES[dtype], "trust_remote_code": trust_remote_code}
    try:
        if (Path(path) / "adapter_config.json").exists():
            from peft import AutoPeftModelForCausalLM

            model = AutoPeftModelForCausalLM.from_pretrained(path, **kwargs).merge_and_unload()
        else:
            model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except Exception as e:  # noqa: BLE001 - OSError, ValueError, safetensors' own error on a corrupt file...
        raise RsftError(f"{what} {path!r}: cannot load model ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''})") from None
    return model.eval()


def local_checkpoint(path: str) -> Path:
    """The directory of a checkpoint; a hub id is resolved through the local HF cache (downloading if needed).

    For engines that read files themselves (CTranslate2's converter) rather than through from_pretrained.
    """
    if Path(path).is_dir():
        return Path(path)
    check_model_path(path, "model.path")  # a local-looking path that is not there
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(path))
    except Exception as e:  # hub errors vary by version: offline, not found, gated, no network
        raise RsftError(f"model.path {path!r}: not a local directory, and not in the HF cache or on the hub "
                        f"({type(e).__name__})") from None


def adapter_base(path: Path) -> Path | None:
    """The local base model of a LoRA adapter directory (None for a plain checkpoint or a hub base)."""
    if not (path / "adapter_config.json").exists():
        return None
    base = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path") or ""
    return Path(base) if base and Path(base).is_dir() else None


def read_config(path: str, what: str = "model.path", trust_remote_code: bool = False) -> Any:
    """A model's config without its weights: a local directory, or a hub id in the local cache."""
    from transformers import AutoConfig

    check_model_path(path, what)
    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as e:  # noqa: BLE001 - hub and parsing errors come in many types
        where = "its directory" if Path(path).is_dir() else "the local HF cache or the hub"
        raise RsftError(f"{what} {path!r}: cannot read its config from {where} "
                        f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None


def context_length(config: Any) -> int | None:
    """The longest sequence the model takes (positions), when its config says."""
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
