"""GSM8K as people run it (examples/gsm8k.yaml): chat prompts made from the question column, the numeric
verifier on '#### N', decontamination that sees past the shared template; read from ../shared/data/gsm8k."""

from __future__ import annotations

import json

import pytest

from rsft.core.config import load_config
from rsft.core.errors import DataError
from rsft.core.registry import resolve
from rsft.parts.decontamination import Contamination
from tests.conftest import ROOT, run_cli

EXAMPLE = ROOT / "examples" / "gsm8k.yaml"
SHARED = ROOT.parent / "shared" / "data" / "gsm8k"  # every checkout's read-only data (never copied in)


def shared() -> tuple[str, str]:
    if not (SHARED / "train.jsonl").is_file():
        pytest.skip(f"the shared GSM8K copy is not here ({SHARED})")
    return str(SHARED / "train.jsonl"), str(SHARED / "test.jsonl")


def example_task(*overrides: str):
    train, test = shared()
    cfg = load_config(EXAMPLE, [f"task.train={train}", f"task.eval={test}", *overrides])
    return cfg, resolve("task", cfg.task, seed=cfg.seed)


def test_the_example_makes_chat_prompts_with_its_system_prompt_and_instruction():
    cfg, task = example_task("task.max_train_prompts=24", "task.max_eval_prompts=24")
    p = task.train[0]
    assert [m["role"] for m in p.messages] == ["system", "user"]
    assert p.messages[0]["content"] == cfg.task.system_prompt
    assert p.messages[1]["content"].startswith("Natalia sold clips") and p.messages[1]["content"].endswith("#### <number>.")
    assert p.fields["answer"].endswith("#### 72")  # the worked solution, the numeric verifier's gold
    scorer = resolve("scorer", cfg.scorer, default=task.scorer)
    right, wrong = scorer([p.messages] * 2, ["48 + 24 = 72\n#### 72", "#### 71"], answer=[p.fields["answer"]] * 2)
    assert (right.value, wrong.value) == (1.0, 0.0)


def test_decontamination_sees_the_question_not_the_template_on_real_gsm8k():
    """The first real run's failure: 13-gram decontamination dropped every sample, because the instruction
    and the system prompt are shared by every train and test prompt."""
    cfg, task = example_task("task.max_train_prompts=200", "task.max_eval_prompts=100")
    c = Contamination(task.eval, 13, task.train)
    assert not any(c.hits(p) for p in task.train)
    leaked = task.eval[5]
    assert c.hits(leaked.messages) and c.hits(task.train[0], f"As in: {leaked.messages[-1]['content'][:120]}")


def test_a_template_naming_a_missing_column_is_one_line_naming_the_row(tmp_path):
    rows = tmp_path / "q.jsonl"
    rows.write_text(json.dumps({"question": "1+1?", "answer": "#### 2"}) + "\n")
    cfg = load_config(EXAMPLE, [f"task.train={rows}", "task.eval=null", "task.prompt_template={problem} go"])
    with pytest.raises(DataError, match=r"q.jsonl:1: task.prompt_template names column 'problem'"):
        resolve("task", cfg.task, seed=0)
    messages = tmp_path / "m.jsonl"
    messages.write_text(json.dumps({"question": [{"role": "user", "content": "1+1?"}], "answer": "2"}) + "\n")
    cfg = load_config(EXAMPLE, [f"task.train={messages}", "task.eval=null"])
    with pytest.raises(DataError, match=r"m.jsonl:1: column 'question' already holds chat messages"):
        resolve("task", cfg.task, seed=0)


@pytest.mark.slow  # one round of the example on the real SmolLM2 (about 5 minutes on 2 cores)
@pytest.mark.real_model
def test_one_round_of_the_example_on_the_real_model(smol_gguf, tmp_path):
    """Every prompt is sampled (the example's n=8, 256 new tokens) and scored on the real model, and nothing
    is lost to decontamination. SmolLM2-135M-Instruct solves few GSM8K problems without a warm start (0 of 256
    samples on this machine, 2026-12-07), so the round may end at selection: then it says so in one line,
    naming every rule and that decontamination took nothing (what the first real run got wrong)."""
    train, test = shared()
    proc = run_cli("run", str(EXAMPLE), f"model.path={smol_gguf}", f"task.train={train}", f"task.eval={test}",
                   f"output_dir={tmp_path}", "rounds=1", "task.max_train_prompts=32", "task.max_eval_prompts=4",
                   "eval.n=1", "eval.k=[1]", cwd=ROOT, timeout=3000)
    rd = tmp_path / "gsm8k" / "round-000"
    groups = [json.loads(x) for x in (rd / "scored.jsonl").read_text().splitlines()]
    assert len(groups) == 32 and all(len(g["scores"]) == 8 for g in groups)
    assert all(c.get("error") is None for g in groups for c in g["scores"])
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        assert "selection kept no samples" in lines[-1] and "decontamination: 0" in lines[-1], lines[-1]
        assert all(c["value"] == 0.0 for g in groups for c in g["scores"])  # it stopped only because none passed
    else:
        metrics = json.loads((rd / "metrics.json").read_text())
        assert metrics["kept"] >= 1 and metrics["decontaminated"] == 0
