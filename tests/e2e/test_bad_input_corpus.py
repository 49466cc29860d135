"""More of the bad-input corpus: settings that cannot work and used to pass, errors that came only after work
(or named the wrong key or cause), and a case for every config section.

The same harness and rule as `test_bad_input_suite.py`: exit non-zero, one line on stderr, no traceback,
the key, file or path named, and no run directory left where the check belongs before any work. Cases
stop at config load or in preflight, which reads the tiny model's tokenizer and config, never its weights.
"""

from __future__ import annotations

import pytest

from tests.conftest import invoke, make_model_dir
from tests.e2e.test_bad_input_suite import Case, G, assert_one_line, jsonl, prepare, workspace  # noqa: F401
from tests.inputs.serving.fake_server import FakeServer

DOWN = "http://127.0.0.1:9/v1"  # the discard port: nothing listens there
ENV_OK = "    def __init__(self, prompt, start=3):\n        pass\n\n    def reset(self, prompt):\n        return 'go'\n"

CASES = [
    # settings that cannot work, accepted before
    Case("grpo-field-misspelt", ["run", G, "monitor.grpo.learning_rat=1.0e-6"],
         ["key 'monitor.grpo.learning_rat'", "GRPOConfig", "'learning_rate'"]),
    Case("teacher-rounds-without-teacher", ["run", G, "sampling.teacher_rounds=all"],
         ["key 'sampling.teacher_rounds'", "sampling.model"]),
    Case("teacher-rounds-first-without-teacher", ["run", "t.yaml"], ["t.yaml", "key 'sampling.teacher_rounds'"],
         {"t.yaml": "sampling: {teacher_rounds: first}\n"}),
    Case("reward-hacking-without-judge", ["run", G, "monitor.triggers=[{trigger: reward_hacking}]"],
         ["key 'monitor.triggers.0'", "eval.scorer", "never fire"]),
    Case("teacher-with-another-tokenizer", ["run", G, "sampling.model=other-teacher"],
         ["key 'sampling.model'", "tokenizer is not the student's", "'-'"]),
    Case("env-without-step", ["run", G, "rollout.env=env_nostep:Env"], ["key 'rollout.env'", "no step() method"],
         {"env_nostep.py": "class Env:\n" + ENV_OK}),
    Case("env-without-reset", ["run", G, "rollout.env=env_noreset:Env"], ["key 'rollout.env'", "no reset() method"],
         {"env_noreset.py": "class Env:\n    def __init__(self, prompt):\n        pass\n\n"
                            "    def step(self, action):\n        return 'ok', True, {}\n"}),
    Case("env-step-takes-no-action", ["run", G, "rollout.env=env_stepargs:Env"], ["key 'rollout.env'", "step(self)"],
         {"env_stepargs.py": "class Env:\n" + ENV_OK + "\n    def step(self):\n        return 'ok', True, {}\n"}),
    Case("decontaminate-true", ["run", G, "selection.decontaminate=true"],
         ["key 'selection.decontaminate'", "got true", "n-gram size"]),
    Case("number-given-as-yes", ["run", G, "sampling.n=yes"], ["key 'sampling.n'", "got true"]),
    Case("warm-start-checks-after-it-ends", ["run", G, "warm_start.enabled=true", "warm_start.max_steps=5"],
         ["key 'warm_start.check_every'", "50", "max_steps (5)"]),
    # found only after work, before
    Case("openai-neither-url-nor-serve", ["run", G, "sampling.engine=openai"],
         ["key 'sampling.engine_options'", "exactly one of base_url", "neither"]),
    Case("openai-no-concurrency", ["run", G, "sampling.engine=openai",
                                   f"sampling.engine_options={{base_url: '{DOWN}', max_concurrency: 0}}"],
         ["key 'sampling.engine_options.max_concurrency'", "got 0"]),
    Case("openai-serve-python-missing", ["run", G, "sampling.engine=openai",
                                         "sampling.engine_options={serve: true, python: /no/python3}"],
         ["key 'sampling.engine_options.python'", "/no/python3", "no such interpreter"]),
    Case("openai-server-down", ["run", G, "sampling.engine=openai", f"sampling.engine_options.base_url={DOWN}"],
         ["key 'sampling.engine_options.base_url'", "127.0.0.1:9", "did not answer"]),
    Case("openai-api-key-unset", ["run", G, "sampling.engine=openai", "sampling.engine_options={base_url: "
                                  f"'{DOWN}', api_key_env: RSFT_NO_SUCH_KEY}}"],
         ["key 'sampling.engine_options.api_key_env'", "RSFT_NO_SUCH_KEY"]),
    Case("eval-engine-openai-options", ["run", G, "eval.engine=openai"], ["key 'eval.engine_options'", "base_url"]),
    Case("teacher-missing-relative", ["run", G, "sampling.model=./no-teacher"],
         ["sampling.model", "./no-teacher", "no such directory"]),
    # the wrong key or cause named, before
    Case("env-prompt-not-first", ["run", G, "rollout.env=env_noprompt:Env", "rollout.env_options.start=5"],
         ["key 'rollout.env'", "first parameter 'start'", "prompt"],
         {"env_noprompt.py": "class Env:\n    def __init__(self, start=3):\n        pass\n"}),
    Case("judge-server-down", ["run", G, f"scorer={{name: judge, kwargs: {{base_url: '{DOWN}', model: m}}}}"],
         ["key 'scorer.kwargs.base_url'", "127.0.0.1:9"]),
    Case("eval-judge-server-down", ["run", G, f"eval.scorer={{name: judge, kwargs: {{base_url: '{DOWN}'}}}}"],
         ["key 'eval.scorer.kwargs.base_url'", "127.0.0.1:9"]),
    Case("judge-no-concurrency", ["run", G, f"scorer={{name: judge, kwargs: {{base_url: '{DOWN}', "
                                            "max_concurrency: 0}}"], ["key 'scorer.kwargs.max_concurrency'"]),
    Case("judge-template-unparseable", ["run", G, f"scorer={{name: judge, kwargs: {{base_url: '{DOWN}', "
                                                  "template: '{completion} {x'}}"],
         ["key 'scorer.kwargs.template'", "not a valid template"]),
    Case("judge-serve-missing", ["run", G, "scorer={name: judge, kwargs: {serve: /no/judge}}"],
         ["key 'scorer.kwargs.serve'", "/no/judge"]),
    Case("combined-child-needs-a-column", ["run", G, "scorer={combine: max, scorers: [addition, gold_scorer:f]}"],
         ["key 'scorer.scorers.1'", "gold_scorer:f", "column 'gold'"],
         {"gold_scorer.py": "def f(prompts, completions, gold):\n    return [1.0] * len(completions)\n"}),
    Case("gate-child-option-key", ["run", G, "scorer={combine: gate, gate: {name: regex, kwargs: {patern: x}}, "
                                              "then: addition}"], ["key 'scorer.gate.kwargs.patern'"]),
    # a case for every section without one elsewhere
    Case("scoring-timeout-zero", ["run", G, "scoring.timeout=0"], ["key 'scoring.timeout'"]),
    Case("ray-address-malformed", ["run", G, "ray.address=my cluster"], ["key 'ray.address'", "'my cluster'"]),
    Case("ray-custom-builtin", ["run", G, "ray.resources_per_worker.custom.GPU=1"],
         ["key 'ray.resources_per_worker.custom'", "'GPU'"]),
    Case("monitor-trigger-unknown", ["run", G, "monitor.triggers=[{trigger: entropy_colapse}]"],
         ["monitor.triggers.0", "unknown monitor 'entropy_colapse'"]),
    Case("monitor-action-unknown", ["run", G, "monitor.action=panic"], ["key 'monitor.action'"]),
    Case("report-to-unknown", ["run", G, "report_to=[tensorbord]"], ["key 'report_to.0'", "tensorbord"]),
    Case("executor-unknown", ["run", G, "executor=dask"], ["key 'executor'", "unknown executor 'dask'"]),
    Case("rollout-max-turns-zero", ["run", G, "rollout.max_turns=0"], ["key 'rollout.max_turns'"]),
    Case("model-tiny-shape", ["run", G, "model.tiny.num_heads=0"], ["key 'model.tiny.num_heads'"]),
    Case("report-not-a-bool", ["run", G, "report=sometimes"], ["key 'report'", "'sometimes'"]),
    Case("seed-not-a-number", ["run", G, "seed=abc"], ["key 'seed'"]),
]


