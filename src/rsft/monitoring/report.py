"""`rsft report RUN`: one self-contained HTML page about a run, rewritten after every round.

Plots are drawn with matplotlib and embedded as inline SVG, so the page needs no network and no
script: held-out pass@1 / pass@k / maj@k, acceptance and coverage, sample entropy, reward max against
median, tokens spent and samples per prompt, the selection score against the judge (when round samples
are judged), then the triggers that fired and a few kept and rejected samples of each round. Every
number comes from the run directory (`metrics.json`, `monitor.json`, `kept.jsonl`, `scored.jsonl`).
"""

from __future__ import annotations

import html
import io
import itertools
import json
from pathlib import Path
from typing import Any

from rsft.errors import DiskFull, RsftError
from rsft.metrics import round_table
from rsft.rundir import atomic_write_text, check_output, read_json, read_jsonl, round_dirs, round_rows

STYLE = """body{font-family:sans-serif;margin:24px;color:#222;max-width:1100px}h1{font-size:22px}
h2{font-size:17px;margin-top:28px}.plots{display:flex;flex-wrap:wrap;gap:12px}.plot{width:520px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}
td.text{text-align:left;font-family:monospace;white-space:pre-wrap;max-width:420px}.fired{color:#a40}"""


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prologue and doctype: the page embeds the element


def _series(rows: list[dict[str, Any]], get: Any) -> tuple[list[str], list[float | None]]:
    xs, ys = [], []
    for row in rows:
        xs.append(str(row.get("round")))
        try:
            ys.append(get(row))
        except (KeyError, TypeError):
            ys.append(None)
    return xs, ys


def _plot(title: str, rows: list[dict[str, Any]], lines: dict[str, Any], ylabel: str, percent: bool = False) -> str:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6.2, 3.2))
    drawn = False
    for label, get in lines.items():
        xs, ys = _series(rows, get)
        points = [(x, y * (100 if percent else 1)) for x, y in zip(xs, ys) if y is not None]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
            drawn = True
    if not drawn:
        ax.text(0.5, 0.5, "nothing measured yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title)
    ax.set_xlabel("round")
    ax.set_ylabel(ylabel + (" (%)" if percent else ""))
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=8)
    svg = _svg(fig)
    plt.close(fig)
    return f'<div class="plot">{svg}</div>'


def _largest(rows: list[dict[str, Any]], prefix: str) -> str | None:
    ks = sorted({int(k[len(prefix):]) for r in rows for k in (r.get("eval") or {}) if k.startswith(prefix)})
    return f"{prefix}{ks[-1]}" if ks else None


def _metric_table(rows: list[dict[str, Any]]) -> str:
    from rich.console import Console

    console = Console(record=True, width=240, file=io.StringIO())
    console.print(round_table(rows, "", wide=True))
    return f"<pre>{html.escape(console.export_text())}</pre>"


def _examples(run_dir: Path, r: int, n: int = 3) -> str:
    """A few kept samples, and a few the rules dropped, of round r."""
    rd = run_dir / f"round-{r:03d}"
    kept_keys, kept = set(), []
    if (rd / "kept.jsonl").exists():
        for g in itertools.islice(read_jsonl(rd / "kept.jsonl"), 50):
            for s, c in zip(g["samples"], g.get("scores", [])):
                kept_keys.add((g["prompt"]["id"], s["index"]))
                if len(kept) < n:
                    kept.append((g["prompt"], s["text"], c))
    rejected = []
    if (rd / "scored.jsonl").exists():
        for g in itertools.islice(read_jsonl(rd / "scored.jsonl"), 200):
            for s, c in zip(g["samples"], g.get("scores", [])):
                if (g["prompt"]["id"], s["index"]) not in kept_keys and len(rejected) < n:
                    rejected.append((g["prompt"], s["text"], c))
    rows = []
    for verdict, items in (("kept", kept), ("rejected", rejected)):
        for prompt, text, score in items:
            p = prompt.get("text") if prompt.get("text") is not None else json.dumps(prompt.get("messages"))
            value = score.get("value")
            rows.append(f"<tr><td>{verdict}</td><td class=text>{html.escape(str(p))}</td>"
                        f"<td class=text>{html.escape(text)}</td><td>{'error' if value is None else f'{value:.3g}'}"
                        f"</td></tr>")
    return ("<table><tr><th></th><th>prompt</th><th>completion</th><th>score</th></tr>" + "".join(rows) + "</table>"
            if rows else "<p>no samples yet</p>")


