"""One registry for every extension kind: built-in names and a user's 'module:function', options checked
against the factory's signature before anything runs."""

from __future__ import annotations

import json

import pytest

from rsft.core.config import build_config
from rsft.core.errors import ConfigError
from rsft.core.records import Group, Prompt, Sample, Score
from rsft.core.registry import resolve
from rsft.parts.selection import select

USER_CODE = '''
from rsft.core.records import Prompt
from rsft.parts.sampling.transformers_engine import TransformersEngine
from rsft.inputs.tasks.base import Task


def short_only(group, max_chars: int = 3):
    return group.keep([(s, c) for s, c in group.scored if len(s.text) <= max_chars])


def squares(n: int = 4, seed: int = 0, settings=None):
    prompts = [Prompt(f"q{i}", text=f"{i}*{i}=", fields={"answer": i * i, "train": settings and settings.train})
               for i in range(n)]
    return Task("squares", prompts[: n // 2], prompts[n // 2 :], scorer=None, alphabet="0123456789*=")


def by_name(n: int = 4, train=None):
    return squares(n)


def named(name: str = "mine", n: int = 4):  # its own `name` option is not the task section's
    return squares(n)


def my_engine(model_path, tokenizer_path=None, dtype="float32", trust_remote_code=False, rows: int = 1024):
    engine = TransformersEngine.from_path(model_path, tokenizer_path, dtype, trust_remote_code, max_batch_tokens=rows)
    engine.built_by_user = True
    return engine
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_ext.py").write_text(USER_CODE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_ext"


def group() -> Group:
    p = Prompt("p", text="q")
    samples = tuple(Sample("p", i, t) for i, t in enumerate(["ab", "abcd", "abc", "a"]))
    return Group(p, samples, tuple(Score(v) for v in (1.0, 1.0, 0.0, 0.0)))


def test_a_user_rule_takes_its_options_from_the_config(user_module):
    cfg = build_config({"selection": {"rules": [{"rule": f"{user_module}:short_only", "max_chars": 2},
                                                {"rule": "passes"}]}})
    sel = select([group()], cfg.selection.rules)
    assert [s.text for s in sel.groups[0].samples] == ["ab"]
    assert sel.survivors == [(f"{user_module}:short_only", 2), ("passes", 1)]
    # the resolved config round-trips with the user's option in it
    assert cfg.model_dump(mode="json")["selection"]["rules"][0] == {"rule": f"{user_module}:short_only", "max_chars": 2}


@pytest.mark.parametrize("rule, needle", [
    ({"rule": "my_ext:short_only", "max_char": 2}, "selection.rules.0.max_char"),
    ({"rule": "my_ext:short_only", "max_chars": "two"}, "expected int"),
    ({"rule": "my_ext:nope"}, "has no attribute 'nope'"),
    ({"rule": "cap", "n": 0}, "selection.rules.0.n"),
    ({"rule": "cap", "m": 3}, "selection.rules.0.m"),
])
def test_a_bad_rule_is_one_line_naming_the_key(user_module, rule, needle):
    with pytest.raises(ConfigError, match=needle) as e:
        build_config({"selection": {"rules": [rule]}})
    assert "\n" not in str(e.value)


def test_a_user_task_gets_params_seed_and_the_task_section_as_settings(user_module):
    cfg = build_config({"task": {"name": f"{user_module}:squares", "params": {"n": 6}, "train": "ignored.jsonl"}})
    task = resolve("task", cfg.task, seed=3)
    assert task.name == "squares" and [p.text for p in task.train] == ["0*0=", "1*1=", "2*2="]
    assert [p.fields["answer"] for p in task.eval] == [9, 16, 25]
    assert {p.fields["train"] for p in task.train} == {"ignored.jsonl"}  # the whole section, as `settings`


def test_a_user_task_may_have_its_own_name_option(user_module):
    cfg = build_config({"task": {"name": f"{user_module}:named", "params": {"name": "x", "n": 2}}})
    assert len(resolve("task", cfg.task, seed=0).train) == 1


def test_a_user_task_naming_a_task_setting_as_a_parameter_is_told_to_take_settings(user_module):
    cfg = build_config({"task": {"name": f"{user_module}:by_name", "train": "x.jsonl"}})
    with pytest.raises(ConfigError, match=r"key 'task.name': task '.*:by_name' takes 'train'.*`settings`"):
        resolve("task", cfg.task, seed=0)


@pytest.mark.parametrize("params, needle", [({"m": 1}, "task.params.m"), ({"n": "six"}, "expected int")])
def test_a_user_task_checks_its_params(user_module, params, needle):
    cfg = build_config({"task": {"name": f"{user_module}:squares", "params": params}})
    with pytest.raises(ConfigError, match=needle):
        resolve("task", cfg.task, seed=0)


def test_a_user_engine_factory_gets_the_model_and_its_options(user_module, model_dir):
    engine = resolve("engine", f"{user_module}:my_engine", model_path=str(model_dir), rows=77)
    assert engine.built_by_user and engine.max_batch_tokens == 77
    with pytest.raises(ConfigError, match="sampling.engine_options.row"):
        resolve("engine", f"{user_module}:my_engine", model_path=str(model_dir), row=77)


@pytest.mark.parametrize("kind, spec, needle", [
    ("engine", "vlm", "unknown engine 'vlm'"),
    ("scorer", "numerc", "unknown scorer 'numerc'"),
    ("rule", {"rule": "best"}, "unknown rule 'best'"),
])
def test_unknown_names_list_the_built_ins(kind, spec, needle, tmp_path):
    with pytest.raises(ConfigError, match=needle):
        resolve(kind, spec, **({"model_path": str(tmp_path)} if kind == "engine" else {}))


def test_a_user_task_runs_through_the_loop(user_module, model_dir, tmp_path):
    """The escape hatch is the same path as a built-in: a fake-engine round over the user's task."""
    from rsft.loop.rounds import open_run
    from rsft.stages.runner import run_stage

    (tmp_path / "score_ext.py").write_text("def f(prompts, completions, answer, **kw):\n"
                                          "    return [1.0] * len(completions)\n")
    cfg = build_config({"output_dir": str(tmp_path / "runs"), "model": {"path": str(model_dir)},
                        "task": {"name": f"{user_module}:squares"}, "scorer": "score_ext:f",
                        "sampling": {"engine": "fake", "n": 2, "max_new_tokens": 8}})
    run = open_run(cfg)
    for stage in ("sample", "score", "select"):
        run_stage(run, 0, stage)
    rows = [json.loads(x) for x in run.round(0).selected.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["0*0=", "1*1="]
