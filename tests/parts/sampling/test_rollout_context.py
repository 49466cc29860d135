"""Rollouts that outgrow the model's context end the trajectory (`end: context`), never crash.

Tool output makes a conversation grow by more than the model said: preflight sees only the first turn.
Two tiny models from config, each with 64 positions and the real SmolLM2 tokenizer and chat template
(so the token counts are the ones a real run has): a GPT-2 (learned position table: past 64 it raises
IndexError) and a Llama (rotary: past 64 it samples on silently, out of what it was built for). The
environment answers every action with 150 characters and never ends the episode, so only the context
can end it before max_turns.
"""

from __future__ import annotations

import pytest
import torch

from rsft.core.records import Prompt
from rsft.inputs.data.formats import prompt_ids
from rsft.parts.metrics import trajectory_metrics
from rsft.parts.sampling.base import SamplingParams
from rsft.parts.sampling.rollout import AgentEngine, RolloutLimits
from rsft.parts.sampling.transformers_engine import TransformersEngine

pytestmark = pytest.mark.real_model
POSITIONS = 64


class Chatty:
    """Answers every action with 150 characters; never done."""

    def __init__(self, prompt: Prompt) -> None:
        pass

    def reset(self, prompt: Prompt) -> None:
        return None

    def step(self, action: str) -> tuple[str, bool, dict]:
        return "x" * 150, False, {}


def tiny(kind: str, vocab: int, eos: int) -> torch.nn.Module:
    """A random model whose head is a bias alone: <|im_end|> has probability 0.7 at every step and the
    rest is uniform, so actions are short and end on their own (an action cut at max_new_tokens would end
    the trajectory as `length`: 0.3^12 ≈ 5e-7 per action), whatever the CPU's float rounding."""
    import math

    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if kind == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=POSITIONS, n_embd=32, n_layer=1, n_head=2))
    else:
        model = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, max_position_embeddings=POSITIONS, hidden_size=32,
                                             intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                             num_key_value_heads=2, tie_word_embeddings=False))
    head = torch.nn.Linear(32, vocab, bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[eos] = math.log(0.7 / 0.3 * (vocab - 1))
    model.lm_head = head
    return model.eval()


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_a_turn_that_would_overrun_the_context_ends_the_trajectory(smol_dir, kind):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smol_dir)
    engine = TransformersEngine(tiny(kind, len(tok), tok.convert_tokens_to_ids("<|im_end|>")), tok)
    count = lambda p: len(prompt_ids(p, tok))  # noqa: E731
    agent = AgentEngine(engine, Chatty, RolloutLimits(max_turns=8, context=POSITIONS, count_tokens=count))
    prompts = [Prompt("a", messages=({"role": "user", "content": "List the files."},))]
    first = count(Prompt("q", messages=prompts[0].messages))
    assert first + 12 <= POSITIONS  # the first turn fits: preflight would pass this prompt
    (samples,) = agent.generate(prompts, 3, SamplingParams(max_new_tokens=12, seed=3, round=0, temperature=1.0))
    for s in samples:
        assert s.error is None and s.end == "context", (s.end, s.error)
        assert sum(t.role == "assistant" for t in s.turns) < 8  # the context ended it, not max_turns
        messages = list(prompts[0].messages)
        for t in s.turns:  # every action was drawn from a context that, with the action, fits the model
            if t.role == "assistant":
                assert count(Prompt("q", messages=tuple(messages))) + len(t.token_ids) <= POSITIONS
            messages.append({"role": t.role, "content": t.text})
    assert trajectory_metrics(samples)["ended_by_context"] == 1.0


def test_without_a_known_context_the_rollout_runs_to_its_own_limits(smol_dir):
    """The counterpart: the same Llama and environment with no context limit given run to max_turns, which
    is why the limit must reach the rollout (the Run passes the model's positions and tokenizer)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smol_dir)
    count = lambda p: len(prompt_ids(p, tok))  # noqa: E731
    model = tiny("llama", len(tok), tok.convert_tokens_to_ids("<|im_end|>"))
    agent = AgentEngine(TransformersEngine(model, tok), Chatty, RolloutLimits(max_turns=4))
    question = ({"role": "user", "content": "List the files."},)
    (samples,) = agent.generate([Prompt("a", messages=question)], 2,
                                SamplingParams(max_new_tokens=12, seed=3, round=0, temperature=1.0))
    for s in samples:
        assert s.end == "max_turns"
        before_last = question + tuple({"role": t.role, "content": t.text} for t in s.turns[:-2])
        assert count(Prompt("q", messages=before_last)) > POSITIONS  # its last action saw more than 64 positions


def test_a_turn_gets_only_the_room_the_context_has_left():
    """With a scripted engine (3 tokens per action, cut when given less): the turn whose prompt leaves 2
    positions is drawn with max_new_tokens 2, is cut, and ends the trajectory as `context`, not `length`."""
    from tests.parts.sampling.test_rollout import ScriptEngine

    class Quiet(Chatty):
        def step(self, action: str) -> tuple[str, bool, dict]:
            return "o", False, {}

    engine = ScriptEngine(tokens_per_action=3)
    sizes = {}

    def count(p: Prompt) -> int:  # 10 positions per message: 10, 20, 30 ... as the conversation grows
        sizes[p.id] = 10 * len(p.messages)
        return sizes[p.id]

    agent = AgentEngine(engine, Quiet, RolloutLimits(max_turns=9, context=32, count_tokens=count))
    (samples,) = agent.generate([Prompt("a", messages=({"role": "user", "content": "go"},))], 1,
                                SamplingParams(max_new_tokens=8, seed=1, round=0))
    (s,) = samples
    assert [len(t.token_ids) for t in s.turns if t.role == "assistant"] == [3, 2]  # room 32-10=22 -> 8; 32-30=2
    assert s.end == "context" and s.finish_reason == "length"
