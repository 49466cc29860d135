"""Pairs from scored groups, and TRL's DPOTrainer on the exported file."""

from __future__ import annotations

import json
import math

from rsft.core.records import Group, Prompt, Sample, Score
from rsft.stages.select_rows import group_pairs


def group(texts_values, chat=False):
    p = Prompt("p", messages=({"role": "user", "content": "q"},)) if chat else Prompt("p", text="q")
    return Group(p, tuple(Sample("p", i, t) for i, (t, _) in enumerate(texts_values)),
                 tuple(Score(v) if v is not None else Score(None, error="x") for _, v in texts_values))


def test_best_against_worst_with_margin():
    rows = group_pairs(group([("a", 0.5), ("b", 1.0), ("c", 0.0), ("d", None)]))
    assert rows == [{"prompt": "q", "chosen": "b", "rejected": "c", "margin": 1.0, "prompt_id": "p"}]


def test_uniform_groups_and_duplicate_texts_give_no_pair():
    assert group_pairs(group([("a", 1.0), ("b", 1.0)])) == []
    assert group_pairs(group([("Same", 1.0), ("same ", 0.0)])) == []


def test_all_pairs_are_capped_deduplicated_and_soft_labelled():
    g = group([("a", 1.0), ("b", 1.0), ("a", 1.0), ("x", 0.0), ("y", 0.2)])
    rows = group_pairs(g, all_pairs=True, threshold=1.0, cap=3, tau=0.5)
    assert [(r["chosen"], r["rejected"]) for r in rows] == [("a", "x"), ("a", "y"), ("b", "x")]
    assert rows[0]["p"] == 1 / (1 + math.exp(-1.0 / 0.5))
    assert all("margin" not in r and r["reward_gap"] > 0 for r in rows)  # the preference is stated once


def test_chat_pairs_use_the_conversational_format():
    rows = group_pairs(group([("good", 1.0), ("bad", 0.0)], chat=True))
    assert rows[0]["prompt"] == [{"role": "user", "content": "q"}]
    assert rows[0]["chosen"] == [{"role": "assistant", "content": "good"}]


def test_dpo_trainer_runs_on_exported_pairs(tmp_path, model_dir):
    from rsft.core.config import build_config
    from rsft.loop.commands.export import export_pairs
    from rsft.loop.rounds import open_run
    from rsft.stages.runner import run_stage

    cfg = build_config({"name": "dpo", "output_dir": str(tmp_path), "model": {"path": str(model_dir)},
                        "task": {"name": "addition", "params": {"digits": 1, "n_train": 12, "n_eval": 0, "n_gold": 0}},
                        "scorer": {"name": "regex", "kwargs": {"pattern": "^[0-9]{2}$"}},
                        "sampling": {"n": 6, "max_new_tokens": 3}})
    run = open_run(cfg)
    run_stage(run, 0, "sample")
    run_stage(run, 0, "score")
    path, count = export_pairs(run.dir, 0, all_pairs=True, tau=1.0)
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert count == len(rows) >= 4
    assert len({(r["prompt"], r["chosen"], r["rejected"]) for r in rows}) == len(rows)

    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    ds = Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])
    args = DPOConfig(output_dir=str(tmp_path / "dpo"), per_device_train_batch_size=2, max_steps=2, use_cpu=True,
                     bf16=False, report_to="none", save_strategy="no", logging_steps=1, learning_rate=1e-3,
                     activation_checkpointing=False, dataloader_num_workers=0)
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), args=args, train_dataset=ds,
                         processing_class=AutoTokenizer.from_pretrained(model_dir))
    trainer.train()
    assert trainer.state.global_step == 2
    assert any("loss" in h for h in trainer.state.log_history)
