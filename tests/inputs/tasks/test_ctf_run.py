"""A 2-round ctf run on the real tiny model through the CLI, and a rollout stage killed and resumed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli

CONFIG = Path(__file__).with_name("ctf_mini.yaml")


@pytest.fixture(scope="module")
def ctf_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ctf")
    run_cli("run", str(CONFIG), f"output_dir={out}", check=True)
    return out / "ctf-mini"


def groups(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_rounds_sample_score_and_train_on_whole_trajectories(ctf_run):
    for r in (0, 1):
        rd = ctf_run / f"round-00{r}"
        sampled = groups(rd / "samples.jsonl")
        assert [len(g["samples"]) for g in sampled] == [2] * 12
        for g in sampled:
            for s in g["samples"]:
                roles = [t["role"] for t in s["turns"]]
                assert roles[0] == "assistant" and set(roles) <= {"assistant", "tool"}
                assert 1 <= roles.count("assistant") <= 3 and s["end"] in ("done", "max_turns", "max_tokens", "length")
                assert s["text"] == [t["text"] for t in s["turns"] if t["role"] == "assistant"][-1]
                tool_turns = [t for t in s["turns"] if t["role"] == "tool"]
                assert all(t["info"].get("mode") == "bwrap" or t["text"] in ("submitted", "error: empty command")
                           for t in tool_turns)  # every command ran in bwrap (this machine has it)
        rows = groups(rd / "selected.jsonl")
        assert rows
        for row in rows:  # TRL conversational prompt/completion: the listing, then actions and tool replies
            assert row["prompt"][0]["content"].startswith("files: ")
            assert row["completion"][0]["role"] == "assistant"
            assert {m["role"] for m in row["completion"]} <= {"assistant", "tool"}
    metrics = json.loads(run_cli("metrics", str(ctf_run), "--json", check=True).stdout)
    assert all("turns_mean" in m for m in metrics[1:]) and "greedy_turns_mean" in metrics[0]["eval"]


def test_a_rollout_killed_mid_stage_resumes_without_losing_or_redrawing(ctf_run, tmp_path):
    """Kill round 0's sample stage while it draws trajectories (from the fixture's base model); the resumed
    stage writes each prompt once, and the trajectories equal the uninterrupted run's (per-action seeds)."""
    run_dir = tmp_path / "ctf-mini"  # the fixture's run as it stood after its base stage (no second warm start)
    run_dir.mkdir()
    for name in ("base-model", "base-init"):
        shutil.copytree(ctf_run / name, run_dir / name)
    for name in ("base.json", "base.done", "base-eval.json", "base-eval.done"):
        shutil.copy(ctf_run / name, run_dir / name)
    config = (ctf_run / "config.yaml").read_text()
    (run_dir / "config.yaml").write_text(config.replace(f"output_dir: {ctf_run.parent}", f"output_dir: {tmp_path}"))
    samples = run_dir / "round-000" / "samples.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "rsft.cli", "sample", str(run_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not (samples.exists() and samples.read_text().count("\n") >= 4) and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed mid-stage"
        proc.kill()
        proc.wait()
    finally:
        proc.kill()
    partial = samples.read_text().count("\n")
    assert 4 <= partial < 12 and not (samples.parent / "sample.done").exists()
    run_cli("sample", str(run_dir), check=True)
    resumed, reference = groups(samples), groups(ctf_run / "round-000" / "samples.jsonl")
    assert [g["prompt"]["id"] for g in resumed] == [g["prompt"]["id"] for g in reference]
    assert resumed == reference


def test_exported_trajectories_load_unchanged_into_trls_sft_trainer(ctf_run, tmp_path):
    """`rsft export sft` writes TRL conversational rows; TRL's own SFTTrainer takes the file as it is, with
    assistant-only loss, and trains on the commands only."""
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    out = tmp_path / "sft.jsonl"
    assert "wrote" in run_cli("export", "sft", str(ctf_run), "--round", "0", "--output", str(out), check=True).stdout
    data = load_dataset("json", data_files=str(out), split="train")
    assert set(data.column_names) == {"prompt", "completion"}
    model_dir = ctf_run / "round-000" / "model"
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), train_dataset=data,
                         processing_class=AutoTokenizer.from_pretrained(model_dir),
                         args=SFTConfig(output_dir=str(tmp_path / "o"), max_steps=1, assistant_only_loss=True,
                                        report_to="none", use_cpu=True, bf16=False))
    trainer.train()
    row, example = data[0], trainer.train_dataset[0]
    tok = trainer.processing_class
    trained = tok.decode([i for i, lab in zip(example["input_ids"], example["labels"]) if lab != -100],
                         skip_special_tokens=False)
    assert trained == "".join(m["content"] + "</s>" for m in row["completion"] if m["role"] == "assistant")


def test_no_dpo_pairs_are_made_of_trajectories_whose_completions_hold_tool_output(ctf_run):
    """TRL's DPOTrainer scores every token after the prompt (it has no assistant-only mask): a pair of
    ctf trajectories would train the model to predict the shell's output, the flag file's contents
    included. The select stage writes none and says how many groups it left out; the export refuses."""
    for r in (0, 1):
        rd = ctf_run / f"round-00{r}"
        with_tools = sum(any(t["role"] == "tool" for s in g["samples"] for t in s["turns"])
                         for g in groups(rd / "scored.jsonl"))
        assert with_tools > 0  # the case exists in this run
        assert (rd / "pairs.jsonl").read_text() == ""
        assert json.loads((rd / "selection.json").read_text())["pairs_skipped_trajectories"] == with_tools
    proc = run_cli("export", "pairs", str(ctf_run), "--round", "0")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "scored.jsonl" in line and "tool output" in line and "DPOTrainer" in line
    assert not (ctf_run / "exports" / "pairs-round-000.jsonl").exists()
