from __future__ import annotations

import pytest

from rsft.core.errors import ConfigError
from rsft.core.records import Group, Prompt, Sample, Score
from rsft.parts.scoring.base import score_groups, to_score
from rsft.parts.scoring.spec import build_scorer


def groups() -> list[Group]:
    out = []
    for i in range(3):
        p = Prompt(f"p{i}", text=f"q{i}", fields={"answer": str(i), "extra": i * 10})
        out.append(Group(p, tuple(Sample(p.id, j, f"{i if j == 0 else 'x'}") for j in range(2))))
    return out


def exact(prompts, completions, answer, **kwargs):
    return [float(c == a) for c, a in zip(completions, answer)]


def test_fields_reach_the_scorer_aligned_with_completions():
    scored = score_groups(exact, groups())
    assert [[s.value for s in g.scores] for g in scored] == [[1.0, 0.0]] * 3


def test_only_accepted_kwargs_are_passed():
    def strict(prompts, completions, extra):  # no **kwargs, no answer, no completion_ids
        return [float(e) for e in extra]

    scored = score_groups(strict, groups())
    assert [g.scores[0].value for g in scored] == [0.0, 10.0, 20.0]


def test_one_failing_sample_becomes_an_error_on_that_sample():
    def fragile(prompts, completions, **kw):
        if "x" in completions and len(completions) > 1:
            raise RuntimeError("batch failed")  # forces the one-by-one retry
        return [1.0 if c != "x" else 1 / 0 for c in completions]

    scored = score_groups(fragile, groups())
    assert [s.value for s in scored[0].scores] == [1.0, None]
    assert scored[0].scores[1].error.startswith("ZeroDivisionError")


def test_none_and_nan_are_errors_not_zeros():
    assert to_score(None).error and to_score(float("nan")).error and to_score("1").error
    assert to_score(0.0) == Score(0.0)
    assert to_score({"value": 0.5, "parts": {"format": 1.0}}).parts == {"format": 1.0}


def test_wrong_length_is_an_error_per_sample():
    scored = score_groups(lambda prompts, completions, **k: [1.0] * (len(completions) + 1), groups())
    assert all(not s.ok and "returned 7 values for 6 completions" in s.error for g in scored for s in g.scores)


def test_a_scorer_that_always_returns_one_value_is_not_believed_one_by_one():
    # a retry per sample would see one value for one completion and accept 1.0 for every sample
    scored = score_groups(lambda prompts, completions, **k: [1.0], groups())
    assert all(not s.ok and "returned 1 values for 6 completions" in s.error for g in scored for s in g.scores)


def test_build_scorer_names(tmp_path, monkeypatch):
    (tmp_path / "myscorers.py").write_text(
        "def length(prompts, completions, **kw):\n    return [float(len(c)) for c in completions]\n"
        "def make(scale):\n    return lambda prompts, completions, **kw: [scale] * len(completions)\n"
    )
    monkeypatch.chdir(tmp_path)
    assert build_scorer("myscorers:length")(prompts=["a"], completions=["abc"]) == [3.0]
    assert build_scorer({"name": "myscorers:make", "kwargs": {"scale": 2.0}})(prompts=["a"], completions=["b"]) == [2.0]
    assert build_scorer("addition") is not None
    with pytest.raises(ConfigError, match="no attribute 'nope'"):
        build_scorer("myscorers:nope")
    with pytest.raises(ConfigError, match="cannot import module"):
        build_scorer("not_a_module_xyz:f")
    with pytest.raises(ConfigError, match="unknown scorer"):
        build_scorer("bogus")
