"""User mistakes: a non-zero exit and one line on stderr naming what is wrong, never a traceback."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli


def dataset_config(tmp_path, train_rows: str, model) -> str:
    (tmp_path / "train.jsonl").write_text(train_rows)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"output_dir: {tmp_path / 'runs'}\nmodel: {{path: {model}}}\n"
        f"task: {{name: dataset, train: {tmp_path / 'train.jsonl'}}}\nscorer: addition\n"
        "sampling: {max_new_tokens: 8}\n"
    )
    return str(cfg)


def assert_one_line_error(proc, *needles):
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err


def test_malformed_jsonl_line(tmp_path, model_dir):
    rows = json.dumps({"prompt": "1+1=", "answer": 2}) + "\n" + '{"prompt": "2+2=", "answer": \n'
    cfg = dataset_config(tmp_path, rows, model_dir)
    assert_one_line_error(run_cli("run", cfg), "train.jsonl:2", "invalid JSON")


def test_missing_column(tmp_path, model_dir):
    cfg = dataset_config(tmp_path, json.dumps({"question": "1+1="}) + "\n", model_dir)
    assert_one_line_error(run_cli("run", cfg), "train.jsonl:1", "missing column 'prompt'")


def test_unknown_config_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sampling:\n  temprature: 0.7\n")
    assert_one_line_error(run_cli("run", str(cfg)), "c.yaml", "unknown key 'sampling.temprature'")


@pytest.mark.parametrize("text, needle", [("rounds: three\n", "key 'rounds'"),
                                          ("sampling: {n: -2}\n", "key 'sampling.n'")])
def test_wrong_type(tmp_path, text, needle):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    assert_one_line_error(run_cli("run", str(cfg)), needle)


def test_wrong_type_in_override(tmp_path):
    assert_one_line_error(run_cli("demo", "train.max_steps=lots", f"output_dir={tmp_path}"), "key 'train.max_steps'")


def test_missing_model_path(tmp_path):
    cfg = dataset_config(tmp_path, json.dumps({"prompt": "1+1=", "answer": 2}) + "\n", tmp_path / "no-model")
    assert_one_line_error(run_cli("run", cfg), "model.path", "no such directory")


def test_missing_config_file(tmp_path):
    assert_one_line_error(run_cli("run", str(tmp_path / "nope.yaml")), "config file not found")


def test_changed_config_on_resume(tmp_path):
    from tests.conftest import ROOT

    mini = str(ROOT / "tests" / "e2e" / "mini.yaml")
    run_cli("run", mini, f"output_dir={tmp_path}", "rounds=0", check=True)
    assert_one_line_error(run_cli("run", mini, f"output_dir={tmp_path}", "rounds=0", "sampling.n=3"),
                          "different config", "sampling.n")


def test_non_utf8_jsonl(tmp_path, model_dir):
    cfg = dataset_config(tmp_path, "", model_dir)
    (tmp_path / "train.jsonl").write_bytes(b'{"prompt": "1+1=", "answer": 2}\n{"prompt": "\xff\xfe"}\n')
    assert_one_line_error(run_cli("run", cfg), "train.jsonl:2", "not UTF-8")


@pytest.mark.parametrize("engine", ["auto", "transformers"])
def test_model_path_that_is_neither_a_directory_nor_a_cached_hub_id(tmp_path, engine):
    cfg = dataset_config(tmp_path, json.dumps({"prompt": "1+1=", "answer": 2}) + "\n", "models/not-there")
    assert_one_line_error(run_cli("run", cfg, f"sampling.engine={engine}", cwd=tmp_path), "model.path",
                          "models/not-there")


@pytest.mark.parametrize("override, needles", [
    ("sampling.engine_options.max_batch_token=100", ["sampling.engine_options.max_batch_token", "max_batch_tokens"]),
    ("task.params.digits=three", ["task.params.digits", "expected int"]),
    ("task.params.digits=1", ["task.params", "only 100 distinct 1-digit problems"]),
    ("eval.k=[1,16]", ["eval.k", "eval.n = 8"]),
    ("scorer=no_such_module:fn", ["scorer", "no_such_module"]),
])
def test_bad_settings_stop_before_anything_is_written(tmp_path, override, needles):
    assert_one_line_error(run_cli("demo", override, "sampling.engine=transformers", f"output_dir={tmp_path}"),
                          *needles)
    assert not (tmp_path / "demo").exists()


def test_a_run_that_failed_before_producing_anything_takes_the_corrected_config(tmp_path, model_dir):
    cfg = dataset_config(tmp_path, json.dumps({"prompt": "1+1=", "answer": 2}) + "\n", tmp_path / "no-model")
    (tmp_path / "eval.jsonl").write_text(json.dumps({"prompt": "2+3=", "answer": 5}) + "\n")
    evals = [f"task.eval={tmp_path / 'eval.jsonl'}", "eval.n=2", "eval.k=[1,2]", "rounds=0"]  # loads the model
    assert_one_line_error(run_cli("run", cfg, *evals), "no such directory")
    fixed = dataset_config(tmp_path, json.dumps({"prompt": "1+1=", "answer": 2}) + "\n", model_dir)
    run_cli("run", fixed, *evals, check=True)
    assert (tmp_path / "runs" / "run" / "base-eval.json").exists()
    assert str(model_dir) in (tmp_path / "runs" / "run" / "config.yaml").read_text()


def test_a_teacher_that_is_not_there_is_named_before_any_work(tmp_path, model_dir):
    """A hub-like teacher id that is not in the cache: found in preflight under its own key, not after the
    base eval under model.path."""
    cfg = dataset_config(tmp_path, json.dumps({"prompt": "1+1=", "answer": 2}) + "\n", model_dir)
    proc = run_cli("run", cfg, "sampling.model=teachers/big", cwd=tmp_path)
    assert_one_line_error(proc, "sampling.model", "teachers/big")
    assert "model.path" not in proc.stderr and not (tmp_path / "runs").exists()


def test_an_openai_server_that_is_down_is_named_before_the_base_model_is_built(tmp_path, model_dir):
    cfg = dataset_config(tmp_path, json.dumps({"prompt": "1+1=", "answer": 2}) + "\n", model_dir)
    proc = run_cli("run", cfg, "sampling.engine=openai", "sampling.engine_options.base_url=http://127.0.0.1:9/v1")
    assert_one_line_error(proc, "sampling.engine_options.base_url", "127.0.0.1:9")
    assert not (tmp_path / "runs").exists()
