"""The environment protocol and the multi-turn rollout, with a scripted environment.

The engine here is scripted too (actions are a function of the conversation so far): these
tests are about the loop around the engine, what it asks and what it records. The real tiny
model draws trajectories in tests/inputs/tasks/test_ctf_run.py.
"""

from __future__ import annotations

import pytest

from rsft.core.errors import ConfigError
from rsft.core.records import Prompt, Sample
from rsft.parts.sampling.base import SamplingParams
from rsft.parts.sampling.rollout import AgentEngine, RolloutLimits, build_env


class CountingEnv:
    """Done when the agent says the number of tool messages it has seen so far; `boom` raises."""

    def __init__(self, prompt: Prompt, goal: int = 2) -> None:
        self.goal, self.steps = goal, 0

    def reset(self, prompt: Prompt) -> str | None:
        return f"reach {self.goal}"

    def step(self, action: str) -> tuple[str, bool, dict]:
        self.steps += 1
        if action == "boom":
            raise RuntimeError("tool crashed")
        return f"obs{self.steps}", action == f"say {self.goal}", {"step": self.steps}


class ScriptEngine:
    """Says "say N" where N counts the tool messages so far; "boom" when the prompt id asks; records calls."""

    name, precision = "script", "none"

    def __init__(self, tokens_per_action: int = 3) -> None:
        self.calls: list[list[str]] = []
        self.tokens = tokens_per_action

    def generate(self, prompts, n, params):
        assert n == 1  # one action per live trajectory per call
        self.calls.append([p.id for p in prompts])
        out = []
        for p in prompts:
            tools = sum(m["role"] == "tool" for m in p.messages)
            text = "boom" if p.id.startswith("boom/") and tools == 0 else f"say {tools}"
            cut = params.max_new_tokens < self.tokens
            out.append([Sample(p.id, 0, text, tuple(range(min(self.tokens, params.max_new_tokens))), -1.0, 0.5,
                               "length" if cut else "stop")])
        return out


PARAMS = SamplingParams(max_new_tokens=8, seed=1, round=2)


def test_trajectories_alternate_actions_and_observations_until_the_env_says_done():
    engine = ScriptEngine()
    agent = AgentEngine(engine, lambda p: CountingEnv(p, goal=2), RolloutLimits(max_turns=5))
    groups = agent.generate([Prompt("a", text="go"), Prompt("b", messages=({"role": "user", "content": "go"},))],
                            2, PARAMS)
    assert [[s.index for s in g] for g in groups] == [[0, 1], [0, 1]]
    s = groups[0][1]
    assert [(t.role, t.text) for t in s.turns] == [
        ("user", "reach 2"), ("assistant", "say 0"), ("tool", "obs1"), ("assistant", "say 1"), ("tool", "obs2"),
        ("assistant", "say 2"), ("tool", "obs3")]
    assert s.text == "say 2" and s.end == "done" and s.finish_reason == "stop"
    assert s.actions == ("say 0", "say 1", "say 2") and s.num_tokens == 9 and s.logprob == -3.0
    assert s.turns[2].info == {"step": 1}
    # one engine call per turn, holding every live trajectory; each action has its own prompt id (its seed)
    assert engine.calls == [[f"{p}/{i}/{t}" for p in "ab" for i in (0, 1)] for t in range(3)]
    assert Sample.from_json(s.to_json()) == s  # trajectories round-trip through the run directory


def test_turn_and_token_limits_end_a_trajectory_and_say_why():
    never = lambda p: CountingEnv(p, goal=99)  # noqa: E731
    s = AgentEngine(ScriptEngine(), never, RolloutLimits(max_turns=3)).generate([Prompt("a", text="x")], 1, PARAMS)[0][0]
    assert s.end == "max_turns" and s.finish_reason == "length" and len(s.actions) == 3
    s = AgentEngine(ScriptEngine(), never, RolloutLimits(max_turns=9, max_tokens=7)).generate(
        [Prompt("a", text="x")], 1, PARAMS)[0][0]
    # 3 + 3 tokens, then 1 left: the third action is asked with max_new_tokens=1 and cut there
    assert s.end == "length" and s.num_tokens == 7 and len(s.actions) == 3
    s = AgentEngine(ScriptEngine(), never, RolloutLimits(max_turns=9, max_tokens=6)).generate(
        [Prompt("a", text="x")], 1, PARAMS)[0][0]
    assert s.end == "max_tokens" and s.num_tokens == 6 and s.finish_reason == "length"


