"""Adaptive sample allocation on the demo task: yield per token, and tokens to convergence.

    python bench/allocation.py yield        [--out runs/bench-alloc] [--warm-target 0.05]
    python bench/allocation.py convergence  [--out runs/bench-alloc] [--rounds 6] [--warm-target 0.05]
                                            [--strategies uniform,early_stop,carry] [--target 0.9]

**yield**: one sampling round from the demo's warm-start model on its 2,000 train
prompts, for each allocation, at an equal token budget (what uniform K=8 spends).
It prints accepted *distinct* solutions per million generated tokens and the
ratio to uniform, measured in one run. Addition has one right answer per
prompt, so a distinct solution is a newly solved prompt.

**convergence**: the demo's rounds with each allocation, one round at a time
until held-out greedy pass@1 first reaches the target (90%); prints the
generated tokens (cumulative, sampling only) it took, and per round the tokens
and how many train prompts have been kept in some round so far. `carry` is
measured here: in a single round it is early_stop.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import demo_variant  # noqa: E402

from rsft.core.rundir.files import read_jsonl  # noqa: E402
from rsft.loop.rounds import run, run_round_stage  # noqa: E402
from rsft.parts.selection import normalize  # noqa: E402

PIN = {"sampling.engine": "transformers"}  # per-sample seeds: allocations differ only in where samples go
STRATEGIES = {
    "uniform": {"sampling.allocation": "uniform"},
    "early_stop": {"sampling.allocation": "early_stop", "sampling.wave": 1, "sampling.target_accepted": 1},
    "early_stop+give_up": {"sampling.allocation": "early_stop", "sampling.wave": 1, "sampling.target_accepted": 1,
                           "sampling.give_up_after": 2},
    "gvm": {"sampling.allocation": "gvm", "sampling.presample": 2},
    # early_stop, and a prompt kept in an earlier round is not sampled again (replay trains on its row)
    "carry": {"sampling.allocation": "carry", "sampling.wave": 1, "sampling.target_accepted": 1,
              "sampling.solved_samples": 0},
    "carry+give_up": {"sampling.allocation": "carry", "sampling.wave": 1, "sampling.target_accepted": 1,
                      "sampling.solved_samples": 0, "sampling.give_up_after": 4},
}
YIELD_STRATEGIES = ["uniform", "early_stop", "early_stop+give_up", "gvm"]  # carry is early_stop in one round


def base_model(out: Path, warm_target: float) -> str:
    """The demo's warm-start model (stopped at `warm_target` greedy pass@1), shared by every strategy."""
    return str(run(demo_variant(out, f"base-{warm_target}", {**PIN, "rounds": 0, "warm_start.target_pass1": warm_target}))
               / "base-model")


def round_yield(run_dir: Path) -> tuple[int, int, int]:
    """(generated tokens, distinct accepted solutions, prompts with one) of round 0."""
    tokens = distinct = covered = 0
    for d in read_jsonl(run_dir / "round-000" / "scored.jsonl"):
        tokens += sum(len(s["token_ids"]) for s in d["samples"])
        texts = {normalize(s["text"]) for s, c in zip(d["samples"], d["scores"]) if (c.get("value") or 0) >= 1.0}
        distinct += len(texts)
        covered += bool(texts)
    return tokens, distinct, covered


def solves_by_index(run_dir: Path) -> list[tuple[int, int]]:
    """Per sample index i of a uniform round: (prompts whose first accepted sample is the i-th, tokens of
    every prompt's i-th sample). Their ratio is what one more sample at index i buys."""
    first: dict[int, int] = {}
    tokens: dict[int, int] = {}
    for d in read_jsonl(run_dir / "round-000" / "scored.jsonl"):
        hit = next((s["index"] for s, c in zip(d["samples"], d["scores"]) if (c.get("value") or 0) >= 1.0), None)
        if hit is not None:
            first[hit] = first.get(hit, 0) + 1
        for s in d["samples"]:
            tokens[s["index"]] = tokens.get(s["index"], 0) + len(s["token_ids"])
    return [(first.get(i, 0), tokens[i]) for i in sorted(tokens)]


