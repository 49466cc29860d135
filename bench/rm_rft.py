"""Reward-model-driven RFT on the demo task: does RM-selected data really improve the model?

The seed's full pipeline, on the addition demo, in one command:
  1. warm-start the demo's tiny model (as `rsft demo` does);
  2. sample K=16 answers per train prompt and label them with the exact verifier;
  3. export correct-vs-incorrect pairs (`rsft export pairs --all-pairs`);
  4. train a reward model on them, initialised from the policy (soft-label BT, hp = 1);
  5. run RFT rounds scored by that reward model alone: keep each prompt's best
     sample (best-of-N) if its reward clears the RM's decision threshold;
  6. per round, print held-out *verifier* pass@1 beside the mean RM score, and
     the share of RM-kept samples the verifier calls correct (the reward-hacking
     signal: it falls when the RM and the truth diverge).

    python bench/rm_rft.py [--rounds 5] [--out runs/bench-rm]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import demo_variant  # noqa: E402

from rsft.records import Group
from rsft.rounds import run, run_round_stage
from rsft.rundir import read_jsonl
from rsft.tasks.addition import addition_scorer
from rsft.commands.export import export_pairs
from rsft.training.preference import RewardModelTraining, train_reward_model


def verifier_share(kept_path: Path) -> float:
    """Fraction of kept samples the exact verifier accepts."""
    total = correct = 0
    for d in read_jsonl(kept_path):
        g = Group.from_json(d)
        scores = addition_scorer([g.prompt.text] * len(g.samples), [s.text for s in g.samples],
                                 [g.prompt.fields["answer"]] * len(g.samples))
        total += len(scores)
        correct += sum(s.value == 1.0 for s in scores)
    return correct / total if total else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-rm"))
    ap.add_argument("--collect-prompts", type=int, default=8000, help="prompts sampled for RM pairs")
    ap.add_argument("--rm-epochs", type=float, default=8.0)
    ap.add_argument("--rm-lr", type=float, default=1e-4)
    args = ap.parse_args()
    for stale in ("rm", "rft"):  # base and collect resume (they are deterministic); these are redone
        shutil.rmtree(args.out / stale, ignore_errors=True)

    # 1. the demo's warm-start model
    pin = {"sampling.engine": "transformers"}  # the engine these runs were first recorded with
    base = run(demo_variant(args.out, "base", {"rounds": 0, **pin})) / "base-model"

    # 2. K=16 verifier-labelled samples on a separate prompt set (task seed 1: no overlap with the
    #    demo's train/held-out prompts beyond chance), sample + score stages only
    collect = run(demo_variant(args.out, "collect", {
        **pin, "rounds": 0, "sampling.n": 16, "model.path": str(base), "warm_start.enabled": False, "eval.enabled": False,
        "task.params": {"digits": 3, "n_train": args.collect_prompts, "n_eval": 0, "n_gold": 0, "seed": 1}}))
    run_round_stage(collect, 0, "sample")
    run_round_stage(collect, 0, "score")

    # 3. correct-vs-incorrect pairs
    pairs, count = export_pairs(collect, 0, all_pairs=True, threshold=1.0, cap=8)
    print(f"pairs: {count} from {pairs}")

    # 4. the reward model, initialised from the policy
    report = train_reward_model(pairs, args.out / "rm", RewardModelTraining(
        init=str(base), learning_rate=args.rm_lr, epochs=args.rm_epochs, batch_size=64, max_length=32, eval_fraction=0.1))
    ev = report["eval"]
    print(f"reward model: {report['train_pairs']} train / {report['eval_pairs']} held-out pairs, "
          f"held-out accuracy {report['eval_before']['accuracy']:.3f} -> {ev['accuracy']:.3f}, ECE {ev['ece']:.3f}")

    # the RM's decision threshold: midway between its mean scores of held-out correct and incorrect answers
    from rsft.scoring.spec import build_scorer
    from rsft.training.preference import load_pairs, split_pairs

    rm = build_scorer({"name": "reward_model", "kwargs": {"path": str(args.out / "rm")}})
    _, held = split_pairs(load_pairs(pairs), 0.1, 0)
    chosen = rm(prompts=[p.prompt for p in held], completions=[p.chosen for p in held])
    rejected = rm(prompts=[p.prompt for p in held], completions=[p.rejected for p in held])
    threshold = (statistics.fmean(s.value for s in chosen) + statistics.fmean(s.value for s in rejected)) / 2
    print(f"RM threshold (midpoint of held-out correct/incorrect means): {threshold:.3f}")

    # 5. RFT scored by the RM alone; held-out metrics judged by the verifier
    rft_cfg = demo_variant(args.out, "rft", {
        **pin, "rounds": args.rounds,
        "scorer": {"name": "reward_model", "kwargs": {"path": str(args.out / "rm"), "batch_size": 256, "max_length": 32}},
        "eval.scorer": "addition", "model.path": str(base), "warm_start.enabled": False,
        "selection.rules": [{"rule": "top_k", "k": 1}, {"rule": "passes", "min": threshold}],
    })
    rft = run(rft_cfg)

    # 6. verifier pass@1 beside the RM score, and how much of what the RM kept is really correct
    base_eval = json.loads((args.out / "base" / "base-eval.json").read_text())
    print("\nround | verifier greedy pass@1 | verifier pass@8 | mean RM score (samples) | RM-kept | verifier-correct share of RM-kept")
    print(f" base | {base_eval['greedy_pass@1']:.1%} | {base_eval['pass@8']:.1%} | - | - | -")
    for r in range(args.rounds):
        m = json.loads((rft / f"round-{r:03d}" / "metrics.json").read_text())
        share = verifier_share(rft / f"round-{r:03d}" / "kept.jsonl")
        print(f"{r:5d} | {m['eval']['greedy_pass@1']:.1%} | {m['eval']['pass@8']:.1%} | {m['reward_mean']:.3f} | "
              f"{m['kept']} | {share:.1%}")


if __name__ == "__main__":
    main()
