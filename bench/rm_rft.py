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
     signal: it falls when the RM and the truth diverge), and whether rsft's
     reward-hacking guard (a `reward_hacking` monitor trigger, with the verifier as
     `eval.scorer` judging every round sample too) fired.

`--threshold midpoint` keeps a best-of-N sample when its reward clears the midpoint of
the RM's mean rewards on held-out correct and incorrect answers (the first version);
`--threshold precision:P` instead picks the lowest threshold at which at least a share
P of the held-out *samples* above it are correct, as the verifier labels them: fewer
samples, but mostly right ones, which is what SFT on positives needs.

    python bench/rm_rft.py [--rounds 5] [--out runs/bench-rm] [--threshold midpoint|precision:0.8]
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

from rsft.core.records import Group
from rsft.core.rundir.files import read_jsonl
from rsft.inputs.tasks.addition import addition_scorer
from rsft.learning.training.preference import RewardModelTraining, train_reward_model
from rsft.loop.commands.export import export_pairs
from rsft.loop.rounds import run, run_round_stage


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


def precision_threshold(rm, collect: Path, held_prompts: set[str], precision: float) -> float:
    """The lowest RM reward at which at least `precision` of the held-out samples at or above it are correct
    (verifier labels from the collection round; held-out = the prompts of the RM's held-out pairs)."""
    scored = []
    for d in read_jsonl(collect / "round-000" / "scored.jsonl"):
        g = Group.from_json(d)
        if json.dumps(g.prompt.text) not in held_prompts:
            continue
        values = rm(prompts=[g.prompt.text] * len(g.samples), completions=[s.text for s in g.samples])
        scored += [(v.value, c.value == 1.0) for v, c in zip(values, g.scores)]
    scored.sort(reverse=True)
    best, right = None, 0
    for i, (value, correct) in enumerate(scored, 1):
        right += correct
        if right / i >= precision:
            best = value
    if best is None:
        raise SystemExit(f"no RM threshold reaches precision {precision} on the held-out samples")
    kept = sum(v >= best for v, _ in scored)
    print(f"RM threshold for precision >= {precision:.0%} on {len(scored)} held-out samples: {best:.3f} "
          f"(keeps {kept}, {sum(c for v, c in scored if v >= best) / kept:.1%} correct; base rate "
          f"{sum(c for _, c in scored) / len(scored):.1%})")
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-rm"))
    ap.add_argument("--collect-prompts", type=int, default=8000, help="prompts sampled for RM pairs")
    ap.add_argument("--rm-epochs", type=float, default=8.0)
    ap.add_argument("--rm-lr", type=float, default=1e-4)
    ap.add_argument("--threshold", default="midpoint", help="midpoint, or precision:P (e.g. precision:0.8)")
    ap.add_argument("--run-name", default="rft", help="name of the RFT run (to keep several side by side)")
    args = ap.parse_args()
    shutil.rmtree(args.out / args.run_name, ignore_errors=True)  # base, collect and rm resume; the RFT run is redone

    # 1. the demo's warm-start model
    pin = {"sampling.engine": "transformers"}  # the engine these runs were first recorded with
    base = run(demo_variant(args.out, "base", {"rounds": 0, **pin})) / "base-model"

    # 2. K=16 verifier-labelled samples on a separate prompt set (task seed 1: no overlap with the
    #    demo's train/held-out prompts beyond chance), sample + score stages only
    collect_cfg = demo_variant(args.out, "collect", {
        **pin, "rounds": 0, "sampling.n": 16, "model.path": str(base), "warm_start.enabled": False, "eval.enabled": False,
        "task.params": {"digits": 3, "n_train": args.collect_prompts, "n_eval": 0, "n_gold": 0, "seed": 1}})
    # a later run of the bench reuses the collection (its round 0 has started, which a rounds=0 run refuses)
    collect = collect_cfg.run_dir if (collect_cfg.run_dir / "config.yaml").exists() else run(collect_cfg)
    run_round_stage(collect, 0, "sample")
    run_round_stage(collect, 0, "score")

    # 3. correct-vs-incorrect pairs
    pairs, count = export_pairs(collect, 0, all_pairs=True, threshold=1.0, cap=8)
    print(f"pairs: {count} from {pairs}")

    # 4. the reward model, initialised from the policy (trained once; a later run of the bench reuses it)
    if not (args.out / "rm" / "report.json").exists():
        train_reward_model(pairs, args.out / "rm", RewardModelTraining(
            init=str(base), learning_rate=args.rm_lr, epochs=args.rm_epochs, batch_size=64, max_length=32,
            eval_fraction=0.1))
    report = json.loads((args.out / "rm" / "report.json").read_text())
    ev = report["eval"]
    print(f"reward model: {report['train_pairs']} train / {report['eval_pairs']} held-out pairs, "
          f"held-out accuracy {report['eval_before']['accuracy']:.3f} -> {ev['accuracy']:.3f}, ECE {ev['ece']:.3f}")

    # the RM's decision threshold: midway between its mean scores of held-out correct and incorrect answers
    from rsft.learning.training.preference import load_pairs, split_pairs
    from rsft.parts.scoring.spec import build_scorer

    rm = build_scorer({"name": "reward_model", "kwargs": {"path": str(args.out / "rm")}})
    _, held = split_pairs(load_pairs(pairs), 0.1, 0)
    chosen = rm(prompts=[p.prompt for p in held], completions=[p.chosen for p in held])
    rejected = rm(prompts=[p.prompt for p in held], completions=[p.rejected for p in held])
    if args.threshold == "midpoint":
        threshold = (statistics.fmean(s.value for s in chosen) + statistics.fmean(s.value for s in rejected)) / 2
        print(f"RM threshold (midpoint of held-out correct/incorrect means): {threshold:.3f}")
    else:
        threshold = precision_threshold(rm, collect, {json.dumps(p.prompt) for p in held},
                                        float(args.threshold.split(":")[1]))

    # 5. RFT scored by the RM alone; held-out metrics judged by the verifier
    rft_cfg = demo_variant(args.out, args.run_name, {
        **pin, "rounds": args.rounds,
        "scorer": {"name": "reward_model", "kwargs": {"path": str(args.out / "rm"), "batch_size": 256, "max_length": 32}},
        "eval.scorer": "addition", "model.path": str(base), "warm_start.enabled": False,
        "selection.rules": [{"rule": "top_k", "k": 1}, {"rule": "passes", "min": threshold}],
        "monitor": {"triggers": [{"trigger": "reward_hacking"}], "judge_samples": True},
    })
    rft = run(rft_cfg)

    # 6. verifier pass@1 beside the RM score, and how much of what the RM kept is really correct
    base_eval = json.loads((args.out / "base" / "base-eval.json").read_text())
    print("\nround | verifier greedy pass@1 | verifier pass@8 | mean RM score (samples) | RM-kept | "
          "verifier-correct share of RM-kept | RM-verifier rank correlation | guard")
    print(f" base | {base_eval['greedy_pass@1']:.1%} | {base_eval['pass@8']:.1%} | - | - | - | - | -")
    for r in range(args.rounds):
        m = json.loads((rft / f"round-{r:03d}" / "metrics.json").read_text())
        share = verifier_share(rft / f"round-{r:03d}" / "kept.jsonl")
        monitor = json.loads((rft / f"round-{r:03d}" / "monitor.json").read_text())
        fired = "; ".join(f"{f['trigger']}: {f['reason']}" for f in monitor["fired"]) or "-"
        corr = m.get("judge_rank_correlation")
        print(f"{r:5d} | {m['eval']['greedy_pass@1']:.1%} | {m['eval']['pass@8']:.1%} | {m['reward_mean']:.3f} | "
              f"{m['kept']} | {share:.1%} | {'-' if corr is None else f'{corr:.2f}'} | {fired}")


if __name__ == "__main__":
    main()