@pytest.fixture(scope="module")
def corpus(workspace):
    """The suite's workspace, plus a teacher whose character tokenizer has one more character."""
    make_model_dir(workspace / "other-teacher", alphabet="0123456789+=-")
    return workspace


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_bad_setting_stops_before_any_work(case, corpus):
    prepare(case, corpus)
    rc, _, err = invoke(case.args, corpus)
    assert_one_line(rc, err, case.needles)
    assert not (corpus / "runs" / "bad").exists()


def test_a_judge_rubric_naming_a_missing_column_stops_before_sampling(corpus):
    with FakeServer(None, reply=lambda body: "7") as server:
        spec = f"{{name: judge, kwargs: {{base_url: '{server.base_url}', template: 'gold {{gold}}: {{completion}}'}}}}"
        rc, _, err = invoke(["run", G, f"scorer={spec}"], corpus)
    assert_one_line(rc, err, ["key 'scorer.kwargs.template'", "{gold}", "columns: ['answer']"])
    assert not (corpus / "runs" / "bad").exists() and not any("prompt" in b for b in server.bodies)


def test_a_prompt_too_long_is_named_by_its_file_and_line(corpus):
    (corpus / "long-train.jsonl").write_text(jsonl([{"prompt": "1+2=", "answer": 3}] * 2
                                                   + [{"prompt": "1" * 60 + "=", "answer": 1}]))
    rc, _, err = invoke(["run", G, "task.train=long-train.jsonl", "task.id_column=null"], corpus)
    assert_one_line(rc, err, ["long-train.jsonl:3", "prompt '2'", "context of 64"])


