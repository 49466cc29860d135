"""The base stage, before round 0: build the tiny model and/or warm-start the base into ``base-model/``.

With a real model and no warm start there is nothing to do: round 0 samples
from `model.path` itself.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rsft.core.rundir.files import atomic_write_json, replace_dir
from rsft.stages.run import Run


def base_stage(run: Run) -> None:
    if run.base_model == run.model_path:
        return
    from rsft.inputs.tasks.tiny_model import build_tiny, tiny_alphabet
    from rsft.learning.training.warm_start import dev_prompts, warm_start

    t0 = time.perf_counter()
    init = run.model_path
    if init == "tiny":
        init = str(build_tiny(run.layout.base_init, tiny_alphabet(run.task), run.cfg.model.tiny, run.cfg.seed,
                              run.task.chat_template))
    info: dict[str, Any] = {"init": init}
    ws = run.cfg.warm_start
    if ws.enabled:
        dev = dev_prompts(run.task.gold, run.task.train, ws.examples, ws.eval_prompts)
        info["warm_start"] = warm_start(init, Path(run.base_model), run.task.gold, dev, run.eval_scorer, ws,
                                        run.sampling_params(-1), seed=run.cfg.seed, agent=run.agent,
                                        rounds=run.cfg.train)
    else:
        replace_dir(Path(init), Path(run.base_model))
    info["seconds"] = round(time.perf_counter() - t0, 3)
    atomic_write_json(run.layout.base_info, info)