def render(run_dir: Path) -> str:
    rows = round_rows(run_dir)
    rounds = [r for r in rows if r.get("round") != "base"]
    k, m = _largest(rows, "pass@"), _largest(rows, "maj@")
    evals = {"greedy pass@1": lambda r: r["eval"]["greedy_pass@1"]}
    if k:
        evals[k] = lambda r, k=k: r["eval"][k]
    if m:
        evals[m] = lambda r, m=m: r["eval"][m]
    plots = [
        _plot("held-out accuracy", rows, evals, "accuracy", percent=True),
        _plot("acceptance and coverage", rounds, {"acceptance": lambda r: r["acceptance_rate"],
                                                  "coverage": lambda r: r["coverage"]}, "share", percent=True),
        _plot("sample entropy", rounds, {"entropy": lambda r: r["entropy_mean"]}, "nats per token"),
        _plot("reward: best vs median sample per prompt", rounds, {"max": lambda r: r["reward_max_mean"],
                                                                   "median": lambda r: r["reward_median_mean"]}, "reward"),
        _plot("tokens spent", rounds, {"tokens generated (thousands)": lambda r: r["tokens_generated"] / 1000,
                                       "samples per prompt, mean": lambda r: r["samples_per_prompt"],
                                       "samples per prompt, max": lambda r: r["samples_per_prompt_max"]}, "count"),
    ]
    if any(r.get("judge_precision_kept") is not None for r in rounds):
        plots.append(_plot("selection score vs the judge", rows, {
            "selection score": lambda r: r["selection_score"], "judge pass@1": lambda r: r["eval"]["greedy_pass@1"],
            "judge precision on kept": lambda r: r["judge_precision_kept"]}, "value"))
    fired = []
    for rd in round_dirs(run_dir):
        path = rd.path / "monitor.json"
        for f in (read_json(path).get("fired", []) if path.exists() else []):
            fired.append(f"<tr class=fired><td>{rd.index}</td><td>{html.escape(f['trigger'])}</td>"
                         f"<td class=text>{html.escape(f['reason'])}</td><td>{html.escape(f['action'])}</td></tr>")
    examples = "".join(f"<h3>round {r['round']}</h3>{_examples(run_dir, int(r['round']))}" for r in rounds)
    name = html.escape(Path(run_dir).name)
    return (f"<!doctype html><html><head><meta charset=utf-8><title>rsft · {name}</title><style>{STYLE}</style>"
            f"</head><body><h1>rsft run {name}</h1><p>{len(rounds)} round(s); the table and plots below come from "
            f"{html.escape(str(run_dir))}.</p>{_metric_table(rows)}<h2>Plots</h2><div class=plots>{''.join(plots)}"
            f"</div><h2>Triggers fired</h2>"
            + (f"<table><tr><th>round</th><th>trigger</th><th>why</th><th>action</th></tr>{''.join(fired)}</table>"
               if fired else "<p>none</p>")
            + f"<h2>Examples</h2>{examples}</body></html>")


def write_report(run_dir: str | Path) -> Path:
    """Write (or rewrite) RUN/report.html; returns its path."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise RsftError(f"{run_dir}: not a run directory (no config.yaml)")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise RsftError("rsft report needs matplotlib (pip install 'rsft[report]')") from None
    out = run_dir / "report.html"
    check_output(out, "rsft report: cannot write")  # before the plots are drawn: a directory in its place...
    try:
        atomic_write_text(out, render(run_dir))
    except DiskFull:
        raise
    except OSError as e:  # a read-only run directory (another user's, a read-only mount)
        raise RsftError(f"rsft report: cannot write {out} ({e.strerror or type(e).__name__}); write access to "
                        f"{run_dir} is needed") from None
    return out
