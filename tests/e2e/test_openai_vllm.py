"""The openai engine and the judge against a real `vllm serve` (vLLM's CPU build, from .venv-vllm)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest
import torch

from rsft.core.records import Prompt
from rsft.inputs.serving.managed import ManagedServer, free_port
from rsft.parts.sampling.base import SamplingParams
from rsft.parts.sampling.openai_engine import OpenAIEngine
from tests.conftest import make_model_dir, run_cli
from tests.inputs.serving.proxy import FailingProxy
from tests.inputs.serving.vllm_venv import vllm_python
from tests.parts.sampling.stats import chi_square_ok

SERVE_ARGS = ["--max-model-len", "64", "--enforce-eager"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    python = vllm_python()
    model = make_model_dir(tmp_path_factory.mktemp("served") / "model", heads=2)
    server = ManagedServer(str(model), python=python, args=SERVE_ARGS)
    server.start()
    yield server, model, python
    server.stop()


def hf_greedy(model_dir, text, n_new):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(model_dir), AutoModelForCausalLM.from_pretrained(model_dir).eval()
    enc = tok([text], return_tensors="pt")
    ref = model.generate(**enc, do_sample=False, max_new_tokens=n_new)[0, enc.input_ids.shape[1]:].tolist()
    return ref[: ref.index(tok.eos_token_id) + 1] if tok.eos_token_id in ref else ref


def test_greedy_through_the_server_equals_generate(served):
    server, model, _ = served
    engine = OpenAIEngine.from_path(str(model), base_url=server.base_url, model="rsft")
    prompts = [Prompt(f"p{i}", text=f"{i * 37 % 1000}+{i * 11 % 100}=") for i in range(16)]
    for p, group in zip(prompts, engine.generate(prompts, 1, SamplingParams(temperature=0, max_new_tokens=10))):
        ref = hf_greedy(model, p.text, 10)
        got = list(group[0].token_ids)
        assert got == ref or got == ref[:-1], (p.text, got, ref)


def test_first_tokens_through_the_server_follow_the_softmax(served):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    server, model, _ = served
    engine = OpenAIEngine.from_path(str(model), base_url=server.base_url, model="rsft")
    p = Prompt("chi", text="12+34=")
    drawn = [s.token_ids[0] for s in engine.generate([p], 2000, SamplingParams(max_new_tokens=1, seed=3))[0]]
    tok, hf = AutoTokenizer.from_pretrained(model), AutoModelForCausalLM.from_pretrained(model).eval()
    with torch.no_grad():
        logits = hf(torch.tensor([tok(p.text)["input_ids"]])).logits[0, -1].double()
    chi2, crit, dof = chi_square_ok(drawn, logits.softmax(-1))
    assert dof >= 3 and chi2 < crit, (chi2, crit)
    assert chi_square_ok(drawn, (logits / 0.8).softmax(-1))[0] > crit


def dataset_config(tmp_path, model, engine_options, n_prompts=200, batch=2):
    rows = [{"prompt": f"{a}+{b}=", "answer": a + b} for a in range(20) for b in range(20)][:n_prompts]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({
        "name": "served", "output_dir": str(tmp_path / "runs"), "rounds": 1, "model": {"path": str(model)},
        "task": {"name": "dataset", "train": str(tmp_path / "train.jsonl")}, "scorer": "addition",
        "sampling": {"engine": "openai", "engine_options": engine_options, "n": 4, "max_new_tokens": 6,
                     "batch_size": batch},
        "selection": {"rules": [{"rule": "top_k", "k": 1}]}, "train": {"max_steps": 2, "batch_size": 8},
        "eval": {"enabled": False},
    }))
    return cfg


@pytest.mark.slow  # 2+ min; tests/parts/sampling/test_openai_engine.py has a scripted server that answers 500 then vanishes
def test_a_server_killed_mid_stage_is_one_line_and_the_stage_resumes(served, tmp_path):
    _, model, python = served
    port = free_port()
    server = ManagedServer(str(model), python=python, args=SERVE_ARGS, port=port)
    url = server.start()
    cfg = dataset_config(tmp_path, model, {"base_url": url, "model": "rsft", "retries": 1})
    samples = tmp_path / "runs" / "served" / "round-000" / "samples.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "rsft.cli", "run", str(cfg)], stderr=subprocess.PIPE, text=True)
    try:
        while not (samples.exists() and samples.read_text().count("\n") >= 4) and proc.poll() is None:
            time.sleep(0.05)
        server.stop()  # mid-stage
        err = proc.communicate(timeout=300)[1]
    finally:
        proc.kill()
        server.stop()
    assert proc.returncode != 0 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("rsft: error:") and url in lines[-1] and "cannot be reached" in lines[-1]
    written = samples.read_text().count("\n")
    assert 4 <= written < 200 and not (samples.parent / "sample.done").exists()
    restarted = ManagedServer(str(model), python=python, args=SERVE_ARGS, port=port)
    restarted.start()
    try:
        run_cli("run", str(cfg), check=True)
    finally:
        restarted.stop()
    groups = [json.loads(x) for x in samples.read_text().splitlines()]
    assert [g["prompt"]["id"] for g in groups] == [str(i) for i in range(200)]  # each prompt exactly once
    assert all(len(g["samples"]) == 4 and not any("error" in s for s in g["samples"]) for g in groups)


@pytest.mark.slow  # a whole run through a failing proxy (15 s); tests/parts/sampling/test_openai_engine.py counts
# failed requests as sample errors against a scripted server in the default tier
def test_requests_that_fail_are_counted_and_the_run_goes_on(served, tmp_path):
    server, model, _ = served
    with FailingProxy(server.base_url, every=5) as proxy:
        cfg = dataset_config(tmp_path, model, {"base_url": proxy.base_url, "model": "rsft", "retries": 1},
                             n_prompts=40, batch=1)
        run_cli("run", str(cfg), check=True)
    run_dir = tmp_path / "runs" / "served"
    metrics = json.loads((run_dir / "round-000" / "metrics.json").read_text())
    groups = [json.loads(x) for x in (run_dir / "round-000" / "scored.jsonl").read_text().splitlines()]
    errored = [g for g in groups if any("error" in s for s in g["samples"])]
    assert len(errored) == len(proxy.failed_prompts) >= 4
    assert metrics["sampling_errors"] == 4 * len(errored) and metrics["scorer_errors"] >= metrics["sampling_errors"]
    assert all(c.get("error", "").startswith("sampling:") for g in errored for c in g["scores"])
    selected = [json.loads(x) for x in (run_dir / "round-000" / "selected.jsonl").read_text().splitlines()]
    assert {r["prompt_id"] for r in selected}.isdisjoint({g["prompt"]["id"] for g in errored})


def test_the_judge_scores_with_a_real_vllm_serve(served):
    from rsft.parts.scoring.judge import parse_reply
    from rsft.parts.scoring.spec import build_scorer

    server, _, _ = served
    template = "{prompt}{completion}"
    judge = build_scorer({"name": "judge", "kwargs": {"base_url": server.base_url, "model": "rsft",
                                                     "template": template, "parse": "number", "max_tokens": 4}})
    prompts, completions = ["12+3=", "4+5=", "7+7="], ["51", "9", "41"]
    scores = judge(prompts=prompts, completions=completions)
    for p, c, s in zip(prompts, completions, scores):
        reply = httpx.post(f"{server.base_url}/completions", json={"model": "rsft", "prompt": p + c, "max_tokens": 4,
                                                                  "temperature": 0.0}, timeout=60).json()
        text = reply["choices"][0]["text"]
        try:
            expected = parse_reply(text, "number")
        except ValueError:
            assert s.value is None and "did not parse" in s.error
        else:
            assert s.value == pytest.approx(expected)
    assert any(s.ok for s in scores)


@pytest.mark.slow
def test_a_served_run_on_a_users_model_learns_like_the_transformers_engine(tmp_path):
    """bench/served.py, smaller: a GPT-2 model directory and a JSONL dataset, engine openai with serve: true
    against the transformers engine on the same config (several minutes)."""
    python = vllm_python()
    from tests.conftest import ROOT

    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "served.py"), "--out", str(tmp_path), "--rounds", "2",
                           "--python", python], capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stderr[-3000:]
    gains = {line.split(":")[0]: float(line.split("+")[1].split()[0]) for line in proc.stdout.splitlines()
             if "points over the warm start" in line}
    assert gains["transformers"] >= 10 and gains["served"] >= 10 and abs(gains["served"] - gains["transformers"]) <= 15
