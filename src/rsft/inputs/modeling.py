"""Loading a policy (model + tokenizer) from a path, with one-line errors, and what it says about stopping.

The same `from_pretrained(path)` call serves the built-in tiny model (a local
directory rsft wrote) and any hub causal LM. A directory holding a LoRA adapter
is loaded onto its base and merged, so sampling always sees a plain model. A GGUF
file (or a directory holding one) is converted once into an HF checkpoint
(`rsft.inputs.gguf`) and that checkpoint is what every loader here reads.

`stop_token_ids` is the one definition of "the model has finished" that every
engine uses: the tokenizer's EOS, the generation config's EOS (an int or a list)
and the chat template's end-of-turn token.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rsft.core.errors import RsftError
from rsft.inputs.data.formats import end_of_turn_token

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class _Dtypes(Mapping[str, "torch.dtype"]):
    """The weight dtypes rsft loads by name; torch is imported on the first lookup, not with this module,
    so that what only reads configs (the CLI refusing a bad config) starts without torch and transformers."""

    NAMES = ("float32", "bfloat16", "float16")

    def __getitem__(self, name: str) -> torch.dtype:
        import torch

        if name not in self.NAMES:
            raise KeyError(name)
        return getattr(torch, name)

    def __contains__(self, name: object) -> bool:
        return name in self.NAMES

    def __iter__(self) -> Iterator[str]:
        return iter(self.NAMES)

    def __len__(self) -> int:
        return len(self.NAMES)


DTYPES = _Dtypes()


def resolve_path(path: str, what: str = "model.path") -> str:
    """`path`, or for a GGUF file (or a directory holding one) its converted checkpoint (`rsft.inputs.gguf`)."""
    if not (path.endswith(".gguf") or Path(path).is_dir()):
        return path
    from rsft.inputs import gguf

    try:
        return gguf.resolve(path)
    except RsftError as e:
        raise RsftError(f"{what}: {e}") from None


def check_model_path(path: str, what: str, need_config: bool = True) -> None:
    """A path that looks local must be a model directory (a tokenizer directory when `need_config` is False)
    or a GGUF file; a hub id (``org/name``) is left to from_pretrained."""
    if path.endswith(".gguf"):
        if not Path(path).is_file():
            raise RsftError(f"{what} {path!r}: no such GGUF file")
        return
    p = Path(path)
    looks_local = p.is_absolute() or path.startswith(".") or p.exists() or path.count("/") > 1
    if not looks_local:
        return
    if not p.exists():
        raise RsftError(f"{what} {path!r}: no such directory")
    if not p.is_dir():
        raise RsftError(f"{what} {path!r}: is a file, expected a model directory")
    if need_config and not (p / "config.json").exists() and not (p / "adapter_config.json").exists() \
            and not any(p.glob("*.gguf")):
        raise RsftError(f"{what} {path!r}: not a model directory (no config.json)")


def load_tokenizer(path: str, what: str = "model.path", trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    check_model_path(path, what, need_config=False)
    path = resolve_path(path, what)
    try:
        from transformers import AutoTokenizer

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
    path = resolve_path(path, what)
    kwargs = {"dtype": DTYPES[dtype], "trust_remote_code": trust_remote_code}
    try:
        if (Path(path) / "adapter_config.json").exists():
            from peft import AutoPeftModelForCausalLM

            model = AutoPeftModelForCausalLM.from_pretrained(path, **kwargs).merge_and_unload()
        else:
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except Exception as e:  # noqa: BLE001 - OSError, ValueError, safetensors' own error on a corrupt file...
        raise RsftError(f"{what} {path!r}: cannot load model ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''})") from None
    return model.eval()


def local_checkpoint(path: str) -> Path:
    """The directory of a checkpoint; a hub id is resolved through the local HF cache (downloading if needed).

    For engines that read files themselves (CTranslate2's converter) rather than through from_pretrained.
    """
    check_model_path(path, "model.path")  # a local-looking path that is not there
    path = resolve_path(path)
    if Path(path).is_dir():
        return Path(path)
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
    path = resolve_path(path, what)
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


def stop_token_ids(tokenizer: Any, generation_eos: Any = None) -> list[int]:
    """Every id that ends a completion: the tokenizer's EOS, the generation config's `eos_token_id`
    (`generation_eos`: an int or a list) and the chat template's end-of-turn token.

    Engines stop on all of them and record the one that stopped a sample as its last token id (it is
    trained on: a model that never sees its end-of-turn in the labels never learns to stop)."""
    ids: set[int] = set()
    if generation_eos is not None:
        ids |= {int(i) for i in (generation_eos if isinstance(generation_eos, (list, tuple)) else [generation_eos])}
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    eot = end_of_turn_token(tokenizer)
    if eot is not None:
        ids.add(int(tokenizer.convert_tokens_to_ids(eot)))
    return sorted(ids)


def generation_eos(path: str | Path) -> Any:
    """`eos_token_id` of a checkpoint's generation_config.json (else its config.json), or None."""
    path = Path(path)
    base = adapter_base(path) or path  # an adapter directory has no model config of its own
    for name in ("generation_config.json", "config.json"):
        f = base / name
        if f.is_file():
            try:
                value = json.loads(f.read_text(encoding="utf-8")).get("eos_token_id")
            except (OSError, json.JSONDecodeError):
                continue
            if value is not None:
                return value
    return None


_VOCAB_SAID: set[tuple[str, int, int]] = set()


def vocabulary_limit(tokenizer: Any, rows: int, where: str) -> int:
    """How many token ids a model with `rows` embedding (output) rows can emit through `tokenizer`, and
    one line, once, when the two disagree in size.

    Real checkpoints disagree in both directions: a tokenizer may carry special tokens past the last
    embedding row (the model can never emit them, and a prompt holding one cannot be run), and an
    embedding may be padded past the tokenizer (rows no token decodes to: engines never sample them). The
    ids below the limit are the ones both sides share."""
    n = len(tokenizer)
    key = (where, n, rows)
    if n != rows and key not in _VOCAB_SAID:
        _VOCAB_SAID.add(key)
        from rsft.core.progress import notice

        if n > rows:
            extra = tokenizer.convert_ids_to_tokens(list(range(rows, min(n, rows + 3))))
            notice(f"{where}: the tokenizer has {n - rows} tokens past the model's {rows} embedding rows (ids "
                   f"{rows}..{n - 1}: {', '.join(map(str, extra))}{', ...' if n - rows > 3 else ''}); the model "
                   "can never emit them, and a prompt holding one is refused")
        else:
            notice(f"{where}: the model has {rows - n} embedding rows past the tokenizer's {n} tokens; no token "
                   "decodes to them, so they are never sampled")
    return min(n, rows)


def checkpoint_dtype(path: str | Path) -> str | None:
    """The dtype a checkpoint's weights are stored in (config.json's `dtype`, `torch_dtype` before
    transformers 5), when it says; an adapter directory answers for its base."""
    path = Path(path)
    base = adapter_base(path) or path
    try:
        config = json.loads((base / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    value = config.get("dtype") or config.get("torch_dtype") or (config.get("text_config") or {}).get("dtype")
    return value if value in DTYPES else None