def yield_bench(out: Path, warm_target: float) -> None:
    base = base_model(out, warm_target)
    results = {}
    budget = None
    for name in YIELD_STRATEGIES:
        changes = {**PIN, **STRATEGIES[name], "model.path": base, "warm_start.enabled": False, "rounds": 0}
        if name == "gvm":
            changes["sampling.token_budget"] = budget
        run_dir = run(demo_variant(out, f"yield-{warm_target}-{name.replace('+', '-')}", changes))
        run_round_stage(run_dir, 0, "sample")
        run_round_stage(run_dir, 0, "score")
        results[name] = round_yield(run_dir)
        if name == "uniform":
            budget = results[name][0]
            by_index = solves_by_index(run_dir)
    print(f"\nyield, one round from the warm-start model (stopped at greedy pass@1 >= {warm_target}), 2000 prompts, "
          f"uniform K=8 budget: {budget:,} tokens")
    print("strategy           | tokens    | distinct accepted | prompts solved | per M tokens | vs uniform")
    ref = results["uniform"][1] / results["uniform"][0] * 1e6
    for name, (tokens, distinct, covered) in results.items():
        per_m = distinct / tokens * 1e6
        print(f"{name:18s} | {tokens:9,d} | {distinct:17d} | {covered:14d} | {per_m:12.0f} | {per_m / ref:.2f}x")
    rates = [new / tok * 1e6 for new, tok in by_index]
    print("uniform, prompts first solved by the i-th sample, per M tokens of the i-th samples: "
          + " / ".join(f"{r:,.0f}" for r in rates))
    print(f"ceiling of an allocation that sees only each prompt's own outcomes (best index rate / uniform): "
          f"{max(rates) / ref:.2f}x")


def unsolved_tokens(rd: Path) -> int:
    """Tokens a round spent on prompts that got no accepted sample in it."""
    return sum(sum(len(s["token_ids"]) for s in d["samples"]) for d in read_jsonl(rd / "scored.jsonl")
               if not any((c.get("value") or 0) >= 1.0 for c in d.get("scores", [])))


def convergence_bench(out: Path, rounds: int, warm_target: float, names: list[str], target: float) -> None:
    """Each strategy round by round until held-out greedy pass@1 reaches `target` (or `rounds` rounds)."""
    base = base_model(out, warm_target)
    print(f"\nconvergence: tokens generated (sampling) until held-out greedy pass@1 >= {target:.0%}, "
          f"{rounds} rounds max")
    reached_by = {}
    for name in names:
        changes = {**PIN, **STRATEGIES[name], "model.path": base, "warm_start.enabled": False}
        total, reached, trail, solved = 0, None, [], set()
        for r in range(rounds):
            run_name = f"conv-{warm_target}-{name.replace('+', '-')}"
            started = len([d for d in (out / run_name).glob("round-*") if any(d.iterdir())])
            # rounds never go back on a resume: an earlier invocation may have run further already
            run_dir = run(demo_variant(out, run_name, {**changes, "rounds": max(r + 1, started)}))
            rd = run_dir / f"round-{r:03d}"
            m = json.loads((rd / "metrics.json").read_text())
            total += m["tokens_generated"]
            solved |= {d["prompt"]["id"] for d in read_jsonl(rd / "kept.jsonl")}
            trail.append(f"{m['eval']['greedy_pass@1']:.1%} ({m['tokens_generated']:,} tok, "
                         f"{unsolved_tokens(rd):,} on prompts left unsolved, {len(solved)} solved so far)")
            if m["eval"]["greedy_pass@1"] >= target:
                reached = (r, total)
                break
        reached_by[name] = reached
        where = f"round {reached[0]} after {reached[1]:,} tokens" if reached else f"not reached ({total:,} tokens)"
        where += f", {len(solved) / total * 1e6:,.0f} prompts solved per M tokens"
        ratio = (f", {reached_by['uniform'][1] / reached[1]:.2f}x fewer than uniform"
                 if reached and reached_by.get("uniform") else "")
        print(f"{name:18s} | {where}{ratio}\n    by round: " + " | ".join(trail))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["yield", "convergence"])
    ap.add_argument("--out", type=Path, default=Path("runs/bench-alloc"))
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--warm-target", type=float, default=0.05, help="warm-start greedy pass@1 target (demo: 0.05)")
    ap.add_argument("--strategies", default="uniform,early_stop,carry",
                    help=f"convergence: comma-separated, from {', '.join(STRATEGIES)}")
    ap.add_argument("--target", type=float, default=0.9, help="convergence: held-out greedy pass@1 to reach")
    args = ap.parse_args()
    if args.what == "yield":
        yield_bench(args.out, args.warm_target)
    else:
        names = args.strategies.split(",")
        if unknown := [n for n in names if n not in STRATEGIES]:
            ap.error(f"unknown strategies {unknown}; choose from {', '.join(STRATEGIES)}")
        convergence_bench(args.out, args.rounds, args.warm_target, names, args.target)


if __name__ == "__main__":
    main()
