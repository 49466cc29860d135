"""`rsft export pairs`: preference pairs from a run's scored samples, in TRL's DPO format;
`rsft export sft`: what the rounds trained on, as a TRL SFT dataset.

Per prompt, the default pair is its best sample (chosen) against its worst
(rejected); groups whose samples all scored the same give no pair. With
`all_pairs`, every accepted × rejected combination (accepted: score at least
`threshold`) is emitted, best-first, up to `cap` per prompt. Each pair carries
how much better `chosen` is once: its reward `margin`, or with `tau` the soft
label p = σ(margin / τ) in its place (the gap kept as `reward_gap`), which the
reward-model trainer honours. Pairs whose two texts normalize to the same
string, and repeats across rounds, are dropped. The pairs of one group are
`rsft.stages.select_rows.decontaminated_pairs`, the same the select stage
writes: samples that overlap the run's held-out prompts (the stage's
decontamination, `selection.decontaminate`) are in no pair.

Rows are {prompt, chosen, rejected}: strings for text prompts, message lists
for chat prompts (TRL's conversational preference format), plus margin (or p and
reward_gap) and prompt_id, which DPOTrainer ignores.
"""

from __future__ import annotations

from pathlib import Path

from rsft.core.errors import RsftError
from rsft.core.progress import notice
from rsft.core.records import Group
from rsft.core.rundir.files import atomic_write_jsonl, check_output, read_jsonl
from rsft.core.rundir.layout import RunDir, round_dirs
from rsft.parts.selection import normalize
from rsft.stages.run import Run
from rsft.stages.select import held_out
from rsft.stages.select_rows import decontaminated_pairs, has_tool_output


def export_pairs(run_dir: str | Path, round_index: int | None = None, output: str | Path | None = None,
                 all_pairs: bool = False, threshold: float = 1.0, cap: int = 16,
                 tau: float | None = None) -> tuple[Path, int]:
    """Write the pairs of one round (or of every scored round) of a run; returns (path, count)."""
    run_dir = Path(run_dir)
    if tau is not None and not tau > 0:
        raise RsftError(f"tau must be > 0 (p = sigmoid(gap / tau)), got {tau}")
    if cap < 1:
        raise RsftError(f"cap must be at least 1, got {cap}")
    rounds = _rounds_with(run_dir, round_index, output, "score")
    if not rounds:
        which = f"round {round_index}" if round_index is not None else "any round"
        raise RsftError(f"{run_dir}: no scored samples for {which}; run the score stage first")
    contamination = held_out(Run.open(run_dir))
    rows, seen, decontaminated = [], set(), 0
    for rd in rounds:
        for d in read_jsonl(rd.scored):
            group = Group.from_json(d)
            if has_tool_output(group):
                raise RsftError(f"{rd.scored}: these samples are agent trajectories; a DPO pair of them would put the "
                                "environment's tool output in TRL DPOTrainer's loss (it has no assistant-only mask); "
                                "export the SFT rows instead (rsft export sft) and train them with assistant_only_loss")
            pairs, dropped = decontaminated_pairs(group, contamination, all_pairs, threshold, cap, tau)
            decontaminated += dropped
            for row in pairs:
                key = (row["prompt_id"], normalize(str(row["chosen"])), normalize(str(row["rejected"])))
                if key not in seen:
                    seen.add(key)
                    rows.append(row)
    left_out = (f"{decontaminated} samples overlap the held-out prompts (selection.decontaminate) and are in no "
                "pair") if decontaminated else ""
    if not rows:
        why = _why_no_pairs(rounds, all_pairs, threshold)
        if left_out:  # a threshold no sample reached is said too; "scored the same" would then be a guess
            why = left_out if why.startswith("every group") else f"{why}; {left_out}"
        raise RsftError(f"{run_dir}: no pairs: {why}; nothing was written")
    if left_out:
        notice(left_out)
    if output is None:
        # never the round's own pairs.jsonl: that file belongs to the select stage
        name = f"pairs-round-{round_index:03d}.jsonl" if round_index is not None else "pairs-all-rounds.jsonl"
        output = RunDir(run_dir).exports / name
    atomic_write_jsonl(Path(output), rows)
    return Path(output), len(rows)


def export_sft(run_dir: str | Path, round_index: int | None = None, output: str | Path | None = None) -> tuple[Path, int]:
    """Write the SFT rows one round (or every round) selected, as TRL prompt/completion rows and nothing else,
    so SFTTrainer loads the file unchanged (agent trajectories are conversational: train them with
    `assistant_only_loss=True`); returns (path, count)."""
    run_dir = Path(run_dir)
    rounds = _rounds_with(run_dir, round_index, output, "select")
    # one round: all it trained on, replayed rows included; every round: each row once, in its own round
    rows = [{"prompt": d["prompt"], "completion": d["completion"]} for rd in rounds for d in read_jsonl(rd.selected)
            if round_index is not None or "round" not in d]
    if not rows:
        which = f"round {round_index}" if round_index is not None else "any round"
        raise RsftError(f"{run_dir}: nothing selected in {which}; run the select stage first")
    if output is None:
        name = f"sft-round-{round_index:03d}.jsonl" if round_index is not None else "sft-all-rounds.jsonl"
        output = RunDir(run_dir).exports / name
    atomic_write_jsonl(Path(output), rows)
    return Path(output), len(rows)


def _rounds_with(run_dir: Path, round_index: int | None, output: str | Path | None, stage: str) -> list:
    """The rounds of a run whose `stage` is done (one, or all), after checking the arguments."""
    if round_index is not None and round_index < 0:
        raise RsftError(f"round must be 0 or more, got {round_index}")
    RunDir.existing(run_dir)
    if output is not None:
        check_output(Path(output), "--output")
    rounds = [rd for rd in round_dirs(run_dir) if rd.done(stage)]
    return [rd for rd in rounds if round_index is None or rd.index == round_index]


def _why_no_pairs(rounds: list, all_pairs: bool, threshold: float) -> str:
    """What kept every group from giving a pair: a threshold no sample (or every sample) reached, or equal scores."""
    values = [s.value for rd in rounds for d in read_jsonl(rd.scored) for s in Group.from_json(d).scores if s.ok]
    if len(values) < 2:
        return f"only {len(values)} sample(s) scored without an error"
    if all_pairs and max(values) < threshold:
        return (f"no sample reached --threshold {threshold:g} (the best scored {max(values):g}), so none counts "
                "as accepted; lower --threshold")
    if all_pairs and min(values) >= threshold:
        return (f"every sample reached --threshold {threshold:g} (the worst scored {min(values):g}), so none "
                "counts as rejected; raise --threshold")
    return "every group's samples scored the same (or their texts are the same once normalized)"
