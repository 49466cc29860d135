"""How prompts become model input, and how kept samples become SFT rows.

Engines take their prompt ids from `prompt_ids`, which tokenizes exactly as
TRL's SFTTrainer does for prompt/completion rows, so the policy samples from
the context it is trained on: a plain-text prompt through the tokenizer with
its special tokens (a BOS where the tokenizer adds one); a chat prompt through
the chat template (generation prompt added), with no special tokens added on
top, since the template writes its own (a second BOS otherwise). Completions reach scorers
in TRL's convention: a string for a text prompt, a one-message assistant list
for a chat prompt. SFT rows use TRL's prompt/completion format in both cases,
so SFTTrainer masks the prompt tokens without any help from us.
"""

from __future__ import annotations

from typing import Any

from rsft.core.errors import RsftError
from rsft.core.records import Prompt, Sample


def render_prompt(prompt: Prompt, tokenizer: Any) -> str:
    """The prompt as text: itself, or its messages through the chat template (generation prompt added)."""
    if prompt.text is not None:
        return prompt.text
    if not getattr(tokenizer, "chat_template", None):
        raise RsftError(
            f"prompt {prompt.id!r} is a chat (messages) prompt but the model's tokenizer has no chat template; "
            "give plain-text prompts or a model with a chat template"
        )
    return tokenizer.apply_chat_template(list(prompt.messages), tokenize=False, add_generation_prompt=True)


def prompt_ids(prompt: Prompt, tokenizer: Any) -> list[int]:
    """The token ids a model is given for a prompt: what TRL's SFT puts before the completion."""
    if prompt.text is not None:
        return list(tokenizer(prompt.text)["input_ids"])
    text = render_prompt(prompt, tokenizer)  # checks that there is a template
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def scorer_prompt(prompt: Prompt) -> str | list[dict[str, Any]]:
    return list(prompt.messages) if prompt.messages is not None else prompt.text


def scorer_completion(prompt: Prompt, text: str) -> str | list[dict[str, Any]]:
    return [{"role": "assistant", "content": text}] if prompt.is_chat else text


def completion_text(completion: str | list[dict[str, Any]]) -> str:
    """The text of a completion in either TRL convention (string or message list: the last assistant
    message, so a trajectory's trailing tool reply is not read as what the model said)."""
    if isinstance(completion, list):
        said = [m for m in completion if m.get("role", "assistant") == "assistant"] or completion
        return str(said[-1].get("content", "")) if said else ""
    return str(completion)


def sft_row(prompt: Prompt, completion: str | list[dict[str, Any]]) -> dict[str, Any]:
    """A TRL prompt/completion row (conversational when the prompt is chat); a completion given as
    messages (a gold trajectory) is used as it is."""
    if isinstance(completion, list):
        return {"prompt": chat_messages(prompt), "completion": completion}
    return {"prompt": scorer_prompt(prompt), "completion": scorer_completion(prompt, completion)}


def chat_messages(prompt: Prompt) -> list[dict[str, Any]]:
    """The prompt as chat messages (a text prompt becomes one user message)."""
    return list(prompt.messages) if prompt.messages is not None else [{"role": "user", "content": prompt.text}]


def trajectory_row(prompt: Prompt, sample: Sample) -> dict[str, Any]:
    """An agent trajectory as a TRL conversational prompt/completion row: the prompt (with the
    environment's opening observation) and everything from the first action on, assistant and tool
    messages alike; `assistant_only_loss` keeps the tool messages out of the loss."""
    head = chat_messages(prompt)
    first = next((i for i, t in enumerate(sample.turns) if t.role == "assistant"), len(sample.turns))
    head += [{"role": t.role, "content": t.text} for t in sample.turns[:first]]
    return {"prompt": head, "completion": [{"role": t.role, "content": t.text} for t in sample.turns[first:]]}


def is_trajectory_row(row: dict[str, Any]) -> bool:
    """A row whose completion holds more than the assistant's messages (tool output to mask)."""
    completion = row.get("completion")
    return isinstance(completion, list) and any(m.get("role") != "assistant" for m in completion)


def check_prompt_lengths(prompts: list[Prompt], tokenizer: Any, limit: int | None, new_tokens: int, where: str) -> None:
    """No prompt, plus `new_tokens`, is longer than the model's context `limit` (a one-line error naming it)."""
    if not limit:
        return
    for p in prompts:
        n = len(prompt_ids(p, tokenizer))
        if n + new_tokens > limit:
            raise RsftError(f"{where} prompt {p.id!r}: {n} tokens + {new_tokens} new tokens exceed the model's "
                            f"context of {limit} tokens; shorten or drop the prompt, or lower max_new_tokens")


def end_of_turn_token(tokenizer: Any) -> str | None:
    """The special token the chat template writes right after an assistant message (``<|im_end|>``,
    ``<|eot_id|>``, ``<end_of_turn>``...), found by rendering a short conversation; None without a template
    or when what follows the message is not a special token."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    marker = "rsft-end-of-turn-probe"
    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"},
                                              {"role": "assistant", "content": marker}], tokenize=False)
    except Exception:  # noqa: BLE001 - a template that needs other roles or tools: no answer
        return None
    if not isinstance(text, str) or marker not in text:
        return None
    after = text[text.rindex(marker) + len(marker):]
    ids = tokenizer(after, add_special_tokens=False)["input_ids"]
    if not ids:
        return None
    special = set(tokenizer.all_special_ids) | {i for i in tokenizer.added_tokens_decoder
                                                if tokenizer.added_tokens_decoder[i].special}
    return tokenizer.convert_ids_to_tokens(ids[0]) if ids[0] in special else None
