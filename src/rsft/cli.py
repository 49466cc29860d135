"""The `rsft` command line: each command is a thin wrapper over a public function.

User mistakes (`RsftError`) print one line to stderr and exit 2, with no
traceback. Heavy libraries are imported inside commands so `--help` is fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from rsft.core.errors import RsftError, disk_full

app = typer.Typer(
    help="Rejection-sampling fine-tuning (RAFT / ReST-EM / iterative best-of-N) for Hugging Face causal LMs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

Overrides = Annotated[Optional[list[str]], typer.Argument(help="Config overrides, key=value (e.g. rounds=3).")]
RoundOpt = Annotated[int, typer.Option("--round", "-r", help="Round index.", min=0)]
ForceOpt = Annotated[bool, typer.Option("--force", help="Run again even if the stage is done.")]


@app.command()
def demo(
    overrides: Overrides = None,
    output_dir: Annotated[Optional[Path], typer.Option(help="Parent of the run directory.")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Delete an earlier demo run and start over.")] = False,
    control: Annotated[Optional[str], typer.Option(help="random: also run the matched random control and "
                                                        "compare.")] = None,
) -> None:
    """Watch a 1M-parameter model learn 3-digit addition by rejection sampling, on a CPU, in minutes."""
    from rsft.loop.demo import demo as run_demo

    if control not in (None, "random"):
        raise RsftError(f"--control: expected 'random', got {control!r}")
    run_dir = run_demo(overrides or [], output_dir, fresh=fresh, control=control)
    typer.echo(f"run directory: {run_dir}")


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="YAML config file.")],
    overrides: Overrides = None,
    use_ray: Annotated[bool, typer.Option("--ray", help="Sample and score on Ray (ray.enabled=true; a local "
                                                        "cluster unless the config sets ray.address); needs rsft[ray].")] = False,
    control: Annotated[Optional[str], typer.Option(help="random: also run the matched random control (same "
                                                        "prompts and row counts, samples kept at random) and "
                                                        "compare the two.")] = None,
) -> None:
    """Run (or resume) rejection-sampling fine-tuning from a config."""
    from rsft.loop.rounds import run_from_file

    if control not in (None, "random"):
        raise RsftError(f"--control: expected 'random', got {control!r}")
    given = (["ray.enabled=true"] if use_ray else []) + (overrides or [])
    if control is None:
        typer.echo(f"run directory: {run_from_file(config, given)}")
        return
    from rsft.core.config import load_config
    from rsft.loop.control import run_with_control

    main_dir, control_dir, _ = run_with_control(load_config(config, given), control)
    typer.echo(f"run directory: {main_dir}\ncontrol run directory: {control_dir}")


@app.command()
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Two or more run directories; each later one is set against "
                                                    "the first.")],
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples.", min=100)] = 10_000,
    confidence: Annotated[float, typer.Option(help="Interval coverage, e.g. 0.95.")] = 0.95,
    seed: Annotated[int, typer.Option(help="Seed of the resampling.")] = 0,
    report: Annotated[Optional[Path], typer.Option(help="Also write the comparison as an HTML page with its "
                                                         "plot (needs rsft[report]).")] = None,
) -> None:
    """Held-out greedy pass@1 of runs side by side, with a paired bootstrap interval on each difference."""
    from rsft.learning.monitoring.compare import compare as compare_runs

    comparison = compare_runs(runs, resamples, confidence, seed)
    for line in comparison.lines():
        typer.echo(line)
    if report is not None:
        from rsft.learning.monitoring.report import write_compare_page

        typer.echo(f"wrote {write_compare_page(comparison, report)}")


def _stage(stage: str, run_dir: Path, round_index: int, force: bool) -> None:
    from rsft.loop.rounds import run_round_stage

    ran = run_round_stage(run_dir, round_index, stage, force)
    typer.echo(f"round {round_index} {stage}: {'done' if ran else 'already done (use --force to redo)'}")


@app.command()
def sample(run_dir: Path, round_index: RoundOpt = 0, force: ForceOpt = False) -> None:
    """Sample K completions per train prompt for one round of a run directory."""
    _stage("sample", run_dir, round_index, force)


@app.command()
def score(
    target: Annotated[Path, typer.Argument(help="A run directory, or a JSONL/Parquet file of prompts and completions.")],
    round_index: RoundOpt = 0,
    force: ForceOpt = False,
    scorer: Annotated[Optional[str], typer.Option(help="For a file: scorer name, 'module:function', or a "
                                                         "YAML/JSON spec such as '{name: numeric}'.")] = None,
    output: Annotated[Optional[Path], typer.Option(help="For a file: where to write (default FILE.scored.jsonl).")] = None,
    prompt_column: Annotated[str, typer.Option(help="For a file: the prompt column.")] = "prompt",
    completion_column: Annotated[str, typer.Option(help="For a file: the completion column.")] = "completion",
    min_score: Annotated[Optional[float], typer.Option("--min", help="For a file: keep only rows scoring at least this.")] = None,
    timeout: Annotated[Optional[float], typer.Option(help="For a file: seconds per sample before it is an error.")] = None,
) -> None:
    """Score a round's samples (run directory), or score/filter a dataset file on its own."""
    if target.is_dir():
        _stage("score", target, round_index, force)
        return
    from rsft.loop.commands.score_file import score_file

    if scorer is None:
        raise RsftError("rsft score FILE needs --scorer (e.g. --scorer numeric or --scorer my_module:my_reward)")
    result = score_file(target, _scorer_spec(scorer), output, prompt_column, completion_column, min_score, timeout)
    mean = "-" if result.mean is None else f"{result.mean:.4f}"
    typer.echo(f"scored {result.rows} rows: mean {mean}, {result.errors} scorer errors; "
               f"wrote {result.written} rows to {result.output}")


