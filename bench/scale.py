"""How a round scales with its number of prompts: peak memory and prompts/s of sample → score → select.

Each size runs in a fresh child process (so its peak RSS is its own): it writes N prompts to a JSONL
file, opens a run on them and runs the round's sample, score and select stages. `--engine fake` uses
the scripted engine (what the stages themselves cost); `--engine ctranslate2` samples from a real tiny
model (the demo's 1M shape), so the cost per prompt includes generation. With `--ray N` the same work
runs with N Ray sampling workers and Ray scoring tasks; `--compare-ray` runs both and prints the ratio.

    python bench/scale.py --sizes 10000 30000 100000 --engine fake
    python bench/scale.py --sizes 10000 30000 100000 --engine ctranslate2 --n 2
    python bench/scale.py --sizes 20000 --engine ctranslate2 --compare-ray 2

It prints one line per size: the process's RSS before the stages (imports, the model, the prompt
index) and its peak during them (VmHWM, reset when the stages start, Linux), and for the largest
size that peak as a ratio of the smallest's (the acceptance: within 1.10) with how much each grew
during the stages.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCORER = "def score(prompts, completions, answer, **kw):\n    return [float(c == a) for c, a in zip(completions, answer)]\n"


def child(n_prompts: int, engine: str, n: int, ray_workers: int, work: Path) -> dict:
    """Run one round's sample, score and select on `n_prompts` prompts; report seconds and peak RSS."""
    sys.path.insert(0, str(work))
    from rsft.core.config import build_config
    from rsft.core.progress import quiet_hf
    from rsft.loop.rounds import open_run
    from rsft.stages.runner import run_base_stage, run_stage

    quiet_hf()
    train = work / "train.jsonl"
    with open(train, "w") as f:
        for i in range(n_prompts):
            a, b = i % 1000, (i * 7) % 1000
            f.write(json.dumps({"prompt": f"{a:03d}+{b:03d}=", "answer": str(a + b)[::-1],
                                "fake": [str(a + b)[::-1], "0"]}) + "\n")
    (work / "scale_scorer.py").write_text(SCORER)
    model = work / "model"
    if not model.exists():
        sys.path.insert(0, str(HERE))
        from common import build_model

        build_model(model, "1m")
    cfg = {
        "name": f"scale-{n_prompts}", "output_dir": str(work / "runs"), "seed": 0, "rounds": 1,
        "model": {"path": str(model)},
        "task": {"name": "dataset", "train": str(train)}, "scorer": "scale_scorer:score",
        "sampling": {"engine": engine, "n": n, "batch_size": 256, "max_new_tokens": 5, "temperature": 1.0},
        "selection": {"rules": [{"rule": "passes"}, {"rule": "dedup"}]},
        "eval": {"enabled": False},
    }
    if ray_workers:
        cfg["ray"] = {"address": "local", "num_workers": ray_workers}
    os.chdir(work)
    run = open_run(build_config(cfg))
    run_base_stage(run, "base")
    before = _rss_mb("VmRSS")
    _reset_peak()
    times = {}
    for stage in ("sample", "score", "select"):
        t0 = time.perf_counter()
        try:
            run_stage(run, 0, stage)
        except Exception as e:  # noqa: BLE001 - a round where nothing passes still measured sample/score
            if stage != "select":
                raise
            print(f"select: {e}", file=sys.stderr)
        times[stage] = time.perf_counter() - t0
    run.release_engines()
    return {"prompts": n_prompts, "seconds": times, "rss_before_mb": before, "rss_stages_peak_mb": _rss_mb("VmHWM"),
            "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "samples_bytes": run.round(0).samples.stat().st_size}


def _rss_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (the peak since the last reset) of this process, in MB (Linux)."""
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the stages' own peak is measured, not the model
    build's or the imports'."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def measure(n_prompts: int, engine: str, n: int, ray_workers: int, work: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", str(n_prompts), "--engine", engine, "--n", str(n),
           "--ray-workers", str(ray_workers), "--work", str(work)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"child failed ({n_prompts} prompts):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    ap.add_argument("--engine", default="fake")
    ap.add_argument("--n", type=int, default=2, help="samples per prompt")
    ap.add_argument("--compare-ray", type=int, default=0, help="also run with this many Ray workers; print the ratio")
    ap.add_argument("--child", type=int, default=0)
    ap.add_argument("--ray-workers", type=int, default=0)
    ap.add_argument("--work", type=Path)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.engine, args.n, args.ray_workers, args.work)))
        return
    with tempfile.TemporaryDirectory() as d:
        rows = []
        for size in args.sizes:
            for workers in ([0, args.compare_ray] if args.compare_ray else [0]):
                work = Path(d) / f"{size}-{workers}"
                work.mkdir()
                if (Path(d) / "model").exists():
                    os.symlink(Path(d) / "model", work / "model")
                r = measure(size, args.engine, args.n, workers, work)
                if not (Path(d) / "model").exists():
                    os.replace(work / "model", Path(d) / "model")
                    os.symlink(Path(d) / "model", work / "model")
                total = sum(r["seconds"].values())
                r["workers"] = workers
                rows.append(r)
                s = r["seconds"]
                print(f"{args.engine} {size:>7,} prompts {'ray x' + str(workers) if workers else '1 process':>10}: "
                      f"RSS {r['rss_before_mb']:6.1f} MB before the stages, peak {r['rss_stages_peak_mb']:6.1f} MB "
                      f"during them, {size / total:8.0f} prompts/s "
                      f"(sample {s['sample']:.1f}s, score {s['score']:.1f}s, select {s['select']:.1f}s), "
                      f"{1e6 * total / size:.0f} us/prompt", flush=True)
        base = [r for r in rows if not r["workers"]]
        if len(base) > 1:
            grow = [r["rss_stages_peak_mb"] - r["rss_before_mb"] for r in (base[0], base[-1])]
            print(f"peak RSS of sample+score+select, {base[-1]['prompts']:,} vs {base[0]['prompts']:,} prompts "
                  f"({args.engine}): {base[-1]['rss_stages_peak_mb'] / base[0]['rss_stages_peak_mb']:.3f}x "
                  f"(growth during the stages: {grow[0]:+.1f} MB vs {grow[1]:+.1f} MB)")
        if args.compare_ray:
            for size in args.sizes:
                one = next(r for r in rows if r["prompts"] == size and not r["workers"])
                ray = next(r for r in rows if r["prompts"] == size and r["workers"])
                t1, tr = sum(one["seconds"].values()), sum(ray["seconds"].values())
                print(f"ray x{args.compare_ray} vs 1 process ({args.engine}, {size:,} prompts, sample+score+select): "
                      f"{t1 / tr:.2f}x")


if __name__ == "__main__":
    main()
