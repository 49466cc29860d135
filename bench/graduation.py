"""What graduation does: GRPO from the collapsed model against more RFT rounds, with the same sample budget.

On the short 2-digit addition run of tests/e2e/learn.yaml:
  1. RFT rounds with `monitor: {action: graduate}` and an entropy_collapse trigger (entropy fallen by
     `--drop` from round 0); the loop stops when it fires and writes RUN/graduate/;
  2. GRPO: `rsft graduate` (TRL's GRPOTrainer) from the best round's model on the prompts whose samples
     still got different rewards, for as many completions as one RFT round samples
     (max_steps = n_train × n / per-step completions);
  3. RFT: the same config with the trigger only warning, `--extra` more rounds past the graduation round
     (each samples n_train × n completions);
and prints held-out greedy pass@1 of both, judged by the same verifier.

    python bench/graduation.py [--out runs/bench-graduation] [--drop 0.5] [--extra 1]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rsft.core.config import build_config, load_config
from rsft.core.rundir.files import read_json
from rsft.loop.commands.evaluate import evaluate_model
from rsft.loop.commands.graduate import graduate
from rsft.loop.rounds import run

LEARN = Path(__file__).resolve().parents[1] / "tests" / "e2e" / "learn.yaml"


def config(out: Path, name: str, action: str, drop: float, rounds: int) -> object:
    data = load_config(LEARN).model_dump(mode="json")
    data.update({"name": name, "output_dir": str(out), "rounds": rounds,
                 "monitor": {"action": action, "triggers": [{"trigger": "entropy_collapse", "min": None,
                                                               "drop": drop}]}})
    return build_config(data, [], source="bench/graduation.py")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-graduation"))
    ap.add_argument("--drop", type=float, default=0.5, help="entropy_collapse: fraction of round 0's entropy lost")
    ap.add_argument("--extra", type=int, default=1, help="RFT rounds past the graduation round (the same budget)")
    ap.add_argument("--max-rounds", type=int, default=6)
    args = ap.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)

    t0 = time.perf_counter()
    grad_dir = run(config(args.out, "graduate", "graduate", args.drop, args.max_rounds))
    info = read_json(grad_dir / "graduate" / "graduation.json")
    r = info["round"]
    cfg = load_config(grad_dir / "config.yaml")
    budget = cfg.task.params["n_train"] * cfg.sampling.n
    per_step = read_json(grad_dir / "graduate" / "grpo_config.json")["per_device_train_batch_size"]
    steps = budget // per_step
    print(f"graduation at round {r} ({info['trigger']}); GRPO from round {info['best_round']}'s model on "
          f"{info['prompts']} mixed-reward prompts ({info['dropped_uniform']} uniform dropped), {steps} steps "
          f"x {per_step} completions = {steps * per_step} (one RFT round samples {budget})")
    t1 = time.perf_counter()
    model = graduate(grad_dir, max_steps=steps)
    grpo_seconds = time.perf_counter() - t1
    grpo = evaluate_model(model, grad_dir / "config.yaml")

    more = run(config(args.out, "rft", "warn", args.drop, r + 1 + args.extra))
    rows = {f"round {q}": read_json(more / f"round-{q:03d}" / "eval.json")["greedy_pass@1"]
            for q in range(r + 1 + args.extra)}
    base = read_json(more / "base-eval.json")["greedy_pass@1"]
    start = base if info["best_round"] < 0 else rows[f"round {info['best_round']}"]
    print(f"\nheld-out greedy pass@1 (verifier), base {base:.1%}; RFT rounds: "
          + ", ".join(f"{k} {v:.1%}" for k, v in rows.items()))
    print(f"from round {info['best_round']} ({start:.1%}): GRPO ({steps} steps, {grpo_seconds:.0f} s) "
          f"{grpo['greedy_pass@1']:.1%} | {args.extra} more RFT round(s) {rows[f'round {r + args.extra}']:.1%}")
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
