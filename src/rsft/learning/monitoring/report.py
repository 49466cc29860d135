"""`rsft report RUN`: one self-contained HTML page about a run, rewritten after every round.

Plots are drawn with matplotlib and embedded as inline SVG, so the page needs no network and no
script: held-out pass@1 / pass@k / maj@k, acceptance and coverage, sample entropy, reward max against
median, tokens spent and samples per prompt, the selection score against the judge (when round samples
are judged), then the triggers that fired and a few kept and rejected samples of each round. Every
number comes from the run directory: each round's metrics, monitor verdict, kept and scored samples
(`rsft.core.rundir.layout.RoundDir`), with the metrics' keys as `rsft.core.metrics_schema` names them.
"""

from __future__ import annotations

import html
import io
import itertools
import json
from pathlib import Path
from typing import Any

from rsft.core import metrics_schema as M
from rsft.core.errors import DiskFull, RsftError
from rsft.core.rundir.files import atomic_write_text, check_output, read_jsonl
from rsft.core.rundir.layout import RoundDir, RunDir
from rsft.core.rundir.rows import round_rows
from rsft.learning.monitoring.compare import Comparison, compare
from rsft.learning.monitoring.verdict import Verdict
from rsft.parts.metrics_table import round_table

STYLE = """body{font-family:sans-serif;margin:24px;color:#222;max-width:1100px}h1{font-size:22px}
h2{font-size:17px;margin-top:28px}.plots{display:flex;flex-wrap:wrap;gap:12px}.plot{width:520px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}
td.text{text-align:left;font-family:monospace;white-space:pre-wrap;max-width:420px}.fired{color:#a40}"""


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prologue and doctype: the page embeds the element


def _series(rows: list[M.Row], get: Any) -> tuple[list[str], list[float | None]]:
    """The x (round) and y values of one line; a value `get` cannot compute (a row from before the metric
    existed) is None, a gap in the line."""
    xs, ys = [], []
    for row in rows:
        xs.append(str(M.ROUND.of(row)))
        try:
            ys.append(get(row))
        except (KeyError, TypeError):
            ys.append(None)
    return xs, ys


def _plot(title: str, rows: list[M.Row], lines: dict[str, Any], ylabel: str, percent: bool = False) -> str:
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


def _metric_table(rows: list[M.Row]) -> str:
    from rich.console import Console

    console = Console(record=True, width=240, file=io.StringIO())
    console.print(round_table(rows, "", wide=True))
    return f"<pre>{html.escape(console.export_text())}</pre>"


def _examples(run_dir: Path, r: int, n: int = 3) -> str:
    """A few kept samples, and a few the rules dropped, of round r."""
    rd = RoundDir(run_dir, r)
    kept_keys, kept = set(), []
    if rd.kept.exists():
        for g in itertools.islice(read_jsonl(rd.kept), 50):
            for s, c in zip(g["samples"], g.get("scores", [])):
                kept_keys.add((g["prompt"]["id"], s["index"]))
                if len(kept) < n:
                    kept.append((g["prompt"], s["text"], c))
    rejected = []
    if rd.scored.exists():
        for g in itertools.islice(read_jsonl(rd.scored), 200):
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


