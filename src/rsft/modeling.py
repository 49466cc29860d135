"""Loading a policy (model + tokenizer) from a path, with one-line errors.

The same `from_pretrained(path)` call serves the built-in tiny model (a local
directory rsft wrote) and any hub causal LM. A directory holding a LoRA adapter
is loaded onto its base and merged, so sampling always sees a plain model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from rsft.errors import RsftError

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _check_path(path: str, what: str) -> None:
    p = Path(path)
    looks_local = p.is_absolute() or path.startswith(".") or p.exists() or path.count("/") > 1
    if looks_local and not (p / "config.json").exists() and not (p / "adapter_config.json").exists():
        if not p.exists():
            raise RsftError(f"{what} {path!r}: no such directory")
        raise RsftError(f"{what} {path!r}: not a model directory (no config.json)")


def load_tokenizer(path: str, what: str = "model.path", trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    _check_path(path, what)
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise RsftError(f"{what} {path!r}: cannot load tokenizer ({str(e).splitlines()[0]})") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(
    path: str, dtype: str = "float32", what: str = "model.path", trust_remote_code: bool = False
) -> PreTrainedModel:
    _check_path(path, what)
    kwargs = {"dtype": _DTYPES[dtype], "trust_remote_code": trust_remote_code}
    try:
        if (Path(path) / "adapter_config.json").exists():
            from peft import AutoPeftModelForCausalLM

            model = AutoPeftModelForCausalLM.from_pretrained(path, **kwargs).merge_and_unload()
        else:
            model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        raise RsftError(f"{what} {path!r}: cannot load model ({str(e).splitlines()[0]})") from None
    return model.eval()
