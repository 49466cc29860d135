from __future__ import annotations

import pytest

from rsft.core.errors import ConfigError
from rsft.parts.scoring.spec import build_scorer

FMT = {"name": "regex", "kwargs": {"pattern": "^#### "}}
ANS = {"name": "numeric"}


def run(spec, completions, **fields):
    return build_scorer(spec)(prompts=[""] * len(completions), completions=completions, **fields)


def test_weighted_sum_and_parts():
    out = run({"combine": "sum", "scorers": [FMT, ANS], "weights": [0.2, 0.8]},
              ["#### 5", "#### 6", "5"], answer=[5, 5, 5])
    assert [round(s.value, 6) for s in out] == [1.0, 0.2, 0.8]
    assert out[0].parts["regex"] == 1.0 and out[0].parts["numeric.correct"] == 1.0


def test_gate_needs_the_format_first():
    out = run({"combine": "gate", "gate": FMT, "then": ANS}, ["#### 5", "5", "#### 4"], answer=[5, 5, 5])
    assert [s.value for s in out] == [1.0, 0.0, 0.0]
    assert out[1].parts["gate"] == 0.0 and "numeric" not in out[1].parts  # never scored


def test_max_min_and_nesting():
    nested = {"combine": "max", "scorers": [{"combine": "min", "scorers": [FMT, ANS]}, {"name": "match"}]}
    out = run(nested, ["#### 5", "5", "x"], answer=["5", "5", "5"])
    assert [s.value for s in out] == [1.0, 1.0, 0.0]


def test_a_child_error_is_an_error_on_that_sample(tmp_path, monkeypatch):
    (tmp_path / "flaky.py").write_text(
        "def f(prompts, completions, **kw):\n    return [1/0 if c == 'boom' else 1.0 for c in completions]\n")
    monkeypatch.chdir(tmp_path)
    out = run({"combine": "sum", "scorers": ["flaky:f", ANS]}, ["#### 5", "boom"], answer=[5, 5])
    assert out[0].value == 2.0 and out[1].value is None and "ZeroDivisionError" in out[1].error


@pytest.mark.parametrize("spec, needle", [
    ({"combine": "avg", "scorers": [ANS]}, "unknown combination 'avg'"),
    ({"combine": "sum", "scorers": [ANS], "weights": [1, 2]}, "expected 1 numbers"),
    ({"combine": "gate", "gate": FMT}, "needs 'gate' and 'then'"),
    ({"combine": "sum", "scorers": [{"name": "nope"}]}, "scorer.scorers.0"),
    ({"name": "numeric", "kwargs": {"bogus": 1}}, "unexpected keyword argument 'bogus'"),
])
def test_bad_combinations_name_the_key(spec, needle):
    with pytest.raises(ConfigError, match=needle):
        build_scorer(spec)
