"""The code-execution scorer: extraction, test splitting, scores and parts, TRL's call signature."""

from __future__ import annotations

import pytest

from rsft.core.records import Score
from rsft.inputs.sandbox import RunResult, SandboxUnavailable, Step
from rsft.parts.scoring.code import code_scorer, extract_code, split_tests, to_score
from rsft.parts.scoring.spec import build_scorer

ADD_TESTS = ["assert add(1, 2) == 3", "assert add(2, 2) == 4", "assert add(0, 5) == 5"]


def fenced(code: str, lang: str = "python") -> str:
    return f"Here you go:\n```{lang}\n{code}\n```\nDone."


@pytest.fixture(scope="module")
def scorer():
    return code_scorer(timeout=2.0, memory_mb=256, workers=2)


# ---- extraction ----

def test_extract_takes_the_last_python_block() -> None:
    text = "```python\nx = 1\n```\nthen\n```python\nx = 2\n```"
    assert extract_code(text).strip() == "x = 2"


def test_extract_ignores_other_languages() -> None:
    text = "```python\nx = 1\n```\n```bash\nrm -rf /\n```"
    assert extract_code(text).strip() == "x = 1"


def test_extract_falls_back_to_a_block_without_language() -> None:
    assert extract_code("Try:\n```\nx = 4\n```\nok").strip() == "x = 4"
    assert extract_code("```\nx = 4\n```\n```python\nx = 5\n```").strip() == "x = 5"


def test_extract_without_a_fence_is_the_whole_text() -> None:
    assert extract_code("def f():\n    return 1\n") == "def f():\n    return 1\n"


def test_extract_accepts_an_unclosed_block_and_py() -> None:
    assert extract_code("```py\nx = 3\n").strip() == "x = 3"


# ---- tests field ----

def test_list_of_asserts_is_one_test_each() -> None:
    assert split_tests(ADD_TESTS) == [Step(t) for t in ADD_TESTS]


def test_string_of_asserts_keeps_setup_in_order() -> None:
    steps = split_tests("import math\nassert f(1) == 1\nx = 4\nassert f(x) == math.sqrt(16)")
    assert [s.is_test for s in steps] == [False, True, False, True]
    assert steps[2].source == "x = 4"


def test_test_functions_are_called_after_setup() -> None:
    steps = split_tests("def test_a():\n    assert f(1) == 1\ndef helper(x):\n    return x\ndef test_b(y=2):\n    assert f(y) == 2")
    tests = [s.source for s in steps if s.is_test]
    assert tests == ["test_a()", "test_b()"]
    assert [s.is_test for s in steps[:3]] == [False, False, False]


def test_humaneval_check_uses_the_entry_point() -> None:
    steps = split_tests("def check(candidate):\n    assert candidate(2) == 4", entry_point="double")
    assert [s.source for s in steps if s.is_test] == ["check(double)"]


def test_string_without_tests_is_a_single_test() -> None:
    assert split_tests("f(1)") == [Step("f(1)")]


@pytest.mark.parametrize("bad", [None, [], [1, 2], "", "assert (", {"a": 1}, "def check(candidate):\n    pass"])
def test_unreadable_tests_are_rejected(bad) -> None:
    with pytest.raises(ValueError):
        split_tests(bad)


# ---- scores ----

def test_correct_solution_scores_one(scorer) -> None:
    [score] = scorer(prompts=["p"], completions=[fenced("def add(a, b):\n    return a + b")], tests=[ADD_TESTS])
    assert score == Score(1.0, {"passed": 3.0, "total": 3.0, "timeout": 0.0, "crashed": 0.0, "format": 1.0})


def test_partly_correct_solution_scores_the_fraction(scorer) -> None:
    [score] = scorer(prompts=["p"], completions=[fenced("def add(a, b):\n    return a * b + (a == 0) * b")],
                     tests=[ADD_TESTS])
    assert score.value == pytest.approx(2 / 3) and score.parts["passed"] == 2.0 and score.error is None


def test_syntax_error_is_format_zero_not_an_error(scorer) -> None:
    [score] = scorer(prompts=["p"], completions=[fenced("def add(a, b) return a + b")], tests=[ADD_TESTS])
    assert (score.value, score.parts["format"], score.error) == (0.0, 0.0, None)


def test_empty_completion_is_format_zero(scorer) -> None:
    [score] = scorer(prompts=["p"], completions=["   "], tests=[ADD_TESTS])
    assert (score.value, score.parts["format"], score.parts["total"]) == (0.0, 0.0, 3.0)


