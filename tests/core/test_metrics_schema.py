"""The metrics row's schema: the writers write only keys it names, with the types it says, and the file on disk
keeps the keys it always had (old runs and their readers rely on them)."""

from __future__ import annotations

import copy
import json
import numbers
import pickle
from types import SimpleNamespace

from rsft.core import metrics_schema as M
from rsft.core.records import Group, Prompt, Sample, Score, Turn
from rsft.core.rundir.files import append_jsonl, atomic_write_json, read_json
from rsft.core.rundir.layout import RoundDir
from rsft.core.rundir.rows import round_rows
from rsft.learning.monitoring.verdict import Fired, Verdict
from rsft.parts.metrics import eval_metrics, round_metrics
from rsft.stages.metrics import metrics_stage

# metrics.json of a single-turn round with eval on, as rsft wrote it before the schema existed
ROUND_FILE_KEYS = {
    "acceptance_rate", "coverage", "decontaminated", "distinct_accepted_per_prompt", "entropy_mean", "eval",
    "finished_by_length", "judge_precision_kept", "judge_rank_correlation", "kept", "prompts", "replayed",
    "reward_max_mean", "reward_mean", "reward_median_mean", "round", "sampler", "samples", "samples_per_prompt",
    "samples_per_prompt_max", "sampling_errors", "scorer_errors", "seconds", "seconds_total", "selection_score",
    "survivors", "tokens_generated", "tokens_per_prompt", "tokens_per_prompt_max", "tokens_per_s", "train_loss",
    "train_rows", "train_steps", "uniform_share",
}


def group(pid, values, entropy=0.5, turns=()):
    samples = tuple(Sample(pid, i, str(v), token_ids=(1, 2), entropy=entropy, turns=turns) for i, v in enumerate(values))
    return Group(Prompt(pid, text="q"), samples, tuple(Score(v, answer=str(v)) for v in values))


def typed(key, value):
    """A value of the key's declared type (a float key also takes an int: JSON writes 1.0 and 1 apart)."""
    kinds = key.kind if isinstance(key.kind, tuple) else (key.kind,)
    return isinstance(value, kinds) or (float in kinds and isinstance(value, numbers.Real))


def test_round_metrics_writes_only_schema_keys_of_their_types():
    agent = (Turn("assistant", "a"), Turn("tool", "x", info={"error": "boom"}), Turn("assistant", "b"))
    m = round_metrics([group("p", [1.0, 0.0]), group("q", [1.0, 1.0], turns=agent)], accept_min=1.0)
    by_name = {str(k): k for k in M.ROUND_KEYS}
    assert set(m) <= set(by_name) and set(M.TRAJECTORY) <= set(m)
    for name, value in m.items():
        assert value is None or typed(by_name[name], value), (name, value)


def test_eval_metrics_writes_only_schema_keys_of_their_types():
    agent = (Turn("assistant", "a"), Turn("assistant", "b"))
    ev = eval_metrics([group("p", [1.0], turns=agent)], [group("p", [1.0, 0.0])], [1, 2], 1.0)
    named = {str(k): k for k in (*M.EVAL_KEYS, M.PASS_AT(1), M.PASS_AT(2), M.MAJ_AT(1), M.MAJ_AT(2))}
    assert set(ev) <= set(named) and {"pass@2", "maj@2", "greedy_turns_mean"} <= set(ev)
    for name, value in ev.items():
        assert typed(named[name], value), (name, value)


def test_the_metrics_stage_writes_the_keys_it_always_wrote(tmp_path):
    rd = RoundDir(tmp_path, 0)
    rd.path.mkdir(parents=True)
    append_jsonl(rd.scored, [group("p", [1.0, 0.0]).to_json(), group("q", [0.0, 0.0]).to_json()])
    atomic_write_json(rd.selection_file, {"survivors": {"passes": 1}, "kept": 1, "rows": 1, "replayed": 0,
                                          "decontaminated": 0, "selection_score": 1.0, "judge_precision_kept": None})
    atomic_write_json(rd.train_file, {"loss": 0.5, "steps": 3})
    atomic_write_json(rd.eval_file, {"greedy_pass@1": 0.5, "pass@2": 0.75, "engine": "fake", "precision": "float32"})
    atomic_write_json(rd.stage_times, {"sample": 2.0, "score": 1.0})
    run = SimpleNamespace(round=lambda r: RoundDir(tmp_path, r), cfg=SimpleNamespace(accept_min=1.0),
                          teacher_samples=lambda r: False)
    metrics_stage(run, 0)
    row = read_json(rd.metrics_file)
    assert set(row) == ROUND_FILE_KEYS
    assert row["tokens_per_s"] == 4.0 and row["train_rows"] == 1 and row["sampler"] == "policy"
    by_name = {str(k): k for k in M.ROUND_KEYS}
    for name, value in row.items():
        assert value is None or typed(by_name[name], value), (name, value)
    assert [M.GREEDY_PASS1.of(r) for r in round_rows(tmp_path)] == [0.5]


def test_a_key_reads_its_section_and_says_none_for_what_a_row_lacks():
    row = {"round": 3, "eval": {"greedy_pass@1": 0.25, "pass@4": 0.5, "pass@16": 0.75}, "kept": 7}
    assert M.GREEDY_PASS1.of(row) == 0.25 and M.KEPT.of(row) == 7 and M.ENTROPY_MEAN.of(row) is None
    assert M.GREEDY_PASS1.of({"round": 0}) is None and M.GREEDY_PASS1.of({"eval": None}) is None
    assert M.PASS_AT.largest([row, {"round": "base"}]) == 16 and M.MAJ_AT.largest([row]) is None
    assert M.PASS_AT(16).of(row) == 0.75


def test_a_row_built_with_keys_is_the_same_dict_and_json_as_one_built_with_strings():
    row = {M.KEPT: 1, M.EVAL: {M.GREEDY_PASS1: 0.5}}
    plain = {"kept": 1, "eval": {"greedy_pass@1": 0.5}}
    assert row == plain and json.dumps(row, sort_keys=True) == json.dumps(plain, sort_keys=True)
    for copied in (copy.deepcopy(row), pickle.loads(pickle.dumps(row))):
        assert copied == plain and all(type(k) is str for k in copied)


def test_a_verdict_reads_and_writes_monitor_json_as_it_was(tmp_path):
    for d in ({"fired": [], "action": None},
              {"fired": [{"trigger": "stalled_gain", "reason": "r", "action": "revert"}], "action": "revert",
               "revert_to": -1},
              {"fired": [{"trigger": "entropy_collapse", "reason": "r", "action": "graduate"}], "action": "graduate",
               "graduate": "runs/x/graduate"}):
        assert Verdict.from_json(d).to_json() == d
    assert Verdict.read(tmp_path / "monitor.json") == Verdict()
    fired = (Fired("a", "r", "warn"), Fired("b", "r", "stop"), Fired("c", "r", "revert"))
    assert Verdict.strongest(fired) == "stop" and Verdict.strongest(()) is None
