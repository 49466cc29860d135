"""What is trained is what was sampled: SFT rows as the token ids the engine drew, not a re-tokenization.

TRL's SFTTrainer tokenizes prompt/completion rows itself: the prompt through the chat template, then
prompt + completion again, the completion starting where the two diverge. With a byte-level BPE
tokenizer, decoding a sampled completion and encoding it again can give other tokens than the ones
sampled (a run of spaces before digits, a word that merges across the prompt/completion boundary, a
token the model produced that the tokenizer would never produce), so the model would be trained on
sequences it did not generate and may never generate: off-policy by accident.

Rows the select stage writes carry the sampled ids (``completion_ids``). `token_dataset` turns them
into TRL's "already tokenized" form (``input_ids`` + ``completion_mask``; TRL then only builds labels
and truncates): the prompt rendered once, exactly as the engines rendered it (`prompt_ids`: one BOS at
most, the chat template's generation prompt), followed by the sampled ids, ending with the stop token
that ended the sample (the end-of-turn, which may also be the pad token: labels are built from the mask,
never from the pad id, so it stays in the loss).

Two cases cannot keep every sampled id: a sample cut at a stop string (its text ends before the
string; the ids up to the cut are kept, the part of a token that straddles it is tokenized from the
text) and one that ran out of tokens (no stop token: the end-of-turn, or EOS, is appended, as the
select stage says). Rows without ids (gold completions for the warm start) and agent trajectories
(tool output must be masked inside the completion) go through TRL's own tokenization.
"""

from __future__ import annotations

from typing import Any

from rsft.core.records import Prompt
from rsft.inputs.data.formats import prompt_ids


def row_prompt(row: dict[str, Any]) -> Prompt:
    """The Prompt of an SFT row, to render exactly as the engines did."""
    prompt = row["prompt"]
    if isinstance(prompt, list):
        return Prompt(str(row.get("prompt_id", "")), messages=tuple(prompt))
    return Prompt(str(row.get("prompt_id", "")), text=str(prompt))


def completion_text(row: dict[str, Any]) -> str:
    completion = row["completion"]
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) for m in completion)
    return str(completion)


def end_id(tokenizer: Any, chat: bool) -> int:
    """The id a completion that has no stop token of its own ends with: the chat template's end of turn
    for a chat prompt, else the tokenizer's EOS."""
    from rsft.inputs.data.formats import end_of_turn_token

    eot = end_of_turn_token(tokenizer) if chat else None
    return int(tokenizer.convert_tokens_to_ids(eot)) if eot is not None else int(tokenizer.eos_token_id)


def trained_completion(sampled: list[int], text: str, tokenizer: Any, stop_ids: set[int], end: int) -> list[int]:
    """The completion ids to train on for one sample: its sampled ids (with the stop token that ended it),
    cut back to `text` when a stop string cut the text, with `end` appended when no stop token ended it."""
    body = list(sampled)
    stop = [body.pop()] if body and body[-1] in stop_ids else []
    if tokenizer.decode(body, skip_special_tokens=True) == text:
        return body + (stop or [end])
    # cut at a stop string: keep the longest run of sampled ids whose text is a prefix of the kept text
    k = len(body)
    while k > 0 and not text.startswith(tokenizer.decode(body[:k], skip_special_tokens=True)):
        k -= 1
    done = tokenizer.decode(body[:k], skip_special_tokens=True)
    tail = tokenizer(text[len(done):], add_special_tokens=False)["input_ids"] if len(done) < len(text) else []
    return body[:k] + list(tail) + [end]


def decodes_to(ids: list[int], text: str, tokenizer: Any, stop_ids: set[int]) -> bool:
    """Whether sampled `ids` are this tokenizer's reading of `text`: they decode to it, or to a longer text it
    begins (a stop string cut it). Ids another tokenizer produced (a teacher's, a scripted engine's) do not."""
    body = ids[:-1] if ids and ids[-1] in stop_ids else ids
    if any(not 0 <= i < len(tokenizer) for i in body):
        return False
    return tokenizer.decode(body, skip_special_tokens=True).startswith(text)


def token_dataset(rows: list[dict[str, Any]], tokenizer: Any, stop_ids: list[int]) -> list[dict[str, Any]] | None:
    """TRL-tokenized rows (input_ids, completion_mask) for rows that all carry their sampled ids; None
    when one does not, holds a trajectory, or has ids that are not this tokenizer's reading of its text
    (said in one line): then TRL tokenizes the text rows itself."""
    if not rows or any("completion_ids" not in r or isinstance(r.get("completion"), list)
                       and any(m.get("role") != "assistant" for m in r["completion"]) for r in rows):
        return None
    stops = set(stop_ids)
    foreign = sum(not decodes_to(r["completion_ids"], completion_text(r), tokenizer, stops) for r in rows)
    if foreign:
        from rsft.core.progress import notice

        notice(f"train: {foreign} of {len(rows)} rows carry sampled ids that do not decode to their text with the "
               "model's tokenizer (another tokenizer or a scripted engine drew them); every row is trained on its "
               "text, tokenized again")
        return None
    ends: dict[bool, int] = {}
    out = []
    for row in rows:
        prompt = row_prompt(row)
        head = prompt_ids(prompt, tokenizer)  # [P]: exactly what the engine was given
        chat = prompt.is_chat
        if chat not in ends:
            ends[chat] = end_id(tokenizer, chat)
        tail = trained_completion(row["completion_ids"], completion_text(row), tokenizer, stops, ends[chat])  # [C]
        out.append({"input_ids": head + tail, "completion_mask": [0] * len(head) + [1] * len(tail)})
    return out
