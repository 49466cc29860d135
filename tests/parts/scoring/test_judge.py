"""The LLM-as-judge scorer against a scripted server: rubric, columns, parsing, and errors kept per sample.
The round trip with a real `vllm serve` is in tests/e2e/test_openai_vllm.py."""

from __future__ import annotations

import re

import pytest

from rsft.core.errors import ConfigError
from rsft.parts.scoring.judge import parse_reply
from rsft.parts.scoring.spec import build_scorer
from tests.inputs.serving.fake_server import FakeServer


@pytest.mark.parametrize("text, parse, value", [
    (" 7\n", "scale10", 0.7), ("Rating: 10", "scale10", 1.0), ("3.5 points", "number", 3.5),
    ("Yes, it is right.", "yesno", 1.0), ("no", "yesno", 0.0), ("score=0.25;", r"score=([\d.]+)", 0.25),
])
def test_replies_parse(text, parse, value):
    assert parse_reply(text, parse) == pytest.approx(value)


@pytest.mark.parametrize("text, parse", [("eleven", "scale10"), ("11", "scale10"), ("0", "scale10"),
                                         ("maybe", "yesno"), ("", "number"), ("x", r"score=(\d)")])
def test_replies_that_do_not_parse_raise(text, parse):
    with pytest.raises(ValueError):
        parse_reply(text, parse)


def rubric_reply(body):
    """A 'judge' that gives 9 to a completion equal to the answer in the rubric, 2 otherwise, '?' for 'x'."""
    m = re.search(r"ANSWER=(\S+) GOT=(\S*)", body["prompt"])
    if m.group(2) == "x":
        return "?"
    return "9" if m.group(1) == m.group(2) else "2"


def test_the_judge_fills_the_rubric_and_keeps_failures_per_sample():
    with FakeServer(None, reply=rubric_reply) as server:
        scorer = build_scorer({"name": "judge", "kwargs": {"base_url": server.base_url,
                                                          "template": "ANSWER={answer} GOT={completion}"}})
        scores = scorer(prompts=["1+1=", "2+2=", "3+3="], completions=["2", "5", "x"], answer=["2", "4", "6"])
    assert [s.value for s in scores[:2]] == [0.9, 0.2]
    assert scores[2].value is None and "did not parse" in scores[2].error
    assert [b["prompt"] for b in server.bodies].count("ANSWER=2 GOT=2") == 1 and server.bodies[0]["model"] == "m"
    assert all(b["temperature"] == 0.0 for b in server.bodies)


def test_the_judge_composes_behind_a_format_gate():
    with FakeServer(None, reply=rubric_reply) as server:
        scorer = build_scorer({"combine": "gate", "gate": {"name": "regex", "kwargs": {"pattern": "^[0-9]+$"}},
                               "then": {"name": "judge", "kwargs": {"base_url": server.base_url,
                                                                   "template": "ANSWER={answer} GOT={completion}"}}})
        scores = scorer(prompts=["a", "b"], completions=["4", "four"], answer=["4", "4"])
    assert scores[0].value == pytest.approx(0.9) and scores[1].value == 0.0
    assert len(server.bodies) == 1  # the malformed one never reached the judge


def test_a_failing_judge_server_is_an_error_on_each_sample():
    with FakeServer(None, reply=rubric_reply, fail=lambda body: 503) as server:
        scorer = build_scorer({"name": "judge", "kwargs": {"base_url": server.base_url, "retries": 1,
                                                          "template": "ANSWER={answer} GOT={completion}"}})
        scores = scorer(prompts=["a"], completions=["1"], answer=["1"])
    assert scores[0].value is None and "HTTP 503" in scores[0].error


@pytest.mark.parametrize("kwargs, needle", [({}, "exactly one of base_url or serve"),
                                            ({"base_url": "http://127.0.0.1:9/v1", "template": "no slot"},
                                             "must contain {completion}"),
                                            ({"base_url": "http://127.0.0.1:9/v1", "parse": "(["}, "parse")])
def test_bad_judge_settings_are_one_line(kwargs, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        build_scorer({"name": "judge", "kwargs": kwargs})