def test_an_environment_that_raises_is_an_observation_not_a_crash():
    engine = ScriptEngine()
    s = AgentEngine(engine, lambda p: CountingEnv(p, goal=1)).generate([Prompt("boom", text="x")], 1, PARAMS)[0][0]
    assert s.turns[1].text == "boom" and s.turns[2].text == "error: RuntimeError: tool crashed"
    assert s.turns[2].info == {"error": "RuntimeError: tool crashed"}
    assert s.end == "done" and s.text == "say 1"


class BrokenEnv(CountingEnv):
    """Fails to start for prompt 'bad'; reports info JSON cannot write; closes with an error."""

    def __init__(self, prompt: Prompt, goal: int = 1) -> None:
        if prompt.id == "bad":
            raise OSError("no such episode")
        super().__init__(prompt, goal)

    def step(self, action: str) -> tuple[str, bool, dict]:
        obs, done, _ = super().step(action)
        return obs, done, {"when": object()}

    def close(self) -> None:
        raise RuntimeError("close failed")


def test_an_environment_that_cannot_start_is_an_errored_trajectory_and_info_stays_writable():
    groups = AgentEngine(ScriptEngine(), BrokenEnv).generate([Prompt("ok", text="x"), Prompt("bad", text="y")], 1,
                                                             PARAMS)
    good, bad = groups[0][0], groups[1][0]
    assert good.end == "done" and isinstance(good.turns[-1].info["when"], str)
    assert Sample.from_json(good.to_json()) == good
    assert bad.end == "error" and bad.finish_reason == "error" and bad.error.startswith("environment: OSError")
    assert bad.turns == ()


def test_environments_resolve_through_the_registry_with_checked_options():
    make = build_env("tests.parts.sampling.test_rollout:CountingEnv", {"goal": 3})
    assert make(Prompt("a", text="x")).goal == 3
    with pytest.raises(ConfigError, match="rollout.env_options.*colour"):
        build_env("tests.parts.sampling.test_rollout:CountingEnv", {"colour": 1})
    with pytest.raises(ConfigError, match="unknown env 'nope'.*ctf"):
        build_env("nope")
    assert build_env(None) is None
    # options for the task's own environment (no rollout.env) are checked against it too
    assert build_env(None, {"goal": 4}, default=CountingEnv)(Prompt("a", text="x")).goal == 4
    with pytest.raises(ConfigError, match="rollout.env_options.*colour"):
        build_env(None, {"colour": 1}, default=CountingEnv)


def test_a_trajectory_does_not_depend_on_its_batch(tmp_path):
    """The real tiny engine at T=1: prompt b's trajectories are the same drawn alone or beside others."""
    from rsft.core.config import TinyModelConfig
    from rsft.inputs.tasks.ctf import ALPHABET, CHAT_TEMPLATE
    from rsft.inputs.tasks.tiny_model import build_tiny
    from rsft.parts.sampling.transformers_engine import TransformersEngine

    path = build_tiny(tmp_path / "m", ALPHABET, TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2,
                                                                max_position_embeddings=256),
                      chat_template=CHAT_TEMPLATE)
    agent = AgentEngine(TransformersEngine.from_path(str(path)), lambda p: CountingEnv(p, goal=9),
                        RolloutLimits(max_turns=3))
    params = SamplingParams(temperature=1.0, max_new_tokens=6, seed=5, round=1)
    prompts = [Prompt(x, messages=({"role": "user", "content": f"files: {x}"},)) for x in ("a", "b", "c")]
    together = agent.generate(prompts, 2, params)[1]
    alone = agent.generate(prompts[1:2], 2, params)[0]
    assert [s.actions for s in together] == [s.actions for s in alone]
    assert together[0].actions != together[1].actions  # two draws, not one copied
