"""Multi-turn rollouts: agent trajectories through an environment, drawn by any engine.

An environment (`Env`) is the multi-turn counterpart of a task's prompt:
``reset(prompt) -> observation`` starts an episode, ``step(action) -> (observation,
done, info)`` answers one action. `AgentEngine` wraps any engine and is itself an
engine, so the sample stage, the allocations, evaluation and the warm start's check
draw trajectories through the same ``generate(prompts, n, params)`` call as
single completions. Per turn it

1. renders each live trajectory's conversation through the tokenizer's chat template
   (`Prompt` with messages, as TRL renders conversational rows) and generates one
   action for all of them in one engine batch, up to EOS / a stop string;
2. hands each action to its environment (in a thread pool: tools run in subprocesses)
   and appends the observation as a ``tool`` message;

until the environment says done, `max_turns` actions, `max_tokens` generated, or the conversation
no longer fits the model's context (``end: context``: a turn's room is cut to what the context has
left, and a turn with no room is not drawn; without this a position-embedding model indexes past
its table and the stage crashes).

Seeds are per action: turn t of trajectory i of prompt p is drawn as the prompt
``p/i/t`` (see `sample_seed`), so a trajectory does not depend on its batch and a
resumed stage redraws exactly what an uninterrupted one would.

The text convention is the environment's: it receives the action text and parses it
(the built-in ``ctf`` task reads a shell command, or ``submit FLAG``). What this does
not do: parse structured (JSON) tool calls, or pass tool schemas to the chat template.
An environment that raises is an observation (``error: ...``), never a crashed run.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from rsft.core.errors import ConfigError
from rsft.core.records import Prompt, Sample, Turn
from rsft.core.registry import check_options, lookup
from rsft.parts.sampling.base import Engine, SamplingParams


class Env(Protocol):
    """One episode's environment. `close()` is optional (looked up with getattr)."""

    def reset(self, prompt: Prompt) -> str | None:
        """Start the episode; a returned text is the opening observation (a user message)."""
        ...

    def step(self, action: str) -> tuple[str, bool, dict[str, Any]]:
        """Carry out one action: the observation (a tool message), whether the episode is over, and info."""
        ...


EnvFactory = Callable[[Prompt], Env]


@dataclass(frozen=True)
class RolloutLimits:
    max_turns: int = 6  # actions per trajectory
    max_tokens: int | None = None  # generated tokens per trajectory; default max_turns × max_new_tokens
    workers: int = 4  # environments stepped at once
    context: int | None = None  # the model's positions: a turn's prompt plus its action must fit
    count_tokens: Callable[[Prompt], int] | None = None  # a turn's prompt, in the model's tokens


@dataclass
class _Episode:
    prompt: Prompt
    index: int
    env: Env
    messages: list[dict[str, Any]]
    turns: list[Turn] = field(default_factory=list)
    tokens: int = 0
    entropy_sum: float = 0.0
    entropy_tokens: int = 0
    end: str | None = None
    error: str | None = None
    context_bound: bool = False  # this turn's room was cut to what the context had left