def test_a_failing_environment_is_blamed_not_the_scorer(corpus):
    """An environment that cannot start fails every trajectory while the round samples (it cannot be known
    before constructing one): the message names the environment and rollout.env, not the scorer."""
    from transformers import AutoTokenizer

    from rsft.inputs.tasks.ctf import CHAT_TEMPLATE

    chat = make_model_dir(corpus / "chat-model", alphabet="0123456789+=$ ")
    tok = AutoTokenizer.from_pretrained(chat)
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(chat)
    (corpus / "env_broken.py").write_text("class Env:\n    def __init__(self, prompt):\n        pass\n\n"
                                          "    def reset(self, prompt):\n        raise RuntimeError('no sandbox')\n\n"
                                          "    def step(self, action):\n        return 'ok', True, {}\n")
    rc, _, err = invoke(["run", G, "name=envfail", f"model.path={chat}", "rollout.env=env_broken:Env", "rounds=1",
                         "eval.enabled=false"], corpus)
    last = err.strip().splitlines()[-1]  # after the run's own notices (it did start)
    assert rc != 0 and "Traceback" not in err and last.startswith("rsft: error: round 0: "), err
    assert "the environment ('env_broken:Env', rollout.env) failed" in last and "no sandbox" in last, last
    assert "scorer" not in last
    round0 = corpus / "runs" / "envfail" / "round-000"
    assert not (round0 / "sample.done").exists() and not (round0 / "train.done").exists()


def test_scoring_a_file_that_keeps_nothing_exits_non_zero(corpus):
    """`rsft score FILE --min X` where no row reaches X would write an empty file: nothing useful."""
    (corpus / "pa.jsonl").write_text(jsonl([{"prompt": "1+2=", "completion": "3", "answer": 3}]))
    rc, _, err = invoke(["score", "pa.jsonl", "--scorer", "addition", "--min", "2"], corpus)
    last = err.strip().splitlines()[-1]  # after the scoring's progress bar: the rows were scored
    assert rc != 0 and "Traceback" not in err and last.startswith("rsft: error: pa.jsonl: "), err
    assert "--min 2" in last and "nothing was written" in last and not (corpus / "pa.scored.jsonl").exists()


def test_every_config_section_has_a_case():
    from rsft.core.config import RunConfig
    from tests.e2e.test_bad_input_suite import CONFIG_CASES

    keys = {arg.partition("=")[0].split(".")[0] for c in CONFIG_CASES + CASES for arg in c.args if "=" in arg}
    assert set(RunConfig.model_fields) - {"name"} <= keys, sorted(set(RunConfig.model_fields) - keys)


def test_every_command_has_a_case():
    from typer.main import get_command

    from rsft.cli import app
    from tests.e2e.test_bad_input_suite import CONFIG_CASES, RUN_CASES

    commands = set()
    for name, command in get_command(app).commands.items():
        subs = getattr(command, "commands", None)
        commands |= {f"{name} {sub}" for sub in subs} if subs else {name}
    used = [c.args for c in CONFIG_CASES + CASES] + [args for _, args, _ in RUN_CASES]
    covered = {" ".join(a[:2]) if a[0] in ("export", "reward-model") else a[0] for a in used}
    assert commands <= covered, sorted(commands - covered)


def test_a_scripted_judge_that_is_up_passes_preflight(corpus):
    """The control for the judge cases: the same settings against a server that answers run a round."""
    with FakeServer(None, reply=lambda body: "7") as server:
        spec = f"{{name: judge, kwargs: {{base_url: '{server.base_url}', template: '{{answer}} {{completion}}'}}}}"
        rc, _, err = invoke(["run", G, "name=judged", f"scorer={spec}", "rounds=0", "eval.enabled=false"], corpus)
    assert rc == 0, err