@app.command()
def rationalize(run_dir: Path, round_index: RoundOpt = 0, force: ForceOpt = False) -> None:
    """Sample a round's unsolved prompts again with the gold answer as a hint (selection.rationalize, STaR)."""
    _stage("rationalize", run_dir, round_index, force)


@app.command()
def select(run_dir: Path, round_index: RoundOpt = 0, force: ForceOpt = False) -> None:
    """Apply the selection rules to a round's scored samples and write selected.jsonl."""
    _stage("select", run_dir, round_index, force)


@app.command()
def train(run_dir: Path, round_index: RoundOpt = 0, force: ForceOpt = False) -> None:
    """Fine-tune on a round's selected samples."""
    _stage("train", run_dir, round_index, force)


@app.command("eval")
def eval_cmd(
    target: Annotated[str, typer.Argument(help="A model directory (or hub id), or a run directory.")],
    config: Annotated[Optional[Path], typer.Option(help="Config naming the task, for a bare model.")] = None,
    overrides: Overrides = None,
    round_index: Annotated[Optional[int], typer.Option("--round", "-r", help="Round of a run (default: newest).",
                                                       min=0)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Evaluate a model on held-out prompts: greedy pass@1, pass@k, maj@k."""
    from rsft.loop.commands.evaluate import evaluate_model

    metrics = evaluate_model(target, config, overrides or [], round_index)
    if as_json:
        typer.echo(json.dumps(metrics, indent=2, sort_keys=True))
    else:
        for k, v in sorted(metrics.items()):
            typer.echo(f"{k:24s} {v:.4f}" if isinstance(v, float) else f"{k:24s} {v}")


@app.command()
def metrics(
    run_dir: Path,
    as_json: Annotated[bool, typer.Option("--json", help="Print the per-round metrics and eval as JSON.")] = False,
    wide: Annotated[bool, typer.Option("--wide", help="Every column, not only the ones that fit 80 columns.")] = False,
) -> None:
    """Per-round metrics of a run, as a table (compact, or --wide) or JSON."""
    from rsft.core.rundir.layout import RunDir
    from rsft.core.rundir.rows import round_rows
    from rsft.loop.rounds import print_table

    RunDir.existing(run_dir)
    if as_json:
        typer.echo(json.dumps(round_rows(run_dir), indent=2, sort_keys=True))
    else:
        print_table(run_dir, wide=wide)


@app.command()
def report(run_dir: Path) -> None:
    """Write RUN/report.html: plots and tables of every round, self-contained (no network needed)."""
    from rsft.learning.monitoring.report import write_report

    typer.echo(f"wrote {write_report(run_dir)}")


@app.command()
def graduate(
    run_dir: Path,
    max_steps: Annotated[Optional[int], typer.Option(help="GRPO steps (default: graduate/grpo_config.json's).",
                                                     min=1)] = None,
) -> None:
    """Run the GRPO hand-off a monitor trigger prepared in RUN/graduate/, with TRL's GRPOTrainer."""
    from rsft.loop.commands.graduate import graduate as run_graduate

    typer.echo(f"GRPO model: {run_graduate(run_dir, max_steps)}")


@app.command()
def convert(
    gguf_path: Annotated[Path, typer.Argument(help="A .gguf file (or a directory holding one).")],
    dtype: Annotated[str, typer.Option(help="float32 (the dequantized weights exactly), bfloat16 or float16.")]
    = "float32",
    output: Annotated[Optional[Path], typer.Option(help="Also copy the checkpoint here (default: the cache).")]
    = None,
) -> None:
    """Convert a GGUF file into an HF checkpoint with a corrected tokenizer (cached by the file's sha256); a
    config's model.path may name the .gguf directly, and rsft does this on its own."""
    from rsft.inputs.gguf import convert_gguf, gguf_file

    source = gguf_file(gguf_path)
    if source is None:
        raise RsftError(f"{gguf_path}: not a GGUF file or a directory holding one")
    out = convert_gguf(source, dtype)
    if output is not None:
        import shutil

        from rsft.core.rundir.files import check_output

        check_output(output, "--output", is_dir=True)
        shutil.copytree(out, output, dirs_exist_ok=True)
        out = output
    typer.echo(str(out))


export_app = typer.Typer(help="Export datasets from a run.", no_args_is_help=True)
reward_app = typer.Typer(help="Preference / reward models.", no_args_is_help=True)
app.add_typer(export_app, name="export")
app.add_typer(reward_app, name="reward-model")


@export_app.command("pairs")
def export_pairs_cmd(
    run_dir: Path,
    round_index: Annotated[Optional[int], typer.Option("--round", "-r", help="One round (default: every round).",
                                                       min=0)] = None,
    output: Annotated[Optional[Path], typer.Option(help="Output JSONL (default: RUN/exports/pairs-round-NNN.jsonl, or pairs-all-rounds.jsonl).")] = None,
    all_pairs: Annotated[bool, typer.Option("--all-pairs", help="Every accepted x rejected pair, not just best vs worst.")] = False,
    threshold: Annotated[Optional[float], typer.Option(help="With --all-pairs: the score that makes a sample "
                                                            "accepted (default 1.0).")] = None,
    cap: Annotated[int, typer.Option(help="At most this many pairs per prompt.", min=1)] = 16,
    tau: Annotated[Optional[float], typer.Option(help="Write soft labels p = sigmoid(gap / tau) in place of the "
                                                      "margin (tau > 0).", min=0.0)] = None,
) -> None:
    """Chosen/rejected pairs (TRL DPO format, with reward margins) from a run's scored samples."""
    from rsft.loop.commands.export import export_pairs

    if threshold is not None and not all_pairs:  # best vs worst takes no threshold: it would be ignored
        raise RsftError(f"--threshold {threshold:g} applies with --all-pairs (it decides which samples count as "
                        "accepted); the default pairs are each prompt's best against its worst, whatever the scores")
    path, count = export_pairs(run_dir, round_index, output, all_pairs, 1.0 if threshold is None else threshold, cap,
                               tau)
    typer.echo(f"wrote {count} pairs to {path}")


@export_app.command("sft")
def export_sft_cmd(
    run_dir: Path,
    round_index: Annotated[Optional[int], typer.Option("--round", "-r", help="One round (default: every round).",
                                                       min=0)] = None,
    output: Annotated[Optional[Path], typer.Option(help="Output JSONL (default: RUN/exports/sft-round-NNN.jsonl, or sft-all-rounds.jsonl).")] = None,
) -> None:
    """The rows the rounds trained on (TRL prompt/completion; agent trajectories as conversations)."""
    from rsft.loop.commands.export import export_sft

    path, count = export_sft(run_dir, round_index, output)
    typer.echo(f"wrote {count} rows to {path}")


@reward_app.command("train")
def reward_model_train(
    pairs: Annotated[Path, typer.Argument(help="Pairs JSONL: {prompt, chosen, rejected, p?, margin?}.")],
    init: Annotated[str, typer.Option(help="Causal LM or classifier directory to start from.")],
    output: Annotated[Path, typer.Option(help="Where to write the reward model.")],
    eval_pairs: Annotated[Optional[Path], typer.Option(help="Held-out pairs (default: a split of PAIRS).")] = None,
    eval_fraction: Annotated[float, typer.Option(help="Held-out fraction, split by prompt.", min=0.0, max=1.0)] = 0.1,
    learning_rate: Annotated[float, typer.Option(help="Learning rate.", min=0.0)] = 1e-4,
    epochs: Annotated[float, typer.Option(help="Epochs (ignored when --max-steps > 0).", min=0.0)] = 1.0,
    max_steps: Annotated[int, typer.Option(help="Optimizer steps; -1 uses epochs.", min=-1)] = -1,
    batch_size: Annotated[int, typer.Option(help="Pairs per batch.", min=1)] = 16,
    max_length: Annotated[int, typer.Option(help="Truncate each text to this many tokens.", min=1)] = 512,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    use_margin: Annotated[Optional[bool], typer.Option(
        "--use-margin/--ignore-margin", help="Pairs with both a soft label p and a margin: fit sigma(delta - margin) "
        "= p (--use-margin), or drop the margins (--ignore-margin). Default: refuse such pairs.")] = None,
    processes: Annotated[int, typer.Option(help="Training processes (DDP; --batch-size is per process).",
                                           min=1)] = 1,
    launcher: Annotated[str, typer.Option(help="What starts --processes > 1: torchrun, accelerate, or "
                                               "module:function.")] = "torchrun",
) -> None:
    """Train a scalar reward model with the soft-label Bradley-Terry loss; report accuracy and calibration."""
    from rsft.learning.training.preference import RewardModelTraining, train_reward_model

    cfg = RewardModelTraining(init=init, learning_rate=learning_rate, epochs=epochs, max_steps=max_steps,
                              batch_size=batch_size, max_length=max_length, eval_fraction=eval_fraction, seed=seed,
                              use_margin=use_margin, processes=processes, launcher=launcher)
    report = train_reward_model(pairs, output, cfg, eval_pairs)
    ev = report["eval"]
    if ev:
        def pct(x: float | None) -> str:
            return "n/a (every pair has p = 0.5)" if x is None else f"{x:.3f}"

        typer.echo(f"held-out pairs {ev['pairs']}: accuracy {pct(ev['accuracy'])} "
                   f"(before {pct(report['eval_before']['accuracy'])}), mean P(chosen) {ev['mean_predicted']:.3f} "
                   f"vs label {ev['mean_label']:.3f}, ECE {ev['ece']:.3f}")
        for row in ev["calibration"]:
            typer.echo(f"  P in {row['bin']}: {row['pairs']:5d} pairs, predicted {row['mean_predicted']:.3f}, "
                       f"labelled {row['mean_label']:.3f}")
    typer.echo(f"reward model: {output} (report.json inside)")


@app.command("best-of-n")
def best_of_n_cmd(
    model: Annotated[str, typer.Option(help="Model directory or hub id.")],
    scorer: Annotated[str, typer.Option(help="Scorer name, 'module:function', or a YAML spec.")],
    n: Annotated[int, typer.Option(help="Candidates per prompt.", min=1)] = 16,
    prompt: Annotated[Optional[list[str]], typer.Option(help="A prompt (repeatable).")] = None,
    field: Annotated[Optional[list[str]], typer.Option(
        help="A column the scorer needs, for --prompt: KEY=VALUE (repeatable), e.g. --field answer=579.")] = None,
    input_path: Annotated[Optional[Path], typer.Option("--input", help="JSONL/Parquet of prompts (other columns "
                                                                      "reach the scorer).")] = None,
    prompt_column: Annotated[str, typer.Option(help="Prompt column of --input.")] = "prompt",
    output: Annotated[Optional[Path], typer.Option(help="Write JSONL here instead of stdout.")] = None,
    all_candidates: Annotated[bool, typer.Option("--all", help="Include every candidate with its score.")] = False,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (0: greedy).", min=0.0)] = 1.0,
    top_p: Annotated[float, typer.Option(help="Top-p, in (0, 1].", min=0.0, max=1.0)] = 1.0,
    max_new_tokens: Annotated[int, typer.Option(help="Longest completion.", min=1)] = 256,
    engine: Annotated[str, typer.Option(help="Sampling engine (auto, transformers, ctranslate2).")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
) -> None:
    """Inference-time best-of-N: the best of N samples per prompt under a scorer, as JSONL."""
    from rsft.core.rundir.files import atomic_write_jsonl, check_output
    from rsft.loop.commands.best_of_n import best_of_n

    if (prompt is None) == (input_path is None):
        raise RsftError("best-of-n needs exactly one of --prompt TEXT or --input FILE")
    if output:
        check_output(output, "--output")
    if field and input_path is not None:
        raise RsftError("--field is for --prompt; an --input file brings its own columns")
    results = best_of_n(model, _scorer_spec(scorer), prompts=prompt, input_path=input_path, n=n,
                        temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, engine=engine,
                        return_all=all_candidates, seed=seed, prompt_column=prompt_column,
                        fields=_fields(field or []))
    rows = [r.to_json() for r in results]
    if output:
        atomic_write_jsonl(output, rows)
        typer.echo(f"wrote {len(rows)} results to {output}")
    else:
        for row in rows:
            typer.echo(json.dumps(row, ensure_ascii=False))


def _fields(pairs: list[str]) -> dict[str, object]:
    from rsft.core.config import parse_value

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise RsftError(f"--field {pair!r}: expected KEY=VALUE, e.g. --field answer=579")
        out[key.strip()] = parse_value(value)
    return out


def _scorer_spec(text: str) -> object:
    """--scorer: a name, 'module:function', or an inline YAML/JSON spec such as '{name: numeric}'."""
    from rsft.core.config import parse_value

    if not text.lstrip().startswith("{"):
        return text
    spec = parse_value(text)
    if not isinstance(spec, dict):
        raise RsftError(f"--scorer {text!r}: not a valid inline spec (expected YAML such as "
                        "'{name: numeric, kwargs: {field: answer}}')")
    return spec


def _is(e: BaseException, name: str) -> bool:
    """typer vendors click (typer._click) in some versions and not in others: match the class by name."""
    return any(c.__name__ == name for c in type(e).__mro__)


def main() -> None:
    """Every failure is one line on stderr with a non-zero exit: user mistakes (RsftError), and command-line
    usage errors (a bad option value, an unknown command), which click would print as a multi-line box."""
    try:
        app(standalone_mode=False)
    except RsftError as e:
        print(f"rsft: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("rsft: interrupted; run the same command again to resume", file=sys.stderr)
        sys.exit(130)
    except Exception as e:
        full = disk_full(e)
        if full is not None:
            print(f"rsft: error: {full}", file=sys.stderr)
            sys.exit(28)
        if _is(e, "Exit"):
            sys.exit(getattr(e, "exit_code", 0))
        if _is(e, "Abort"):
            print("rsft: aborted", file=sys.stderr)
            sys.exit(130)
        if _is(e, "NoArgsIsHelpError"):  # the help has been shown
            sys.exit(2)
        if not _is(e, "ClickException"):
            raise
        names, ctx = [], getattr(e, "ctx", None)
        while ctx is not None and ctx.parent is not None:  # the sub-command names, without the program's
            names.insert(0, ctx.info_name)
            ctx = ctx.parent
        hint = f" (see {' '.join(['rsft', *names])} --help)" if getattr(e, "ctx", None) is not None else ""
        print(f"rsft: error: {e.format_message()}{hint}", file=sys.stderr)
        sys.exit(getattr(e, "exit_code", 2) or 2)


if __name__ == "__main__":
    main()
