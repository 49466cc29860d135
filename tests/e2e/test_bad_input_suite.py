"""A corpus of bad inputs across every command and config section.

Each case must: exit non-zero, print exactly one line on stderr (no traceback), name the offending key,
file, line or path, and leave no run directory and no new done-marker behind. The CLI runs in-process
through `rsft.cli.main` (the same code path as the console script) so the corpus stays fast;
`test_bad_input.py` runs a few of the same mistakes through a real subprocess.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import invoke

ROWS = [{"prompt": f"{a}+{b}=", "answer": a + b} for a, b in [(1, 2), (3, 4), (5, 6), (7, 1)]]


@dataclass
class Case:
    id: str
    args: list[str]
    needles: list[str]
    files: dict[str, str | bytes] | None = None  # extra files to write first, relative to the workspace
    cwd_module: str | None = None  # a user module written into the workspace


def jsonl(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, model_dir):
    """A good config and data; each case breaks one thing."""
    ws = tmp_path_factory.mktemp("bad")
    (ws / "train.jsonl").write_text(jsonl(ROWS))
    (ws / "eval.jsonl").write_text(jsonl(ROWS[:2]))
    (ws / "good.yaml").write_text(
        f"name: bad\noutput_dir: {ws / 'runs'}\nmodel: {{path: {model_dir}}}\n"
        f"task: {{name: dataset, train: {ws / 'train.jsonl'}, eval: {ws / 'eval.jsonl'}}}\n"
        "scorer: addition\nsampling: {n: 2, max_new_tokens: 8, engine: transformers}\n"
        "train: {max_steps: 1}\neval: {n: 2, k: [1, 2]}\n")
    return ws


@pytest.fixture(scope="module")
def finished(workspace, model_dir):
    """A finished 3-round run (the tiny model, real sampling and training), for the commands that work on a run."""
    rc, _, err = invoke(["run", str(workspace / "good.yaml"), "name=done",
                         "selection.rules=[{rule: passes, min: 0.0}]"], workspace)
    assert rc == 0, err
    return workspace / "runs" / "done"


G = "good.yaml"
CONFIG_CASES = [
    # the config file itself
    Case("config-missing", ["run", "nope.yaml"], ["nope.yaml", "config file not found"]),
    Case("config-not-utf8", ["run", "c.yaml"], ["c.yaml:2", "not UTF-8"], {"c.yaml": b"rounds: 1\nname: \xff\xfe\n"}),
    Case("config-invalid-yaml", ["run", "c.yaml"], ["c.yaml:", "invalid YAML"], {"c.yaml": "rounds: [1\n"}),
    Case("config-duplicate-key", ["run", "c.yaml"], ["c.yaml:3", "duplicate key 'rounds'"],
         {"c.yaml": "rounds: 1\nname: x\nrounds: 2\n"}),
    Case("config-not-a-mapping", ["run", "c.yaml"], ["c.yaml", "mapping"], {"c.yaml": "- rounds\n"}),
    Case("config-unknown-key", ["run", G, "bogus=1"], ["unknown key 'bogus'"]),
    Case("config-unknown-nested-key", ["run", G, "sampling.temprature=1"], ["unknown key 'sampling.temprature'"]),
    Case("config-wrong-type", ["run", G, "rounds=three"], ["key 'rounds'", "rounds=three"]),
    Case("config-negative-rounds", ["run", G, "rounds=-1"], ["key 'rounds'"]),
    Case("override-without-equals", ["run", G, "sampling.n"], ["sampling.n", "expected key=value"]),
    Case("override-empty-key", ["run", G, "=5"], ["override '=5'", "key before '=' is empty"]),
    Case("override-into-a-value", ["run", G, "rounds.x=1"], ["override 'rounds.x=1'", "key 'rounds'"]),
    # model
    Case("model-missing", ["run", G, "model.path=/no/such/model"], ["model.path", "/no/such/model", "no such directory"]),
    Case("model-is-a-file", ["run", G, "model.path=train.jsonl"], ["model.path", "is a file"]),
    Case("model-dir-without-config", ["run", G, "model.path=./empty"], ["model.path", "no config.json"],
         {"empty/.keep": ""}),
    Case("tokenizer-missing", ["run", G, "model.tokenizer=/no/tok"], ["model.tokenizer", "/no/tok"]),
    Case("model-dtype", ["run", G, "model.dtype=float8"], ["key 'model.dtype'"]),
    # agents and teachers
    Case("env-unknown", ["run", G, "rollout.env=nope"], ["key 'rollout.env'", "unknown env 'nope'"]),
    Case("env-option-unknown", ["run", G, "rollout.env=ctf", "rollout.env_options.colour=1"],
         ["rollout.env_options", "colour"]),
    Case("env-options-without-env", ["run", G, "rollout.env_options.timeout=1"], ["rollout.env_options", "rollout.env"]),
    Case("env-without-chat-template", ["run", G, "rollout.env=ctf"], ["key 'rollout.env'", "chat template"]),
    Case("teacher-missing", ["run", G, "sampling.model=/no/teacher"], ["sampling.model", "/no/teacher"]),
    # task
    Case("task-unknown", ["run", G, "task.name=additon"], ["key 'task.name'", "unknown task 'additon'"]),
    Case("task-module-missing", ["run", G, "task.name=no_such_mod:make"], ["key 'task.name'", "no_such_mod"]),
    Case("task-param-unknown", ["run", G, "task.name=addition", "task.params.digitz=2"], ["task.params.digitz"]),
    Case("task-param-type", ["run", G, "task.name=addition", "task.params.digits=two"],
         ["task.params.digits", "expected int"]),
    Case("task-param-impossible", ["run", G, "task.name=addition", "task.params.digits=1"],
         ["task.params", "only 100 distinct"]),
    Case("dataset-without-train", ["run", G, "task.train=null"], ["key 'task.train'"]),
    Case("train-file-missing", ["run", G, "task.train=missing.jsonl"], ["task.train", "missing.jsonl"]),
    Case("train-file-empty", ["run", G, "task.train=empty.jsonl"], ["key 'task'", "no train prompts", "empty.jsonl"],
         {"empty.jsonl": ""}),
    Case("train-bad-json", ["run", G, "task.train=t.jsonl"], ["t.jsonl:2", "invalid JSON"],
         {"t.jsonl": jsonl(ROWS[:1]) + '{"prompt": \n'}),
    Case("train-not-utf8", ["run", G, "task.train=t.jsonl"], ["t.jsonl:1", "not UTF-8"],
         {"t.jsonl": b'{"prompt": "\xff"}\n'}),
    Case("train-missing-column", ["run", G, "task.train=t.jsonl"], ["t.jsonl:1", "missing column 'prompt'"],
         {"t.jsonl": jsonl([{"question": "1+1="}])}),
    Case("train-duplicate-id", ["run", G, "task.train=t.jsonl", "task.id_column=id"], ["t.jsonl:2", "duplicate"],
         {"t.jsonl": jsonl([{"id": 1, "prompt": "1+1=", "answer": 2}, {"id": 1, "prompt": "2+2=", "answer": 4}])}),
    Case("train-empty-prompt", ["run", G, "task.train=t.jsonl"], ["t.jsonl:1", "empty prompt"],
         {"t.jsonl": jsonl([{"prompt": "", "answer": 0}])}),
    Case("train-prompt-wrong-type", ["run", G, "task.train=t.jsonl"], ["t.jsonl:1", "must be a string"],
         {"t.jsonl": jsonl([{"prompt": 12, "answer": 0}])}),
    Case("train-id-column-missing", ["run", G, "task.id_column=uid"], ["train.jsonl:1", "missing column 'uid'"]),
    Case("eval-file-missing", ["run", G, "task.eval=nope.jsonl"], ["task.eval", "nope.jsonl"]),
    Case("eval-file-empty", ["run", G, "task.eval=empty-eval.jsonl"], ["key 'task.eval'", "no prompts"],
         {"empty-eval.jsonl": ""}),
    Case("prompt-longer-than-context", ["run", G, "task.train=t.jsonl"],
         ["t.jsonl:1", "task.train prompt '0'", "context of 64"],
         {"t.jsonl": jsonl([{"prompt": "1" * 60 + "=", "answer": 1}])}),
    Case("parquet-corrupt", ["run", G, "task.train=t.parquet"], ["t.parquet", "cannot read Parquet"],
         {"t.parquet": b"not parquet at all"}),
    Case("train-unknown-suffix", ["run", G, "task.train=t.csv"], ["task.train", "t.csv"], {"t.csv": "prompt\n1+1=\n"}),
    # scorer
    Case("scorer-unknown", ["run", G, "scorer=addtion"], ["key 'scorer'", "unknown scorer 'addtion'"]),
    Case("scorer-module-missing", ["run", G, "scorer=no_mod_xyz:f"], ["key 'scorer'", "no_mod_xyz"]),
    Case("scorer-syntax-error", ["run", G, "scorer=broken_scorer:f"], ["broken_scorer.py:2", "syntax error"],
         {"broken_scorer.py": "def f(prompts, completions):\n    return [1.0 for c in completions\n"}),
    Case("scorer-attribute-missing", ["run", G, "scorer=ok_scorer:g"], ["key 'scorer'", "no attribute 'g'"],
         {"ok_scorer.py": "def f(prompts, completions, **kw):\n    return [1.0] * len(completions)\n"}),
    Case("scorer-not-callable", ["run", G, "scorer=const_scorer:VALUE"], ["key 'scorer'", "not callable"],
         {"const_scorer.py": "VALUE = 3\n"}),
    Case("scorer-kwarg-unknown", ["run", G, "scorer={name: numeric, kwargs: {fields: answer}}"],
         ["scorer.kwargs.fields", "numeric"]),
    Case("scorer-kwarg-type", ["run", G, "scorer={name: numeric, kwargs: {tolerance: small}}"],
         ["scorer.kwargs.tolerance", "expected float"]),
    Case("scorer-needs-a-column", ["run", G, "scorer=col_scorer:f"], ["key 'scorer'", "column 'gold'"],
         {"col_scorer.py": "def f(prompts, completions, gold):\n    return [1.0] * len(completions)\n"}),
    Case("scorer-wrong-signature", ["run", G, "scorer=sig_scorer:f"], ["key 'scorer'", "scorer sig_scorer:f",
                                                                        "completions=", "cannot take 'prompts'"],
         {"sig_scorer.py": "def f(text):\n    return 1.0\n"}),
    Case("scorer-combine-unknown", ["run", G, "scorer={combine: avg, scorers: [addition]}"],
         ["scorer.combine", "unknown combination 'avg'"]),
    Case("scorer-inline-spec-unparseable", ["run", G, "scorer={name: numeric"], ["key 'scorer'", "inline spec"]),
    Case("scorer-trl-style-without-prompts-is-fine-but-needs-its-column", ["run", G, "scorer=trl_like:f"],
         ["key 'scorer'", "column 'solution'"],
         {"trl_like.py": "def f(completions, solution, **kwargs):\n    return [0.0] * len(completions)\n"}),
    Case("scorer-combine-weights", ["run", G, "scorer={combine: sum, scorers: [addition], weights: [a]}"],
         ["scorer.weights"]),
    Case("eval-scorer-unknown", ["run", G, "eval.scorer=nope"], ["key 'eval.scorer'", "unknown scorer 'nope'"]),
    Case("code-scorer-mode-unavailable",
         ["run", G, "scorer={name: code, kwargs: {mode: process, python: /no/python3}}"],
         ["scorer.kwargs.mode", "'process' cannot run here"]),
    # sampling
    Case("engine-unknown", ["run", G, "sampling.engine=vlm"], ["key 'sampling.engine'", "unknown engine 'vlm'"]),
    Case("engine-option-unknown", ["run", G, "sampling.engine_options.max_batch_token=8"],
         ["sampling.engine_options.max_batch_token", "max_batch_tokens"]),
    Case("engine-option-type", ["run", G, "sampling.engine_options.threads=two"],
         ["sampling.engine_options.threads"]),
    Case("engine-factory-without-model-args", ["run", G, "sampling.engine=eng_mod:make"],
         ["key 'sampling.engine'", "model_path"], {"eng_mod.py": "def make(path):\n    return None\n"}),
    Case("temperature-negative", ["run", G, "sampling.temperature=-1"], ["key 'sampling.temperature'"]),
    Case("top-p-zero", ["run", G, "sampling.top_p=0"], ["key 'sampling.top_p'"]),
    Case("n-zero", ["run", G, "sampling.n=0"], ["key 'sampling.n'"]),
    Case("allocation-unknown", ["run", G, "sampling.allocation=greedy"], ["key 'sampling.allocation'"]),
    # selection
    Case("rule-unknown", ["run", G, "selection.rules=[{rule: best}]"], ["selection.rules.0", "unknown rule 'best'"]),
    Case("rule-option-unknown", ["run", G, "selection.rules=[{rule: cap, m: 2}]"], ["selection.rules.0.m"]),
    Case("rule-cap-zero", ["run", G, "selection.rules=[{rule: cap, n: 0}]"], ["selection.rules.0.n"]),
    Case("rule-without-name", ["run", G, "selection.rules=[{min: 1}]"], ["selection.rules.0", "'rule' key"]),
    Case("rule-module-missing", ["run", G, "selection.rules=[{rule: 'no_rule_mod:f'}]"],
         ["selection.rules.0.rule", "no_rule_mod"]),
    # train
    Case("train-extra-unknown", ["run", G, "train.extra.learning_rat=1"], ["train.extra.learning_rat", "SFTConfig"]),
    Case("lr-scheduler-unknown", ["run", G, "train.lr_scheduler=cosin"], ["key 'train.lr_scheduler'", "'cosin'"]),
    Case("lr-scheduler-needs-settings", ["run", G, "train.lr_scheduler=cosine_with_min_lr"],
         ["key 'train.lr_scheduler'", "min_lr", "lr_scheduler_kwargs"]),
    Case("train-extra-wrong-type", ["run", G, "train.extra.logging_steps=abc"], ["key 'train.extra.logging_steps'"]),
    Case("warmup-with-constant", ["run", G, "train.warmup_ratio=0.1"], ["key 'train.warmup_ratio'", "constant"]),
    Case("warmup-ratio-one", ["run", G, "train.warmup_ratio=1.0", "train.lr_scheduler=linear"],
         ["key 'train.warmup_ratio'"]),
    Case("lora-targets-missing", ["run", G, "train.lora={target_modules: [nope_proj]}"],
         ["train.lora.target_modules", "nope_proj"]),
    Case("learning-rate-zero", ["run", G, "train.learning_rate=0"], ["key 'train.learning_rate'"]),
    Case("train-init-unknown", ["run", G, "train.init=random"], ["key 'train.init'"]),
    Case("train-launcher-unknown", ["run", G, "train.launcher=nope"], ["key 'train.launcher'", "unknown launcher 'nope'"]),
    Case("train-processes-zero", ["run", G, "train.processes=0"], ["key 'train.processes'"]),
    Case("train-deepspeed-not-installed", ["run", G, "train.extra.deepspeed={zero_optimization: {stage: 3}}"],
         ["key 'train.extra.deepspeed'", "deepspeed"]),
    Case("train-launcher-program-missing", ["run", G, "train.processes=2", "train.launcher=my_launch:gone"],
         ["key 'train.launcher'", "/no/such/launcher", "does not exist"],
         files={"my_launch.py": "def gone(processes, module, args):\n    return ['/no/such/launcher', module, *args]\n"}),
    # eval and warm start
    Case("eval-k-beyond-n", ["run", G, "eval.k=[1,4]"], ["eval.k", "eval.n = 2"]),
    Case("eval-engine-unknown", ["run", G, "eval.engine=vlm"], ["key 'eval.engine'", "'vlm'"]),
    Case("eval-engine-options-without-engine", ["run", G, "eval.engine_options.compute_type=int8"],
         ["eval.engine_options", "eval.engine"]),
    Case("warm-start-without-gold", ["run", G, "warm_start.enabled=true", "rounds=0"],
         ["warm_start", "completion_column"]),
    # where the run goes
    Case("output-dir-is-a-file", ["run", G, "output_dir=train.jsonl"], ["key 'output_dir'", "is a file"]),
    # the demo
    Case("demo-bad-override", ["demo", "train.max_steps=lots"], ["key 'train.max_steps'"]),
    # usage
    Case("unknown-command", ["trian"], ["No such command 'trian'"]),
    Case("bad-option-value", ["best-of-n", "--model", "m", "--scorer", "s", "--n", "many"], ["'--n'"]),
]


def prepare(case: Case, ws: Path) -> None:
    for name, content in (case.files or {}).items():
        path = ws / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)


def assert_one_line(rc: int, err: str, needles: list[str]) -> None:
    assert rc != 0, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rsft: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize("case", CONFIG_CASES, ids=[c.id for c in CONFIG_CASES])
def test_a_bad_run_config_stops_before_anything_is_written(case, workspace):
    prepare(case, workspace)
    rc, _, err = invoke(case.args, workspace)
    assert_one_line(rc, err, case.needles)
    assert not (workspace / "runs" / "bad").exists()
    assert not any((workspace / "runs").glob("demo")) if (workspace / "runs").exists() else True


def done_markers(run_dir: Path) -> set[str]:
    return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*.done")}


RUN_CASES = [
    # (id, args with RUN for the finished run, needles)
    ("stage-negative-round", ["sample", "RUN", "--round", "-1"], ["'--round'"]),
    ("stage-on-a-non-run", ["sample", "train.jsonl"], ["train.jsonl", "not a run directory"]),
    ("stage-before-its-inputs", ["train", "RUN", "--round", "3"], ["round 3", "stage 'sample' has not finished"]),
    ("stage-after-an-unfinished-round", ["sample", "RUN", "--round", "4"], ["round 4", "round 3 has no trained model"]),
    ("metrics-on-a-non-run", ["metrics", "train.jsonl"], ["train.jsonl", "not a run directory"]),
    ("rationalize-on-a-non-run", ["rationalize", "train.jsonl"], ["train.jsonl", "not a run directory"]),
    ("compare-one-run", ["compare", "RUN"], ["rsft compare", "two or more run directories", "got 1"]),
    ("compare-with-a-non-run", ["compare", "RUN", "train.jsonl"], ["train.jsonl", "not a run directory"]),
    ("compare-confidence-above-one", ["compare", "RUN", "RUN", "--confidence", "1.5"],
     ["--confidence", "between 0 and 1", "1.5"]),
    ("eval-missing-model", ["eval", "/no/model", "--config", "good.yaml"], ["model.path", "/no/model"]),
    ("export-tau-zero", ["export", "pairs", "RUN", "--tau", "0"], ["tau must be > 0"]),
    ("export-tau-negative", ["export", "pairs", "RUN", "--tau", "-0.5"], ["'--tau'"]),
    ("export-cap-zero", ["export", "pairs", "RUN", "--cap", "0"], ["'--cap'"]),
    ("export-missing-round", ["export", "pairs", "RUN", "--round", "7"], ["no scored samples for round 7"]),
    ("export-not-a-run", ["export", "pairs", "train.jsonl"], ["train.jsonl", "not a run directory"]),
    ("resume-with-a-changed-config", ["run", "good.yaml", "name=done",
                                      "selection.rules=[{rule: passes, min: 0.0}]", "sampling.n=3"],
     ["different config", "sampling.n"]),
    ("resume-with-fewer-rounds", ["run", "good.yaml", "name=done",
                                  "selection.rules=[{rule: passes, min: 0.0}]", "rounds=0"],
     ["key 'rounds'", "already started round 2"]),
    ("score-file-without-scorer", ["score", "train.jsonl"], ["--scorer"]),
    ("score-file-unparseable-spec", ["score", "train.jsonl", "--scorer", "{name"], ["--scorer", "'{name'"]),
    ("score-file-missing-column", ["score", "train.jsonl", "--scorer", "addition"], ["train.jsonl:1",
                                                                                    "'completion'"]),
    ("best-of-n-zero", ["best-of-n", "--model", "MODEL", "--scorer", "addition", "--n", "0", "--prompt", "1+2="],
     ["'--n'"]),
    ("best-of-n-no-prompt", ["best-of-n", "--model", "MODEL", "--scorer", "addition"], ["--prompt", "--input"]),
    ("best-of-n-bad-field", ["best-of-n", "--model", "MODEL", "--scorer", "addition", "--prompt", "1+2=",
                             "--field", "answer"], ["--field 'answer'", "KEY=VALUE"]),
    ("best-of-n-nothing-scored", ["best-of-n", "--model", "MODEL", "--scorer", "addition", "--prompt", "1+2=",
                                  "--n", "2", "--max-new-tokens", "3"], ["--scorer", "column 'answer'"]),
    ("best-of-n-prompt-too-long", ["best-of-n", "--model", "MODEL", "--scorer", "addition", "--prompt", "1" * 80 + "=",
                                   "--field", "answer=1"], ["--prompt prompt '0'", "context of 64"]),
    ("best-of-n-output-is-a-directory", ["best-of-n", "--model", "MODEL", "--scorer", "addition", "--prompt", "1+2=",
                                         "--field", "answer=3", "--output", "RUN"], ["--output", "is a directory"]),
    ("score-file-output-is-a-directory", ["score", "train.jsonl", "--scorer", "addition", "--completion-column",
                                          "prompt", "--output", "RUN"], ["--output", "is a directory"]),
    ("score-file-every-row-fails", ["score", "pc.jsonl", "--scorer", "addition"], ["--scorer", "column 'answer'"]),
    ("eval-negative-round", ["eval", "RUN", "--round", "-1"], ["'--round'"]),
    ("eval-prompt-too-long", ["eval", "MODEL", "--config", "good.yaml", "task.eval=long.jsonl"],
     ["long.jsonl:1", "task.eval prompt '0'", "context of 64"]),
    ("rm-output-is-a-file", ["reward-model", "train", "pb.jsonl", "--init", "MODEL", "--output", "train.jsonl",
                             "--ignore-margin"], ["--output", "is a file"]),
    ("best-of-n-negative-temperature", ["best-of-n", "--model", "MODEL", "--scorer", "addition", "--prompt", "1+2=",
                                        "--temperature", "-1"], ["'--temperature'"]),
    ("rm-pairs-directory", ["reward-model", "train", "RUN", "--init", "MODEL", "--output", "rm"],
     ["is a directory", "pairs"]),
    ("rm-pairs-non-numeric-margin", ["reward-model", "train", "pm.jsonl", "--init", "MODEL", "--output", "rm"],
     ["pm.jsonl:1", "'margin' must be a number"]),
    ("rm-pairs-label-and-margin", ["reward-model", "train", "pb.jsonl", "--init", "MODEL", "--output", "rm"],
     ["pb.jsonl:1", "both a soft label"]),
    ("rm-init-missing", ["reward-model", "train", "pb.jsonl", "--init", "/no/init", "--output", "rm",
                         "--ignore-margin"], ["/no/init"]),
    ("rm-learning-rate-zero", ["reward-model", "train", "pb.jsonl", "--init", "MODEL", "--output", "rm",
                               "--learning-rate", "0"], ["learning_rate"]),
    ("rm-processes-zero", ["reward-model", "train", "pb.jsonl", "--init", "MODEL", "--output", "rm",
                           "--processes", "0"], ["'--processes'"]),
    ("rm-launcher-unknown", ["reward-model", "train", "pb.jsonl", "--init", "MODEL", "--output", "rm",
                             "--processes", "2", "--launcher", "nope"], ["launcher", "unknown launcher 'nope'"]),
    # every command has a case: select, report, graduate, convert, export sft
    ("select-on-a-non-run", ["select", "train.jsonl"], ["train.jsonl", "not a run directory"]),
    ("report-on-a-non-run", ["report", "train.jsonl"], ["train.jsonl", "not a run directory"]),
    ("graduate-without-a-hand-off", ["graduate", "RUN"], ["graduate", "no graduation here"]),
    ("convert-not-gguf", ["convert", "train.jsonl"], ["train.jsonl", "not a GGUF file"]),
    ("export-sft-missing-round", ["export", "sft", "RUN", "--round", "7"], ["nothing selected in round 7"]),
    ("export-threshold-without-all-pairs", ["export", "pairs", "RUN", "--threshold", "50"],
     ["--threshold 50", "--all-pairs"]),
]


@pytest.mark.parametrize("case_id, args, needles", RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_a_bad_command_on_a_run_changes_nothing(case_id, args, needles, finished, workspace, model_dir):
    (workspace / "pm.jsonl").write_text(jsonl([{"prompt": "a", "chosen": "b", "rejected": "c", "margin": "big"}]))
    (workspace / "pb.jsonl").write_text(jsonl([{"prompt": "a", "chosen": "b", "rejected": "c", "margin": 1.0,
                                                "p": 0.8}]))
    (workspace / "pc.jsonl").write_text(jsonl([{"prompt": "1+2=", "completion": "3"}]))
    (workspace / "long.jsonl").write_text(jsonl([{"prompt": "1" * 80 + "=", "answer": 1}]))
    args = [str(finished) if a == "RUN" else str(model_dir) if a == "MODEL" else a for a in args]
    before = done_markers(finished)
    config = (finished / "config.yaml").read_text()
    rc, _, err = invoke(args, workspace)
    assert_one_line(rc, err, needles)
    assert done_markers(finished) == before and (finished / "config.yaml").read_text() == config
    assert not (workspace / "rm").exists() and not (workspace / "train.jsonl-work").exists()


def test_a_report_that_cannot_be_written_is_one_line(finished, workspace, monkeypatch):
    """A directory where report.html goes, then a write refused (EACCES, simulated: root may write anywhere)."""
    import tempfile

    report = finished / "report.html"
    report.unlink(missing_ok=True)
    report.mkdir()
    rc, _, err = invoke(["report", str(finished)], workspace)
    report.rmdir()
    assert_one_line(rc, err, ["rsft report", str(report), "is a directory"])

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    rc, _, err = invoke(["report", str(finished)], workspace)
    assert_one_line(rc, err, ["rsft report: cannot write", str(report), "Permission denied"])


def test_export_says_when_no_sample_reaches_the_threshold(finished, workspace):
    rc, _, err = invoke(["export", "pairs", str(finished), "--all-pairs", "--threshold", "50"], workspace)
    assert_one_line(rc, err, ["--threshold 50", "no sample"])
    assert "scored the same" not in err


def test_a_truncated_metrics_file_is_named(finished, workspace):
    metrics = finished / "round-000" / "metrics.json"
    text = metrics.read_text()
    try:
        metrics.write_text(text[: len(text) // 2])
        rc, _, err = invoke(["metrics", str(finished)], workspace)
        assert_one_line(rc, err, [str(metrics), "not valid JSON"])
    finally:
        metrics.write_text(text)


def test_a_corrupt_safetensors_file_is_named(workspace, model_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    rc, _, err = invoke(["run", "good.yaml", f"model.path={broken}"], workspace)
    assert_one_line(rc, err, ["model.path", "model.safetensors", "not a readable safetensors file"])
    assert not (workspace / "runs" / "bad").exists()


def test_the_corpus_is_large():
    assert len(CONFIG_CASES) + len(RUN_CASES) + 2 >= 60
