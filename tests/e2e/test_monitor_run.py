"""A run that watches itself: the entropy trigger graduates it to GRPO (run through TRL), trackers get the
round metrics and the SFT loss, the HTML report renders in a real browser, and revert goes back."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from rsft.core.config import build_config
from rsft.loop.rounds import run
from tests.conftest import ROOT, run_cli


def mini(tmp_path, name, **changes):
    data = yaml.safe_load((ROOT / "tests" / "e2e" / "mini.yaml").read_text())
    data.update({"output_dir": str(tmp_path), "name": name, **changes})
    return data


@pytest.fixture(scope="module")
def graduated(tmp_path_factory):
    import os

    os.environ["WANDB_MODE"] = "offline"
    data = mini(tmp_path_factory.mktemp("mon"), "grad", rounds=3, report_to=["tensorboard", "wandb"],
                monitor={"action": "graduate", "triggers": [{"trigger": "entropy_collapse", "min": 10.0}]})
    data["selection"]["rules"] = [{"rule": "passes", "min": 0.0}, {"rule": "dedup"}]
    data["warm_start"].update({"max_steps": 300, "check_every": 100, "target_pass1": 0.3})  # some right answers
    data["sampling"].update({"top_p": 0.9, "top_k": 7})  # GRPO's defaults are 1.0 and 0: the hand-off must carry these
    return run(build_config(data))


def test_the_entropy_trigger_graduates_the_run_after_its_round(graduated):
    monitor = json.loads((graduated / "round-000" / "monitor.json").read_text())
    assert monitor["action"] == "graduate" and monitor["fired"][0]["trigger"] == "entropy_collapse"
    assert not (graduated / "round-001").exists()  # the run ended there
    info = json.loads((graduated / "graduate" / "graduation.json").read_text())
    rows = [json.loads(x) for x in (graduated / "graduate" / "prompts.jsonl").read_text().splitlines()]
    groups = [json.loads(x) for x in (graduated / "round-000" / "scored.jsonl").read_text().splitlines()]
    mixed = {g["prompt"]["id"] for g in groups if len({c["value"] for c in g["scores"]}) > 1}
    assert rows and {r["prompt_id"] for r in rows} == mixed and info["prompts"] == len(mixed)
    assert info["dropped_uniform"] == len(groups) - len(mixed) and "answer" in rows[0]
    base, r0 = (json.loads((graduated / f).read_text())["greedy_pass@1"] for f in ("base-eval.json", "round-000/eval.json"))
    assert info["model"] == str(graduated / ("round-000/model" if r0 >= base else "base-model"))


def test_rsft_graduate_runs_two_grpo_steps_through_trl(graduated):
    run_cli("graduate", str(graduated), "--max-steps", "2", check=True)
    grpo = json.loads((graduated / "graduate" / "grpo.json").read_text())
    assert grpo["steps"] == 2  # TRL's GRPOTrainer, with the run's scorer as its reward function:
    assert sum("rewards/addition_scorer/mean" in entry for entry in grpo["log"]) == 2
    assert (graduated / "graduate" / "model" / "config.json").exists()


STRICT = """
from rsft.core.records import Score
SEEN = []

def strict(prompts, completions, answer):  # names only what it needs, as rsft allows; TRL passes much more
    import json, os
    with open(os.environ["SEEN_FILE"], "a") as f:
        f.write(json.dumps([c if isinstance(c, str) else c[-1]["content"] for c in completions]) + "\\n")
    return [Score(1.0 if c.strip() == str(a) else 0.0, parts={"len": len(c)}) for c, a in zip(completions, answer)]

def as_dicts(prompts, completions, answer, **kwargs):
    return [{"value": float(len(c)), "parts": {"n": 1}} for c in completions]
"""


@pytest.mark.parametrize("scorer", ["strict", "as_dicts"])
def test_rsft_graduate_takes_a_scorer_that_names_only_its_columns_and_returns_records(graduated, tmp_path, scorer):
    """rsft calls a scorer with the keywords it names; TRL's GRPOTrainer passes completion_ids,
    trainer_state, log_extra, log_metric and every column, and wants floats: without the adapter
    `strict()` raises "unexpected keyword argument 'completion_ids'" and Score records fail TRL's sum."""
    import os

    copy = tmp_path / "run"
    shutil.copytree(graduated, copy, ignore=shutil.ignore_patterns("grpo.json", "grpo-work"))
    (tmp_path / "myscorers.py").write_text(STRICT)
    cfg = yaml.safe_load((copy / "config.yaml").read_text())
    cfg["scorer"] = f"myscorers:{scorer}"
    (copy / "config.yaml").write_text(yaml.safe_dump(cfg))
    os.environ["SEEN_FILE"] = str(tmp_path / "seen.jsonl")
    try:
        run_cli("graduate", str(copy), "--max-steps", "1", cwd=tmp_path, check=True)
    finally:
        os.environ.pop("SEEN_FILE")
    grpo = json.loads((copy / "graduate" / "grpo.json").read_text())
    assert grpo["steps"] == 1 and any(f"rewards/{scorer}/mean" in entry for entry in grpo["log"])
    if scorer == "strict":
        assert (tmp_path / "seen.jsonl").read_text().strip()  # it was called, by TRL


