"""rsft scorers and TRL reward functions are interchangeable, in both directions, on the real tiny model."""

from __future__ import annotations

import json

import pytest

from rsft.core.records import Score
from rsft.inputs.tasks.addition import addition_scorer, make_task


def test_rsft_scorer_is_a_grpo_reward_func(model_dir, tmp_path):
    """Two real GRPOTrainer steps with rsft's addition verifier (which returns Score records) as reward."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from rsft.parts.scoring.spec import build_scorer

    task = make_task(digits=2, n_train=8, n_eval=0, n_gold=0)
    ds = Dataset.from_list([{"prompt": p.text, "answer": p.fields["answer"]} for p in task.train])
    calls = []

    def spy(prompts, completions, answer, **kwargs):
        out = addition_scorer(prompts, completions, answer)
        calls.append((len(completions), kwargs.get("completion_ids") is not None))
        return out

    combo = build_scorer({"combine": "sum", "scorers": ["addition", {"name": "regex", "kwargs": {"pattern": "^[0-9]+$"}}],
                          "weights": [1.0, 0.1]})
    args = GRPOConfig(output_dir=str(tmp_path / "grpo"), per_device_train_batch_size=4, num_generations=4,
                      max_completion_length=4, max_steps=2, learning_rate=1e-3, use_cpu=True, bf16=False,
                      report_to="none", logging_steps=1, save_strategy="no", dataloader_num_workers=0,
                      activation_checkpointing=False)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), reward_funcs=[spy, combo],
                          args=args, train_dataset=ds, processing_class=AutoTokenizer.from_pretrained(model_dir))
    trainer.train()
    assert trainer.state.global_step == 2
    assert calls and all(n == 4 and has_ids for n, has_ids in calls)
    logged = [h for h in trainer.state.log_history if any(k.startswith("rewards/") for k in h)]
    assert logged, trainer.state.log_history


def test_scores_are_floats_to_trl():
    import torch

    rewards = [Score(1.0), Score(None, error="x"), Score(0.25)]
    t = torch.tensor([float(r) for r in rewards])  # what GRPOTrainer does with a reward list
    assert t[0] == 1.0 and torch.isnan(t[1]) and t[2] == 0.25
    assert torch.tensor(rewards, dtype=torch.float32)[2] == 0.25


def test_trl_reward_function_scores_an_rsft_round(tmp_path):
    """TRL's own accuracy_reward (conversational, column `solution`) as the scorer of a real rsft round."""
    pytest.importorskip("math_verify")
    from transformers import AutoTokenizer
    from trl.rewards import accuracy_reward

    from rsft.core.config import build_config
    from rsft.core.rundir.files import read_jsonl
    from rsft.loop.rounds import run
    from tests.conftest import make_model_dir

    model = make_model_dir(tmp_path / "m", alphabet="0123456789+=ua:\n$\\{}bxed")
    tok = AutoTokenizer.from_pretrained(model)
    tok.chat_template = ("{% for m in messages %}{{ m['role'][0] }}:{{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}a:{% endif %}")
    tok.save_pretrained(model)
    rows = [{"prompt": [{"role": "user", "content": f"{i}+{i}="}], "solution": f"${2 * i}$"} for i in range(9)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:6]))
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[6:]))  # held out
    cfg = build_config({
        "name": "trl", "output_dir": str(tmp_path / "runs"), "rounds": 1,
        "model": {"path": str(model)},
        "task": {"name": "dataset", "train": str(tmp_path / "train.jsonl"), "eval": str(tmp_path / "eval.jsonl")},
        "scorer": "trl.rewards:accuracy_reward",
        "sampling": {"n": 2, "max_new_tokens": 6},
        "selection": {"rules": [{"rule": "top_k", "k": 1}]},
        "train": {"max_steps": 2, "batch_size": 4},
        "eval": {"n": 2, "k": [1, 2]},
    })
    run_dir = run(cfg)
    groups = list(read_jsonl(run_dir / "round-000" / "scored.jsonl"))
    assert len(groups) == 6
    for g in groups:
        completions = [[{"role": "assistant", "content": s["text"]}] for s in g["samples"]]
        expected = accuracy_reward(completions, [g["prompt"]["fields"]["solution"]] * len(completions))
        got = [s["value"] for s in g["scores"]]
        assert None not in expected and got == expected  # the gold parses: every sample gets a real verdict
    assert (run_dir / "round-000" / "metrics.json").exists()
    # and a right answer, in the same conversational shape rsft hands the scorer, scores 1.0
    from rsft.core.records import Group, Prompt, Sample
    from rsft.parts.scoring.base import score_groups

    p = Prompt("x", messages=({"role": "user", "content": "2+2="},), fields={"solution": "$4$"})
    right, wrong = score_groups(accuracy_reward, [Group(p, (Sample("x", 0, "\\boxed{4}"), Sample("x", 1, "5")))])[0].scores
    assert (right.value, wrong.value) == (1.0, 0.0)
