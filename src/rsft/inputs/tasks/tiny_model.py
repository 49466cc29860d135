"""A from-scratch character-level Llama, so the demo and the tests need no download.

The tokenizer is a `tokenizers` WordLevel model over single characters,
wrapped as a `PreTrainedTokenizerFast`; the model is a `LlamaForCausalLM` built
from a `LlamaConfig`. Both are saved as an ordinary HF model directory, so
everything downstream loads them with the same `from_pretrained(path)` call a
hub model takes. This module does not train anything; the warm start does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from rsft.core.config import TinyModelConfig
from rsft.core.errors import ConfigError

SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")


def tiny_alphabet(task: Any) -> str:
    """The characters the 'tiny' model's tokenizer gets for `task`: its alphabet, or the one-line error
    that the task has none (a task meant for real models). Preflight and the base stage both ask here."""
    if task.alphabet is None:
        raise ConfigError(f"key 'model.path': 'tiny' needs a task with a character alphabet, "
                          f"task {task.name!r} has none; give a model path")
    return task.alphabet


def char_tokenizer(alphabet: str, chat_template: str | None = None) -> PreTrainedTokenizerFast:
    """One token per character of `alphabet`, plus pad/bos/eos/unk; BOS is prepended on encode.
    `chat_template` (a multi-turn task's) is set on the tokenizer when given."""
    chars = list(dict.fromkeys(alphabet))
    vocab = {tok: i for i, tok in enumerate([*SPECIALS, *chars])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        clean_up_tokenization_spaces=False,
    )
    if chat_template is not None:
        fast.chat_template = chat_template
    return fast


def tiny_config(tokenizer: PreTrainedTokenizerFast, shape: TinyModelConfig) -> LlamaConfig:
    """The LlamaConfig of the tiny model for this tokenizer and shape."""
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size or 4 * shape.hidden_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_heads,
        max_position_embeddings=shape.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )


def tiny_llama(tokenizer: PreTrainedTokenizerFast, shape: TinyModelConfig, seed: int = 0) -> LlamaForCausalLM:
    """A small Llama with freshly initialised weights (seeded), sized by `shape`."""
    config = tiny_config(tokenizer, shape)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def build_tiny(path: Path, alphabet: str, shape: TinyModelConfig, seed: int = 0,
               chat_template: str | None = None) -> Path:
    """Write an untrained tiny model and its tokenizer to `path` as an HF model directory."""
    tokenizer = char_tokenizer(alphabet, chat_template)
    model = tiny_llama(tokenizer, shape, seed)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
