import pytest

from rsft.core.records import Group, Prompt, Sample, Score


def test_group_round_trips_through_json():
    p = Prompt("a", text="1+1=", fields={"answer": 2})
    g = Group(p, (Sample("a", 0, "2", (5, 2), -1.5, 0.3, "stop"),), (Score(1.0, {"format": 1.0}, answer="2"),))
    assert Group.from_json(g.to_json()) == g


def test_chat_prompt_round_trips():
    p = Prompt("c", messages=({"role": "user", "content": "hi"},))
    assert Prompt.from_json(p.to_json()) == p and p.is_chat


def test_prompt_needs_exactly_one_of_text_or_messages():
    with pytest.raises(ValueError):
        Prompt("x")
    with pytest.raises(ValueError):
        Prompt("x", text="a", messages=({"role": "user", "content": "b"},))


def test_group_rejects_score_count_mismatch():
    p = Prompt("a", text="q")
    with pytest.raises(ValueError):
        Group(p, (Sample("a", 0, "x"), Sample("a", 1, "y")), (Score(1.0),))
