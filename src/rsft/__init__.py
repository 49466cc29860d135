"""rsft: rejection-sampling fine-tuning (RAFT, ReST-EM, iterative best-of-N) for HF causal LMs.

The public API, imported lazily so that `import rsft` stays cheap:

    rsft.run(config)                      the round loop (resumes a run directory)
    rsft.run_from_file(path, overrides)   the same, from YAML
    rsft.demo()                           the built-in CPU demo
    rsft.run_round_stage(run_dir, r, s)   one stage of one round
    rsft.evaluate_model(model_or_run)     held-out metrics
    rsft.round_rows(run_dir)              per-round metrics
    rsft.write_report(run_dir)            RUN/report.html
    rsft.compare([run_a, run_b, ...])     held-out curves side by side, paired bootstrap intervals
    rsft.run_with_control(config)         a run and its matched random control, compared
    rsft.graduate(run_dir)                the GRPO hand-off a monitor prepared
    rsft.best_of_n(model, scorer, ...)    inference-time best-of-N
    rsft.export_pairs(run_dir)            DPO pairs from scored samples
    rsft.train_reward_model(pairs, ...)   soft-label Bradley-Terry reward model
    rsft.score_file(path, scorer)         score / filter a dataset file
    rsft.resolve(kind, spec)              the registry: engines, scorers, tasks, rules by name
    rsft.load_config / RunConfig          configuration
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "run": "rsft.loop.rounds",
    "run_from_file": "rsft.loop.rounds",
    "run_round_stage": "rsft.loop.rounds",
    "evaluate_model": "rsft.loop.commands.evaluate",
    "round_rows": "rsft.core.rundir.rows",
    "write_report": "rsft.learning.monitoring.report",
    "compare": "rsft.learning.monitoring.compare",
    "Comparison": "rsft.learning.monitoring.compare",
    "paired_bootstrap": "rsft.learning.monitoring.compare",
    "run_with_control": "rsft.loop.control",
    "graduate": "rsft.loop.commands.graduate",
    "demo": "rsft.loop.demo",
    "best_of_n": "rsft.loop.commands.best_of_n",
    "BestOfN": "rsft.loop.commands.best_of_n",
    "export_pairs": "rsft.loop.commands.export",
    "train_reward_model": "rsft.learning.training.preference",
    "RewardModelTraining": "rsft.learning.training.preference",
    "score_file": "rsft.loop.commands.score_file",
    "build_scorer": "rsft.parts.scoring.spec",
    "resolve": "rsft.core.registry",
    "demo_config": "rsft.loop.demo",
    "load_config": "rsft.core.config",
    "build_config": "rsft.core.config",
    "RunConfig": "rsft.core.config",
    "Prompt": "rsft.core.records",
    "Sample": "rsft.core.records",
    "Score": "rsft.core.records",
    "Group": "rsft.core.records",
    "PreferencePair": "rsft.core.records",
    "RsftError": "rsft.core.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rsft' has no attribute {name!r}")