class AgentEngine:
    """An engine that draws whole trajectories: `engine` generates the actions, `make_env` answers them."""

    def __init__(self, engine: Engine, make_env: EnvFactory, limits: RolloutLimits = RolloutLimits()) -> None:
        self.engine, self.make_env, self.limits = engine, make_env, limits
        self.name = getattr(engine, "name", type(engine).__name__)
        self.precision = getattr(engine, "precision", "unknown")

    def generate(self, prompts: list[Prompt], n: int, params: SamplingParams) -> list[list[Sample]]:
        budget = self.limits.max_tokens or self.limits.max_turns * params.max_new_tokens
        with ThreadPoolExecutor(max_workers=self.limits.workers) as pool:
            episodes = list(pool.map(lambda pi: self._start(*pi),
                                     [(p, params.first_index + i) for p in prompts for i in range(n)]))
            try:
                self._play(episodes, params, budget, pool)
            finally:
                for e in episodes:
                    _close(e.env)
        samples = [self._sample(e) for e in episodes]
        return [samples[i * n:(i + 1) * n] for i in range(len(prompts))]

    def _play(self, episodes: list[_Episode], params: SamplingParams, budget: int, pool: ThreadPoolExecutor) -> None:
        """Turns until every episode has ended: one engine batch of actions, then every environment's answer."""
        for turn in range(self.limits.max_turns):
            live = [e for e in episodes if e.end is None]
            if not live:
                break
            for e in live:
                if e.tokens >= budget:
                    e.end = "max_tokens"
            live = [e for e in live if e.end is None]
            by_room: dict[int, list[tuple[_Episode, Prompt]]] = {}  # one engine call per remaining-room size
            for e in live:
                asked = Prompt(f"{e.prompt.id}/{e.index}/{turn}", messages=tuple(e.messages), fields=e.prompt.fields)
                room = min(params.max_new_tokens, budget - e.tokens)
                left = self._context_left(asked)
                if left is not None and left < room:
                    e.context_bound = True
                    room = left
                if room < 1:
                    e.end = "context"  # the conversation has outgrown the model: no turn, never a crash
                    continue
                by_room.setdefault(room, []).append((e, asked))
            for room, pairs in by_room.items():
                group, asked = [e for e, _ in pairs], [a for _, a in pairs]
                drawn = self.engine.generate(asked, 1, dataclasses.replace(params, first_index=0,
                                                                           max_new_tokens=room))
                for e, (s,) in zip(group, drawn, strict=True):
                    self._act(e, s)
            acting = [e for e in live if e.end is None]
            for e, (obs, done, info) in zip(acting, pool.map(self._step, acting)):
                e.turns.append(Turn("tool", obs, info=info))
                e.messages.append({"role": "tool", "content": obs})
                if done:
                    e.end = "done"
        for e in episodes:
            if e.end is None:
                e.end = "max_turns"

    def _context_left(self, asked: Prompt) -> int | None:
        """Positions left for the action after this turn's prompt (None: no limit known)."""
        if self.limits.context is None or self.limits.count_tokens is None:
            return None
        return self.limits.context - self.limits.count_tokens(asked)

    def _start(self, prompt: Prompt, index: int) -> _Episode:
        """A new episode; an environment that fails to start makes the trajectory an error (never trained on)."""
        messages = list(prompt.messages) if prompt.messages is not None else [{"role": "user", "content": prompt.text}]
        try:
            env = self.make_env(prompt)
            opening = env.reset(prompt)
        except Exception as ex:  # noqa: BLE001 - a user's environment: its failure is data, not a crash
            episode = _Episode(prompt, index, None, messages)  # type: ignore[arg-type]
            episode.end, episode.error = "error", f"environment: {type(ex).__name__}: {ex}"
            return episode
        episode = _Episode(prompt, index, env, messages)
        if opening:
            episode.turns.append(Turn("user", opening))
            messages.append({"role": "user", "content": opening})
        return episode

    @staticmethod
    def _act(e: _Episode, s: Sample) -> None:
        """Record the action drawn; a failed draw or an action cut at its token limit ends the episode."""
        e.turns.append(Turn("assistant", s.text, s.token_ids, s.logprob))
        e.messages.append({"role": "assistant", "content": s.text})
        e.tokens += s.num_tokens
        if s.entropy is not None and s.num_tokens:
            e.entropy_sum += s.entropy * s.num_tokens
            e.entropy_tokens += s.num_tokens
        if s.error is not None:
            e.end, e.error = "error", s.error
        elif s.finish_reason == "length":
            e.end = "context" if e.context_bound else "length"

    @staticmethod
    def _step(e: _Episode) -> tuple[str, bool, dict[str, Any]]:
        try:
            obs, done, info = e.env.step(e.turns[-1].text)
            # what the run directory can hold: info that JSON cannot write is kept as text
            return str(obs), bool(done), json.loads(json.dumps(dict(info or {}), default=str))
        except Exception as ex:  # noqa: BLE001 - an environment's failure is what the agent observes
            return f"error: {type(ex).__name__}: {ex}", False, {"error": f"{type(ex).__name__}: {ex}"}

    @staticmethod
    def _sample(e: _Episode) -> Sample:
        actions = [t for t in e.turns if t.role == "assistant"]
        logprobs = [t.logprob for t in actions]
        return Sample(
            e.prompt.id, e.index, actions[-1].text if actions else "",
            tuple(i for t in actions for i in t.token_ids),
            sum(logprobs) if logprobs and None not in logprobs else None,  # type: ignore[arg-type]
            e.entropy_sum / e.entropy_tokens if e.entropy_tokens else None,
            "stop" if e.end == "done" else "error" if e.end == "error" else "length",
            error=e.error, turns=tuple(e.turns), end=e.end,
        )


def _close(env: Any) -> None:
    close = getattr(env, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # noqa: BLE001, S110 - a failing close must not lose the batch's trajectories
            pass


def build_env(spec: Any, options: dict[str, Any] | None = None, default: EnvFactory | None = None,
              key: str = "rollout.env") -> EnvFactory | None:
    """The environment factory a config names (a built-in or 'module:Class'), called as
    ``factory(prompt, **options)``; None and no default: the task is single-turn."""
    if spec is None and default is None:
        if options:
            raise ConfigError(f"key '{key}_options': set, but there is no environment (set {key})")
        return None
    factory = default if spec is None else lookup("env", spec, key)
    if not callable(factory):
        raise ConfigError(f"key '{key}': {spec!r} is not callable")
    name = spec if spec is not None else getattr(factory, "__name__", "of the task")
    checked = check_options(factory, options or {}, f"{key}_options", skip=1, what=f"environment {name!r}")
    return lambda prompt: factory(prompt, **checked)

