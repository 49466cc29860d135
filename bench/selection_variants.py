"""Selection variants of a finished run, each on the run's own base and round-0 samples, against the run.

`rsft run CONFIG --control random` runs a matched control for every round of the run. This bench is the
cheaper question for a slow model: from the same round-0 samples (hard-linked, as the control does),
what does each variant keep and train on, and what held-out greedy pass@1 does that give after the
variant's first `--rounds` rounds? Variants:

- `control`: the matched random control (`selection.control: random`): as many rows per prompt as the
  run kept, drawn at random from all the prompt's samples;
- `band`: a pass-rate band [0.125, 0.875] in front of the run's rules (prompts solved 8 of 8 or 0 of 8
  are left out);
- `diverse`: `diverse, n: CAP` in place of `dedup` and `cap` (the cap read off the run's rules);
- `star`: STaR rationalization (`selection.rationalize`) with `--hint` as its template.

Each prints `rsft compare`'s lines for the run against the variant (the variant minus the run for
band, diverse and star; the run minus the control for the control, which is its baseline).

    python bench/selection_variants.py examples/smollm2-learn.yaml control band diverse star \\
        [--rounds 1] [--override output_dir=...]
"""

from __future__ import annotations

import argparse

from rsft.core.config import RunConfig, build_config, load_config, merged
from rsft.core.runlock import release
from rsft.learning.monitoring.compare import compare
from rsft.loop.control import control_config, share_start
from rsft.loop.rounds import open_run, run

HINT = "{prompt} (The answer is {answer}. Reply with just the number.)"


def variant(cfg: RunConfig, name: str, rounds: int, hint: str) -> RunConfig:
    rules = cfg._given.get("selection", {}).get("rules")
    if not rules:
        raise SystemExit("bench/selection_variants.py: the config must name selection.rules (the variants edit them)")
    cap = next((r.get("n") for r in rules if r.get("rule") == "cap"), 4)
    changes = {
        "control": None,
        "band": {"selection": {"rules": [{"rule": "pass_rate", "min": 0.125, "max": 0.875}, *rules]}},
        "diverse": {"selection": {"rules": [*(r for r in rules if r.get("rule") not in ("dedup", "cap")),
                                            {"rule": "diverse", "n": cap}]}},
        "star": {"selection": {"rationalize": {"field": "answer", "n": 4, "template": hint}}},
    }[name]
    base = control_config(cfg)._given if name == "control" else merged(cfg._given, {"name": f"{cfg.name}-{name}",
                                                                                    **changes})
    return build_config(merged(base, {"rounds": rounds}), source=f"variant {name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("variants", nargs="+", choices=["control", "band", "diverse", "star"])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--hint", default=HINT, help="STaR's template ({prompt}, {answer}).")
    ap.add_argument("--override", action="append", default=[], help="KEY=VALUE for the run's config.")
    args = ap.parse_args()
    cfg = load_config(args.config, args.override)
    main_dir = run(cfg)  # the run itself (resumed: nothing to do when it is finished)
    for name in args.variants:
        v = variant(cfg, name, args.rounds, args.hint)
        release(open_run(v).lock)
        share_start(main_dir, v.run_dir)
        out = run(v)
        runs = [out, main_dir] if name == "control" else [main_dir, out]
        print(f"== {name}")
        for line in compare(runs).lines():
            print(line)


if __name__ == "__main__":
    main()
