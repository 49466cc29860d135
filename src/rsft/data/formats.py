"""How prompts become model input, and how kept samples become SFT rows.

Plain-text prompts are fed as they are. Chat prompts are rendered with the
tokenizer's chat template (generation prompt added). Completions reach scorers
in TRL's convention: a string for a text prompt, a one-message assistant list
for a chat prompt. SFT rows use TRL's prompt/completion format in both cases,
so SFTTrainer masks the prompt tokens without any help from us.
"""

from __future__ import annotations

from typing import Any

from rsft.errors import RsftError
from rsft.records import Prompt


def render_prompt(prompt: Prompt, tokenizer: Any) -> str:
    if prompt.text is not None:
        return prompt.text
    if not getattr(tokenizer, "chat_template", None):
        raise RsftError(
            f"prompt {prompt.id!r} is a chat (messages) prompt but the model's tokenizer has no chat template; "
            "give plain-text prompts or a model with a chat template"
        )
    return tokenizer.apply_chat_template(list(prompt.messages), tokenize=False, add_generation_prompt=True)


def scorer_prompt(prompt: Prompt) -> str | list[dict[str, Any]]:
    return list(prompt.messages) if prompt.messages is not None else prompt.text


def scorer_completion(prompt: Prompt, text: str) -> str | list[dict[str, Any]]:
    return [{"role": "assistant", "content": text}] if prompt.is_chat else text


def completion_text(completion: str | list[dict[str, Any]]) -> str:
    """The text of a completion in either TRL convention (string or assistant message list)."""
    if isinstance(completion, list):
        return str(completion[-1].get("content", "")) if completion else ""
    return str(completion)


def sft_row(prompt: Prompt, completion: str) -> dict[str, Any]:
    """A TRL prompt/completion row (conversational when the prompt is chat)."""
    return {"prompt": scorer_prompt(prompt), "completion": scorer_completion(prompt, completion)}