def test_timeout_and_crash_are_parts(scorer) -> None:
    loop, crash = fenced("while True:\n    pass"), fenced("import os\nos._exit(0)")
    timeout, crashed = scorer(prompts=["p", "p"], completions=[loop, crash], tests=[ADD_TESTS, ADD_TESTS])
    assert (timeout.value, timeout.parts["timeout"], timeout.parts["crashed"]) == (0.0, 1.0, 0.0)
    assert (crashed.value, crashed.parts["timeout"], crashed.parts["crashed"]) == (0.0, 0.0, 1.0)


def test_chat_completions_are_read(scorer) -> None:
    completion = [{"role": "assistant", "content": fenced("def add(a, b):\n    return a + b")}]
    [score] = scorer(prompts=[[{"role": "user", "content": "add"}]], completions=[completion], tests=[ADD_TESTS])
    assert score.value == 1.0


def test_humaneval_style_prompt(scorer) -> None:
    check = "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(0) == 0"
    [score] = scorer(prompts=["p"], completions=[fenced("def double(x):\n    return 2 * x")], tests=[check],
                     entry_point=["double"])
    assert score.value == 1.0 and score.parts["total"] == 1.0


def test_unreadable_tests_are_a_score_error(scorer) -> None:
    [score] = scorer(prompts=["p"], completions=[fenced("x = 1")], tests=[None])
    assert score.value is None and "tests" in score.error


def test_sandbox_failure_is_a_score_error() -> None:
    result = RunResult(0, 3, "error", False, "the sandbox did not start (exit status 1)", 0.1, "bwrap")
    score = to_score(result)
    assert score.value is None and score.error.startswith("sandbox (bwrap): the sandbox did not start")


def test_grpo_reward_signature(scorer) -> None:
    """GRPOTrainer calls reward functions with completion_ids, every dataset column and trainer_state."""
    completion = [{"role": "assistant", "content": "```python\ndef add(a, b):\n    return a + b\n```"}]
    out = scorer(prompts=[[{"role": "user", "content": "write add"}]], completions=[completion],
                 completion_ids=[[1, 2]], tests=[ADD_TESTS], trainer_state=None, log_extra=None, log_metric=None)
    assert isinstance(out, list) and len(out) == 1 and isinstance(out[0], Score) and out[0].value == 1.0


def test_parallel_scoring_keeps_samples_in_order(scorer) -> None:
    right, wrong = fenced("def add(a, b):\n    return a + b"), fenced("def add(a, b):\n    return a * b")
    completions = [right if i % 3 else wrong for i in range(12)]
    scores = scorer(prompts=["p"] * 12, completions=completions, tests=[ADD_TESTS] * 12)
    assert [s.value for s in scores] == [1.0 if i % 3 else pytest.approx(1 / 3) for i in range(12)]


def test_config_names_it_with_kwargs() -> None:
    fn = build_scorer({"name": "code", "kwargs": {"timeout": 2.0, "workers": 1}})
    [score] = fn(prompts=["p"], completions=[fenced("def add(a, b):\n    return a + b")], tests=[ADD_TESTS])
    assert score.value == 1.0


def test_unknown_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown sandbox mode"):
        code_scorer(mode="docker")


def test_unavailable_mode_fails_at_once() -> None:
    with pytest.raises(SandboxUnavailable):
        code_scorer(mode="process", python="/nonexistent/python3")


def test_the_chosen_mode_and_what_it_leaves_open_are_said_in_one_line(capsys) -> None:
    scorer = code_scorer(mode="auto")
    assert capsys.readouterr().err == ""  # nothing while a config is checked...
    scorer(prompts=["p", "p"], completions=["x = 1", "x = 2"], tests=[["assert x"], ["assert x"]])
    scorer(prompts=["p"], completions=["x = 1"], tests=[["assert x"]])
    err = capsys.readouterr().err.strip().splitlines()  # ...one line when scoring starts, once
    assert len(err) == 1 and f"sandbox mode '{scorer.sandbox.mode}' (chosen by mode: auto)" in err[0]
    assert "does not protect against" in err[0]


def test_an_unavailable_explicit_mode_is_one_line_naming_the_key() -> None:
    from rsft.core.errors import RsftError

    with pytest.raises(RsftError) as e:
        code_scorer(mode="process", python="/nonexistent/python3")
    assert str(e.value).startswith("key 'scorer.kwargs.mode': sandbox mode 'process' cannot run here")
    assert "\n" not in str(e.value)
