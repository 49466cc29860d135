"""Chat prompts on the real SmolLM2 tokenizer: what an engine is given (`prompt_ids`) and what the agent path
renders per turn. Every expected string is written out by hand from SmolLM2's ChatML template."""

from __future__ import annotations

import pytest

from rsft.core.records import Prompt
from rsft.inputs.data.formats import end_of_turn_token, prompt_ids, render_prompt

pytestmark = pytest.mark.real_model

DEFAULT_SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"


@pytest.fixture(scope="module")
def tok(smol_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smol_dir)


def decoded(tok, ids):
    return tok.decode(ids, skip_special_tokens=False)


def test_the_templates_default_system_prompt_is_added_once(tok):
    ids = prompt_ids(Prompt("p", messages=({"role": "user", "content": "What is 7 + 5?"},)), tok)
    assert decoded(tok, ids) == DEFAULT_SYSTEM + "<|im_start|>user\nWhat is 7 + 5?<|im_end|>\n<|im_start|>assistant\n"


def test_a_users_system_prompt_replaces_the_default(tok):
    p = Prompt("p", messages=({"role": "system", "content": "Answer with a number."},
                              {"role": "user", "content": "7 + 5?"}))
    text = decoded(tok, prompt_ids(p, tok))
    assert text == ("<|im_start|>system\nAnswer with a number.<|im_end|>\n<|im_start|>user\n7 + 5?<|im_end|>\n"
                    "<|im_start|>assistant\n")
    assert "SmolLM" not in text


def test_the_generation_prompt_is_where_the_completion_starts(tok):
    p = Prompt("p", messages=({"role": "user", "content": "hi"},))
    assert render_prompt(p, tok).endswith("<|im_end|>\n<|im_start|>assistant\n")
    ids = prompt_ids(p, tok)
    assert tok.convert_ids_to_tokens(ids[-4:]) == ["<|im_start|>", "ass", "istant", "Ċ"]  # as BPE splits it


def test_a_template_that_starts_with_the_bos_token_gets_no_second_one(tok):
    """<|im_start|> is this tokenizer's BOS and the template's first token. A tokenizer whose post-processor
    also adds a BOS (as many Llama tokenizers do) must not give a chat prompt two of them; a text prompt gets
    the tokenizer's own BOS, once."""
    from tokenizers import processors

    assert tok.bos_token == "<|im_start|>" and tok.bos_token_id == 1
    chat = Prompt("p", messages=({"role": "user", "content": "hi"},))
    assert prompt_ids(chat, tok)[:2] == [1, tok.convert_tokens_to_ids("system")]
    adds_bos = tok.__class__.from_pretrained(tok.name_or_path)
    adds_bos.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<|im_start|> $A", special_tokens=[("<|im_start|>", 1)])
    assert adds_bos("x")["input_ids"][0] == 1  # it does add one to plain text
    ids = prompt_ids(chat, adds_bos)
    assert ids[:2] == [1, tok.convert_tokens_to_ids("system")] and ids == prompt_ids(chat, tok)
    assert prompt_ids(Prompt("t", text="x"), adds_bos) == [1, *tok("x")["input_ids"]]
    assert prompt_ids(Prompt("t", text="x"), tok) == tok("x")["input_ids"]  # this tokenizer adds none


def test_the_end_of_turn_token_is_read_from_the_template(tok):
    assert end_of_turn_token(tok) == "<|im_end|>"
    no_template = tok.__class__.from_pretrained(tok.name_or_path)
    no_template.chat_template = None
    assert end_of_turn_token(no_template) is None


def test_the_agent_path_renders_each_turn_with_the_tool_output_before_the_next_action(tok):
    """The rollout hands the engine the conversation so far as chat messages (`rsft.parts.sampling.rollout`): the
    prompt, every action and every tool reply, then the generation prompt for the next action."""
    from rsft.core.records import Sample
    from rsft.parts.sampling.base import SamplingParams
    from rsft.parts.sampling.rollout import AgentEngine, RolloutLimits

    seen: list[str] = []

    class Recorder:
        name, precision = "recorder", "none"

        def generate(self, prompts, n, params):
            seen.extend(decoded(tok, prompt_ids(p, tok)) for p in prompts)
            return [[Sample(p.id, 0, f"ls {len(seen)}", (1,), 0.0, None, "stop")] for p in prompts]

    class Env:
        def __init__(self, prompt):
            self.turn = 0

        def reset(self, prompt):
            return None

        def step(self, action):
            self.turn += 1
            return f"out {self.turn}", self.turn == 2, {}

    engine = AgentEngine(Recorder(), Env, RolloutLimits(max_turns=3))
    engine.generate([Prompt("p", messages=({"role": "user", "content": "find the flag"},))], 1, SamplingParams())
    head = DEFAULT_SYSTEM + "<|im_start|>user\nfind the flag<|im_end|>\n"
    assert seen == [
        head + "<|im_start|>assistant\n",
        head + "<|im_start|>assistant\nls 1<|im_end|>\n<|im_start|>tool\nout 1<|im_end|>\n<|im_start|>assistant\n",
    ]


def test_training_agent_trajectories_needs_a_template_with_assistant_masks(smol_dir, tmp_path):
    """SmolLM2's template has no {% generation %} markers and TRL cannot patch it, so TRL cannot mask the tool
    output of a trajectory: the run says so in one line before any work."""
    from transformers import AutoTokenizer

    from rsft.core.config import build_config
    from rsft.core.errors import ConfigError
    from rsft.loop.preflight import check_agent
    from rsft.stages.run import Run

    cfg = build_config({"model": {"path": str(smol_dir)}, "task": {"name": "ctf"}, "output_dir": str(tmp_path)})
    with pytest.raises(ConfigError) as err:
        check_agent(Run(cfg, tmp_path / "r"), AutoTokenizer.from_pretrained(smol_dir))
    assert "generation" in str(err.value) and "\n" not in str(err.value)