def compare_plot(comparison: Comparison) -> str:
    """The comparison as an inline SVG: each run's curve, and each later run's difference with its interval."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.4))
    xs = [str(rc.round) for rc in comparison.rounds]
    for i, run in enumerate(comparison.runs):
        points = [(x, 100 * rc.pass1[i]) for x, rc in zip(xs, comparison.rounds, strict=True) if rc.pass1[i] is not None]
        left.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=run.name)
    left.set(title="held-out greedy pass@1", xlabel="round", ylabel="pass@1 (%)")
    for j, run in enumerate(comparison.runs[1:]):
        pts = [(x, rc.against_first[j]) for x, rc in zip(xs, comparison.rounds, strict=True)
               if rc.against_first[j] is not None]
        if pts:
            mid = [100 * iv.diff for _, iv in pts]
            err = [[100 * (iv.diff - iv.low) for _, iv in pts], [100 * (iv.high - iv.diff) for _, iv in pts]]
            right.errorbar([x for x, _ in pts], mid, yerr=err, marker="o", capsize=4, label=run.name)
    right.axhline(0, color="#888", lw=1)
    right.set(title=f"difference from {comparison.runs[0].name}, {100 * comparison.confidence:.0f}% paired "
              "bootstrap interval", xlabel="round", ylabel="points")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    out = _svg(fig)
    plt.close(fig)
    return out


def _control_section(run_dir: Path) -> str:
    """The run against the matched random control `rsft run --control` ran beside it (RUN/control.json)."""
    layout = RunDir(run_dir)
    if not layout.control.exists():
        return ""
    control = Path(json.loads(layout.control.read_text())["run"])
    try:
        comparison = compare([control, run_dir])  # the run against its control
    except RsftError as e:
        return f"<h2>Against its matched random control</h2><p>{html.escape(str(e))}</p>"
    lines = "".join(f"<li>{html.escape(line)}</li>" for line in comparison.lines())
    return (f"<h2>Against its matched random control</h2><p>{html.escape(str(control))}</p>"
            f"<div>{compare_plot(comparison)}</div><ul>{lines}</ul>")


def render(run_dir: Path) -> str:
    rows = round_rows(run_dir)
    rounds = M.rounds_only(rows)
    evals = {"greedy pass@1": M.GREEDY_PASS1.of}
    for family in (M.PASS_AT, M.MAJ_AT):
        k = family.largest(rows)
        if k is not None:
            evals[family(k)] = family(k).of
    tokens = M.TOKENS_GENERATED.of
    plots = [
        _plot("held-out accuracy", rows, evals, "accuracy", percent=True),
        _plot("acceptance and coverage", rounds, {"acceptance": M.ACCEPTANCE_RATE.of,
                                                  "coverage": M.COVERAGE.of}, "share", percent=True),
        _plot("sample entropy", rounds, {"entropy": M.ENTROPY_MEAN.of}, "nats per token"),
        _plot("reward: best vs median sample per prompt", rounds, {"max": M.REWARD_MAX_MEAN.of,
                                                                   "median": M.REWARD_MEDIAN_MEAN.of}, "reward"),
        _plot("tokens spent", rounds, {"tokens generated (thousands)": lambda r: tokens(r) / 1000,
                                       "samples per prompt, mean": M.SAMPLES_PER_PROMPT.of,
                                       "samples per prompt, max": M.SAMPLES_PER_PROMPT_MAX.of}, "count"),
    ]
    if any(M.JUDGE_PRECISION_KEPT.of(r) is not None for r in rounds):
        plots.append(_plot("selection score vs the judge", rows, {
            "selection score": M.SELECTION_SCORE.of, "judge pass@1": M.GREEDY_PASS1.of,
            "judge precision on kept": M.JUDGE_PRECISION_KEPT.of}, "value"))
    fired = []
    for rd in RunDir(run_dir).rounds():
        for f in Verdict.read(rd.monitor_file).fired:
            fired.append(f"<tr class=fired><td>{rd.index}</td><td>{html.escape(f.trigger)}</td>"
                         f"<td class=text>{html.escape(f.reason)}</td><td>{html.escape(f.action)}</td></tr>")
    examples = "".join(f"<h3>round {M.ROUND.of(r)}</h3>{_examples(run_dir, int(M.ROUND.of(r)))}" for r in rounds)
    name = html.escape(Path(run_dir).name)
    return (f"<!doctype html><html><head><meta charset=utf-8><title>rsft · {name}</title><style>{STYLE}</style>"
            f"</head><body><h1>rsft run {name}</h1><p>{len(rounds)} round(s); the table and plots below come from "
            f"{html.escape(str(run_dir))}.</p>{_metric_table(rows)}<h2>Plots</h2><div class=plots>{''.join(plots)}"
            f"</div><h2>Triggers fired</h2>"
            + (f"<table><tr><th>round</th><th>trigger</th><th>why</th><th>action</th></tr>{''.join(fired)}</table>"
               if fired else "<p>none</p>")
            + f"{_control_section(run_dir)}<h2>Examples</h2>{examples}</body></html>")


def write_compare_page(comparison: Comparison, out: Path) -> Path:
    """The comparison as one self-contained HTML page (`rsft compare --report`)."""
    check_output(out, "rsft compare: cannot write")
    lines = "".join(f"<li>{html.escape(line)}</li>" for line in comparison.lines())
    names = " · ".join(html.escape(str(r)) for r in comparison.runs)
    atomic_write_text(out, f"<!doctype html><html><head><meta charset=utf-8><title>rsft compare</title>"
                           f"<style>{STYLE}</style></head><body><h1>rsft compare</h1><p>{names}</p>"
                           f"<div>{compare_plot(comparison)}</div><ul>{lines}</ul></body></html>")
    return out


def write_report(run_dir: str | Path) -> Path:
    """Write (or rewrite) RUN/report.html; returns its path."""
    layout = RunDir.existing(run_dir)
    run_dir = layout.path
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise RsftError("rsft report needs matplotlib (pip install 'rsft[report]')") from None
    out = layout.report
    check_output(out, "rsft report: cannot write")  # before the plots are drawn: a directory in its place...
    try:
        atomic_write_text(out, render(run_dir))
    except DiskFull:
        raise
    except OSError as e:  # a read-only run directory (another user's, a read-only mount)
        raise RsftError(f"rsft report: cannot write {out} ({e.strerror or type(e).__name__}); write access to "
                        f"{run_dir} is needed") from None
    return out
