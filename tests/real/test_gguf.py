"""A GGUF file as a model source (`rsft.inputs.gguf`), on the real SmolLM2-135M-Instruct file: the checkpoint it
writes holds the file's own weights, and its tokenizer agrees with the chat template, the model config and
llama.cpp's pre-tokenizer. Expected values come from the GGUF file read directly with the `gguf` package,
or are written out by hand; never from rsft's conversion."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def reader(smol_gguf):
    from gguf import GGUFReader

    return GGUFReader(str(smol_gguf))


def tensor(reader, name):
    from gguf.quants import dequantize

    t = next(t for t in reader.tensors if t.name == name)
    return dequantize(t.data, t.tensor_type)


def test_the_checkpoint_holds_the_files_weights(smol_dir, reader):
    """Float32 holds the dequantized values exactly. q and k are stored by llama.cpp with the rotary halves
    interleaved per head (its converter's `permute`); undone here by hand, independently of transformers."""
    from safetensors.numpy import load_file

    weights = load_file(smol_dir / "model.safetensors")
    assert np.array_equal(weights["model.embed_tokens.weight"], tensor(reader, "token_embd.weight"))  # Q8_0
    assert np.array_equal(weights["model.layers.7.mlp.down_proj.weight"], tensor(reader, "blk.7.ffn_down.weight"))
    assert "lm_head.weight" not in weights  # tied to the embedding, as the GGUF (no output.weight) says
    assert not any(t.name == "output.weight" for t in reader.tensors)
    heads, kv_heads = 9, 3
    for name, n in (("attn_q", heads), ("attn_k", kv_heads)):
        stored = tensor(reader, f"blk.3.{name}.weight")  # [n * 64, 576], halves interleaved
        rows, cols = stored.shape
        unpermuted = stored.reshape(n, rows // n // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)
        hf = weights[f"model.layers.3.self_attn.{'q' if name == 'attn_q' else 'k'}_proj.weight"]
        assert np.array_equal(hf, unpermuted)
    config = json.loads((smol_dir / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"],
            config["num_key_value_heads"], config["tie_word_embeddings"]) == (30, 576, 9, 3, True)
    assert "quantization_config" not in config
    record = json.loads((smol_dir / "rsft-gguf.json").read_text())
    assert record["quantization"] == ["Q4_1", "Q8_0"] and record["dtype"] == "float32"


def test_the_tokenizer_agrees_with_the_template_and_llama_cpp(smol_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smol_dir)
    # the chat template ends turns with <|im_end|>; config and generation config give it as EOS and pad
    assert (tok.eos_token, tok.eos_token_id, tok.pad_token_id) == ("<|im_end|>", 2, 2)
    generation = json.loads((smol_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] in (2, [2])
    # llama.cpp's 'smollm' pre-tokenizer splits every digit first: "  123" is two spaces then 1, 2, 3;
    # byte-level BPE alone would give " " then " 123"'s pieces
    ids = tok("a  123 b", add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["a", "ĠĠ", "1", "2", "3", "Ġb"]
    assert tok("x", add_special_tokens=True)["input_ids"] == tok("x", add_special_tokens=False)["input_ids"]  # no BOS


def test_a_wrong_eos_and_a_missing_digit_split_are_corrected(smol_dir):
    """What the converter does with the flaws seen in the wild: a tokenizer whose EOS is <|im_start|>, and a
    pre-tokenizer without the digit split (transformers' GGUF reader drops it)."""
    from tokenizers import pre_tokenizers
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from rsft.inputs.gguf import fix_tokenizer

    tok = AutoTokenizer.from_pretrained(smol_dir)
    tok.eos_token = "<|im_start|>"
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    assert tok.convert_ids_to_tokens(tok("a  12", add_special_tokens=False)["input_ids"])[:2] == ["a", "Ġ"]
    import torch

    with torch.device("meta"):  # the config and generation config matter here, not the weights
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(smol_dir))
    model.generation_config = GenerationConfig.from_pretrained(smol_dir)
    said = fix_tokenizer(tok, model, {"tokenizer.ggml.pre": "smollm", "tokenizer.ggml.eos_token_id": 2})
    assert tok.eos_token == "<|im_end|>" and any("<|im_start|>" in s and "<|im_end|>" in s for s in said)
    assert any("digit" in s for s in said)
    assert tok.convert_ids_to_tokens(tok("a  12", add_special_tokens=False)["input_ids"]) == ["a", "ĠĠ", "1", "2"]


def test_model_path_may_name_the_gguf_file(smol_gguf, smol_dir, tmp_path):
    """`model.path: FILE.gguf` runs on the converted checkpoint and says so in one line; a directory holding
    the file works the same."""
    from rsft.core.config import build_config
    from rsft.stages.run import Run

    cfg = build_config({"model": {"path": str(smol_gguf)}, "output_dir": str(tmp_path)})
    assert Run(cfg, tmp_path / "run").model_path == str(smol_dir)
    cfg = build_config({"model": {"path": str(smol_gguf.parent)}, "output_dir": str(tmp_path)})
    assert Run(cfg, tmp_path / "run").base_model == str(smol_dir)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "rsft.cli", "convert", str(smol_gguf)], capture_output=True,
                         text=True, env=env, timeout=600)
    assert out.returncode == 0 and out.stdout.strip() == str(smol_dir)
    said = [line for line in out.stderr.splitlines() if "cached conversion" in line]
    assert len(said) == 1 and "Q4_1" in said[0] and "float32" in said[0] and "digit" in said[0]


@pytest.mark.slow
def test_the_converted_model_continues_like_the_gguf_itself(smol_gguf, smol_dir):
    """Greedy continuations of the checkpoint (through rsft's engine) equal those of the GGUF file loaded by
    transformers itself and decoded with HF generate (about a minute: the GGUF is dequantized again)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rsft.core.records import Prompt
    from rsft.parts.sampling.base import SamplingParams
    from rsft.parts.sampling.transformers_engine import TransformersEngine

    texts = ["The capital of France is", "def fibonacci(n):", "Water boils at", "1, 2, 3, 4,"]
    direct = AutoModelForCausalLM.from_pretrained(smol_gguf.parent, gguf_file=smol_gguf.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(smol_gguf.parent, gguf_file=smol_gguf.name)
    engine = TransformersEngine.from_path(str(smol_dir))
    ours = engine.generate([Prompt(str(i), text=t) for i, t in enumerate(texts)], 1,
                           SamplingParams(temperature=0, max_new_tokens=16))
    for text, (sample,) in zip(texts, ours):
        ids = tok(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            out = direct.generate(ids, max_new_tokens=16, do_sample=False, eos_token_id=2, pad_token_id=2)
        theirs = out[0, ids.shape[1]:].tolist()
        assert list(sample.token_ids) == theirs[: len(sample.token_ids)], text
