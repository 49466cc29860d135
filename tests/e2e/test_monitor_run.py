"""A run that watches itself: the entropy trigger graduates it to GRPO (run through TRL), trackers get the
round metrics and the SFT loss, the HTML report renders in a real browser, and revert goes back."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from rsft.config import build_config
from rsft.rounds import run
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
