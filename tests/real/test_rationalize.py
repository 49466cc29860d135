"""STaR rationalization on the real model: four-digit products SmolLM2-135M never gets right by sampling, so
plain rejection sampling keeps nothing; given the product as a hint it writes rationales that pass, and the
round trains on them under the prompt *without* the hint."""

from __future__ import annotations

import json

import pytest

from rsft.core.config import build_config
from rsft.core.errors import RsftError
from rsft.core.rundir.files import read_json, read_jsonl
from rsft.loop.rounds import run

pytestmark = pytest.mark.real_model

PRODUCTS = [(7384, 2917), (6521, 4873), (9137, 5289), (8462, 3751), (5938, 7164), (4789, 6352)]


def config(tmp_path, smol_dir, rationalize):
    train = tmp_path / "products.jsonl"
    train.write_text("".join(json.dumps({
        "messages": [{"role": "user", "content": f"What is {a} * {b}? End with the line #### <number>."}],
        "answer": a * b}) + "\n" for a, b in PRODUCTS))
    data = {"name": "star" if rationalize else "plain", "seed": 0, "rounds": 1, "output_dir": str(tmp_path / "runs"),
            "model": {"path": str(smol_dir)},
            "task": {"name": "dataset", "train": str(train), "prompt_column": "messages"},
            "scorer": {"name": "numeric"},
            "sampling": {"n": 4, "temperature": 0.7, "max_new_tokens": 48},
            "selection": {"rules": [{"rule": "passes"}, {"rule": "drop_truncated"}, {"rule": "dedup"}]},
            "train": {"max_steps": 1, "batch_size": 2, "learning_rate": 1e-5, "lora": {"r": 4, "alpha": 8}},
            "eval": {"enabled": False}}
    if rationalize:
        data["selection"]["rationalize"] = {"field": "answer", "n": 6, "template": (
            "{prompt}\nThe product is {answer}. Show the multiplication, then end with the line #### {answer}")}
    return build_config(data)


def test_rationalization_trains_on_prompts_plain_sampling_never_solves(tmp_path, smol_dir):
    with pytest.raises(RsftError, match="selection kept no samples"):
        run(config(tmp_path, smol_dir, rationalize=False))  # plain sampling solves none of them

    run_dir = run(config(tmp_path, smol_dir, rationalize=True))
    rd = run_dir / "round-000"
    metrics = read_json(rd / "metrics.json")
    assert metrics["coverage"] == 0.0  # no plain sample was accepted
    assert metrics["rationalized"] > 0 and metrics["kept"] == metrics["rationalized"]
    assert metrics["kept_coverage"] > 0
    rows = list(read_jsonl(rd / "selected.jsonl"))
    assert rows and all("Hint" not in json.dumps(row["prompt"]) for row in rows)  # trained without the hint
    gold = {f"What is {a} * {b}? End with the line #### <number>.": str(a * b) for a, b in PRODUCTS}
    for row in rows:
        question = row["prompt"][-1]["content"]
        assert gold[question] in row["completion"][-1]["content"].replace(",", "")
        assert "hint" not in row["completion"][-1]["content"].lower()
    rationales = list(read_jsonl(rd / "rationalized.jsonl"))
    assert len(rationales) == len(PRODUCTS)  # every prompt was unsolved, every one rationalized
    assert all(s["index"] >= 10_000 for g in rationales for s in g["samples"])
