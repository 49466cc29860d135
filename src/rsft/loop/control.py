"""`rsft run CONFIG --control random`: a run and its matched random control, side by side, then compared.

The control is the same config with `selection.control: random` under the name ``NAME-control-random``: per
prompt it keeps as many samples as the rules would, drawn at random from all the prompt's samples
(`rsft.stages.select.RandomControl`). So it trains on the same number of rows of the same prompts, and
what separates the two curves is the selection, not the SFT on the model's own samples (a 2026
reproduction of RFT on GSM8K found the reward model's best sample per prompt no better than a random one).

Where the two share work by construction, the control takes the run's: the base model (built or
warm-started: the same seed and config), its held-out eval, and round 0's samples and scores (the same
base draws them with the same seeds); they are hard-linked (copied where links fail), never redone, and
said in one line. From round 1 on the control samples from its own model. It does not run the two at once
(they would share 2 cores), and it does not pick the control's seed apart: a different seed would add
sampling noise to the comparison.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from rsft.core.config import RunConfig, build_config, merged
from rsft.core.errors import ConfigError
from rsft.core.progress import notice
from rsft.core.rundir.files import atomic_write_text
from rsft.core.rundir.layout import RunDir, done_marker
from rsft.core.runlock import release
from rsft.learning.monitoring.compare import Comparison, compare
from rsft.loop.rounds import open_run, run, write_report_if_asked
from rsft.stages.run import Run

SHARED_BASE = ("base-init", "base-model", "base.json", "base-eval.json", "base-eval-greedy.jsonl")
SHARED_BASE_STAGES = ("base", "base-eval")
SHARED_ROUND0 = ("samples.jsonl", "presample.jsonl", "allocation.json", "scored.jsonl", "rationalized.jsonl")
SHARED_ROUND0_STAGES = ("sample", "score", "rationalize")


def control_config(cfg: RunConfig, mode: str = "random") -> RunConfig:
    """`cfg` as its matched control: the same keys, `selection.control` set, named ``NAME-control-MODE``."""
    if cfg.selection.control is not None:
        raise ConfigError(f"key 'selection.control': this config is already a control ({cfg.selection.control}); "
                          "--control runs one beside a run")
    given = merged(cfg._given, {"name": f"{cfg.name}-control-{mode}", "selection": {"control": mode}})
    return build_config(given, source="--control")


def _link(src: Path, dst: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dst, copy_function=_link_file)
    else:
        _link_file(src, dst)


def _link_file(src: str | Path, dst: str | Path) -> None:
    try:
        os.link(src, dst)  # the files are only ever replaced whole (atomic writes), so a link is never edited
    except OSError:
        shutil.copy2(src, dst)


def share_start(main: Path, control: Path) -> bool:
    """Give the control the run's base and round 0 samples and scores, once (before it has any round); True
    if anything was shared."""
    m, c = RunDir(main), RunDir(control)
    if c.round(0).path.exists() and any(c.round(0).path.iterdir()):
        return False
    shared = False
    for name in SHARED_BASE:
        if (m.path / name).exists() and not (c.path / name).exists():
            _link(m.path / name, c.path / name)
            shared = True
    for stage in SHARED_BASE_STAGES:
        if done_marker(m.path, stage).exists():
            atomic_write_text(done_marker(c.path, stage), "")
    r0, c0 = m.round(0), c.round(0)
    if r0.done("score"):
        c0.path.mkdir(parents=True, exist_ok=True)
        for name in SHARED_ROUND0:
            if (r0.path / name).exists():
                _link(r0.path / name, c0.path / name)
        for stage in SHARED_ROUND0_STAGES:
            if r0.done(stage):
                c0.mark_done(stage)
        shared = True
    return shared


def run_with_control(cfg: RunConfig, mode: str = "random") -> tuple[Path, Path, Comparison]:
    """The run, then its matched control (resuming either), then the comparison of their held-out curves."""
    ccfg = control_config(cfg, mode)  # checked before any work
    main = run(cfg)
    opened = open_run(ccfg)  # writes the control's config.yaml (or checks it on a resume)
    release(opened.lock)
    if share_start(main, ccfg.run_dir):
        notice(f"control: the base model, its eval and round 0's samples and scores are the run's own ({main}), "
               "so the control differs from the run only in what it keeps")
    control = run(ccfg)
    atomic_write_text(RunDir(main).control, json.dumps({"run": str(control), "mode": mode}))
    write_report_if_asked(Run(cfg, main))  # now with the comparison in it
    comparison = compare([control, main])  # the run against its control: the gain the selection made
    for line in comparison.lines():
        print(line)
    return main, control, comparison
