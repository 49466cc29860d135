"""The `reasoning_gym` task family: ~100 procedural datasets of reasoning-gym (``pip install 'rsft[reasoning-gym]'``).

    task: {name: reasoning_gym, params: {dataset: chain_sum, size: 1000, eval_size: 200, seed: 0, min_terms: 3}}

Every parameter that is not one of `make_task`'s own goes to the dataset's config (``min_terms`` above;
reasoning-gym refuses a key its config does not have, in one line naming ``task.params``). One dataset of
``size + eval_size`` entries is drawn from `seed`: the first `size` are the train prompts, the rest the
held-out ones, minus any whose question is also a train question (a procedural generator can repeat
itself; rsft says how many it dropped), so the splits never overlap.

Prompts are chat prompts: reasoning-gym's own default system prompt (it asks for the answer inside
``<answer>…</answer>``; ``task.system_prompt`` replaces it, or names one of reasoning-gym's own, such as
``simple``; "" leaves it out) and the question as the user turn (``task.prompt_template`` with
``{question}`` wraps it).

The verifier is the dataset's own ``score_answer(answer, entry)`` on the entry the prompt came from
(``rg_index`` names it; the task's scorer holds the generated dataset). Answer extraction: the content of
the **last** ``<answer>…</answer>`` in the completion, stripped (reasoning-gym's `extract_answer`); the
content may span several lines (matrices, grids). A completion without one is a format failure
(value 0, ``parts: {format: 0, correct: 0}``), kept apart from a wrong answer (``format: 1``, the dataset's
own score for it, often 0 to 0.05); ``correct`` is 1 when the score is 1. The gold answer is in the
prompt's ``answer`` field too, for other scorers and for reading.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from rsft.core.errors import ConfigError
from rsft.core.progress import notice
from rsft.core.records import Prompt, Score
from rsft.inputs.data.formats import completion_text
from rsft.inputs.tasks.base import Task

DEFAULT_SYSTEM = "default"  # reasoning-gym's SYSTEM_PROMPTS["default"]


def _require() -> Any:
    if importlib.util.find_spec("reasoning_gym") is None:
        raise ConfigError("key 'task.name': reasoning_gym needs the reasoning-gym package "
                          "(pip install 'rsft[reasoning-gym]')")
    import reasoning_gym

    return reasoning_gym


def make_task(dataset: str, size: int = 1000, eval_size: int = 200, seed: int = 0, settings: Any = None,
              **config: Any) -> Task:
    """Disjoint train and held-out prompts of one reasoning-gym dataset, scored by its own checker."""
    rg = _require()
    if size < 1 or eval_size < 0:
        raise ValueError(f"size must be at least 1 and eval_size at least 0, got {size} and {eval_size}")
    from reasoning_gym.factory import DATASETS
    from reasoning_gym.utils import SYSTEM_PROMPTS

    if dataset not in DATASETS:
        raise ConfigError(f"key 'task.params.dataset': reasoning-gym has no dataset {dataset!r} "
                          f"(it has {len(DATASETS)}, e.g. {', '.join(sorted(DATASETS)[:6])}, ...)")
    try:
        data = rg.create_dataset(dataset, size=size + eval_size, seed=seed, **config)
    except TypeError as e:  # a key the dataset's config does not have
        raise ConfigError(f"key 'task.params' of task 'reasoning_gym' ({dataset}): {str(e).splitlines()[0]}") from None
    system_prompt = DEFAULT_SYSTEM if settings is None or settings.system_prompt is None else settings.system_prompt
    system = SYSTEM_PROMPTS.get(system_prompt, system_prompt) if system_prompt else None
    template = settings.prompt_template if settings is not None else None
    entries = [data[i] for i in range(size + eval_size)]

    def prompt(i: int, entry: dict[str, Any]) -> Prompt:
        turns = ({"role": "system", "content": system},) if system else ()
        user = template.format(question=entry["question"]) if template else entry["question"]
        return Prompt(f"{dataset}-{seed}-{i}", messages=(*turns, {"role": "user", "content": user}),
                      fields={"rg_index": i, "answer": str(entry["answer"])})

    train = [prompt(i, e) for i, e in enumerate(entries[:size])]
    asked = {e["question"].strip() for e in entries[:size]}
    held = [prompt(size + i, e) for i, e in enumerate(entries[size:]) if e["question"].strip() not in asked]
    if len(held) < eval_size:
        notice(f"reasoning_gym {dataset}: {eval_size - len(held)} of {eval_size} held-out questions are also train "
               "questions (the generator repeats itself) and were left out of the held-out prompts")
    return Task(f"reasoning_gym:{dataset}", train, held, scorer=checker(data, entries), gold=[])


def checker(data: Any, entries: list[dict[str, Any]]) -> Any:
    """The dataset's own `score_answer` as a TRL-style scorer over `rg_index` (see the module docstring)."""
    from reasoning_gym.utils import extract_answer

    def reasoning_gym(prompts: list[Any], completions: list[Any], rg_index: list[int], **kwargs: Any) -> list[Score]:
        out = []
        for c, i in zip(completions, rg_index, strict=True):
            found = extract_answer(completion_text(c), tag_name="answer", strip=True)
            if found is None:
                out.append(Score(0.0, {"format": 0.0, "correct": 0.0}))
                continue
            value = float(data.score_answer(found, entries[int(i)]))
            out.append(Score(value, {"format": 1.0, "correct": float(value >= 1.0)}, answer=found))
        return out

    return reasoning_gym