def test_the_grpo_hand_off_samples_as_the_rounds_did(graduated):
    """temperature, top_p, top_k and the completion length go into GRPOConfig (TRL's own defaults are
    top_p 1.0 and top_k 0, another distribution than the rounds sampled from)."""
    settings = json.loads((graduated / "graduate" / "grpo_config.json").read_text())
    cfg = yaml.safe_load((graduated / "config.yaml").read_text())["sampling"]
    assert (settings["top_p"], settings["top_k"], settings["temperature"]) == (0.9, 7, cfg["temperature"])
    assert settings["max_completion_length"] == cfg["max_new_tokens"]


def test_the_reward_function_cuts_at_the_stop_strings_and_passes_trainer_objects_by_name():
    """The rounds' completions end before the first stop string; TRL's generation cannot stop on strings,
    so the reward function cuts them before scoring (hand-made inputs: what the scorer must see)."""
    from rsft.learning.monitoring.reward_func import as_reward_func

    seen = []

    def exact(prompts, completions, answer, trainer_state):
        seen.append((list(completions), trainer_state))
        return [1.0 if (c if isinstance(c, str) else c[0]["content"]) == a else 0.0
                for c, a in zip(completions, answer)]

    reward = as_reward_func(exact, stop=["\n", "</a>"])
    state = object()
    got = reward(prompts=["p", "p", "p"], completions=["12\n34", "12</a>\n", "13"], answer=["12", "12", "12"],
                 completion_ids=[[1], [2], [3]], trainer_state=state, log_metric=print)
    assert got == [1.0, 1.0, 0.0] and seen == [(["12", "12", "13"], state)]
    chat = reward(prompts=[[{"role": "user", "content": "p"}]], answer=["7"],
                  completions=[[{"role": "assistant", "content": "7\nmore"}]], trainer_state=state)
    assert chat == [1.0] and reward.__name__ == "exact"

    def fails_on_one(prompts, completions):
        if any("bad" in c for c in completions):
            raise ValueError("bad")
        return [2.0] * len(completions)

    assert as_reward_func(fails_on_one)(prompts=["a", "b"], completions=["ok", "bad"], trainer_state=state) == [2.0, None]


def test_trackers_get_the_round_metrics_and_the_sft_loss(graduated):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rounds = EventAccumulator(str(graduated / "trackers" / "tensorboard" / "rounds")).Reload()
    pass1 = rounds.Scalars("eval/greedy_pass@1")
    saved = json.loads((graduated / "round-000" / "metrics.json").read_text())["eval"]["greedy_pass@1"]
    assert [(e.step, round(e.value, 6)) for e in pass1] == [(0, round(saved, 6))]
    train = EventAccumulator(str(graduated / "trackers" / "tensorboard" / "round-000-train")).Reload()
    assert len(train.Scalars("train/loss")) >= 2  # TRL's own logging, every logging_steps
    assert list((graduated / "trackers" / "wandb").glob("offline-run-*/run-*.wandb"))


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (make test installs it)")
def test_the_report_renders_in_headless_chromium_with_every_plot(graduated, tmp_path):
    run_cli("report", str(graduated), check=True)
    page = graduated / "report.html"
    text = page.read_text()
    assert "<script" not in text and "src=\"http" not in text and "href=\"http" not in text  # self-contained
    offline = ["--headless", "--no-sandbox", "--disable-gpu", "--proxy-server=127.0.0.1:9",
               "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run(["chromium", *offline, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<svg") >= 5 and dom.stdout.count("<path") > 50  # every plot, with its lines
    assert "CONSOLE" not in dom.stderr and "Uncaught" not in dom.stderr
    shot = tmp_path / "report.png"
    done = subprocess.run(["chromium", *offline, "--window-size=1200,2400", f"--screenshot={shot}", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    from PIL import Image

    image = Image.open(shot).convert("L")
    colors = image.getcolors(maxcolors=1 << 16)
    assert colors is None or len(colors) > 20  # rendered plots, not a blank page
    assert image.getextrema()[0] < 100  # dark ink on the page


def test_revert_starts_the_next_round_from_the_best_model(tmp_path):
    (tmp_path / "always.py").write_text("def fire(history):\n    return 'always'\n")
    import sys

    sys.path.insert(0, str(tmp_path))
    data = mini(tmp_path, "rev", rounds=2, monitor={"triggers": [{"trigger": "always:fire", "action": "revert"}]})
    run_dir = run(build_config(data))
    monitor = json.loads((run_dir / "round-000" / "monitor.json").read_text())
    best = monitor["revert_to"]
    expected = str(run_dir / ("base-model" if best == -1 else f"round-{best:03d}/model"))
    train = json.loads((run_dir / "round-001" / "train.json").read_text())
    assert train["init"] == expected and (run_dir / "round-001" / "monitor.json").exists()
