"""A reward model as a scorer: any HF `AutoModelForSequenceClassification` with one label.

Each (prompt, completion) is rendered the way the reward model saw text in
training: through its tokenizer's chat template when it has one (a text prompt
becomes a user turn, the completion an assistant turn), else as plain
prompt + completion. Inputs longer than `max_length` are truncated from the
left, keeping the end of the completion where the answer usually is, and the
truncation is reported in the parts so it is never silent.

It scores; it does not train (see `rsft.learning.training.preference`).
"""

from __future__ import annotations

from typing import Any

import torch

from rsft.core.errors import RsftError
from rsft.core.records import Score
from rsft.inputs.data.formats import completion_text


def render(tokenizer: Any, prompt: Any, completion: Any) -> str:
    """The text a reward model reads for (prompt, completion); training and scoring share it."""
    answer = completion_text(completion)
    if getattr(tokenizer, "chat_template", None):
        messages = list(prompt) if isinstance(prompt, list) else [{"role": "user", "content": str(prompt)}]
        messages = messages + [{"role": "assistant", "content": answer}]
        return tokenizer.apply_chat_template(messages, tokenize=False)
    text = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)
    return text + answer


def adds_special_tokens(tokenizer: Any) -> bool:
    """A chat template writes its own special tokens; plain text gets the tokenizer's (BOS...)."""
    return not getattr(tokenizer, "chat_template", None)


class RewardModelScorer:
    """Scores completions with a scalar reward model, in batches, without gradients."""

    def __init__(self, path: str, batch_size: int = 16, max_length: int = 1024, dtype: str = "float32") -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from rsft.inputs.modeling import DTYPES, check_model_path

        check_model_path(path, "scorer reward model")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForSequenceClassification.from_pretrained(path, dtype=DTYPES[dtype]).eval()
        except (OSError, ValueError) as e:
            raise RsftError(f"scorer reward model {path!r}: cannot load ({str(e).splitlines()[0]})") from None
        if self.model.config.num_labels != 1:
            raise RsftError(f"scorer reward model {path!r}: expected num_labels=1, got {self.model.config.num_labels}")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.tokenizer.truncation_side = "left"
        self.batch_size, self.max_length = batch_size, max_length
        self.__name__ = "reward_model"

    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[Score]:
        texts = [render(self.tokenizer, p, c) for p, c in zip(prompts, completions, strict=True)]
        out: list[Score] = []
        for start in range(0, len(texts), self.batch_size):
            out.extend(self._score(texts[start : start + self.batch_size]))
        return out

    @torch.inference_mode()
    def _score(self, texts: list[str]) -> list[Score]:
        special = adds_special_tokens(self.tokenizer)
        full = self.tokenizer(texts, add_special_tokens=special)["input_ids"]
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                             add_special_tokens=special, return_tensors="pt")
        rewards = self.model(**enc).logits[:, 0].float()  # [B]
        return [Score(float(r), {"truncated": float(len(ids) > self.max_length)}) for r, ids in zip(rewards, full)]


def reward_model(path: str, batch_size: int = 16, max_length: int = 1024, dtype: str = "float32") -> RewardModelScorer:
    return RewardModelScorer(path, batch_size, max_length, dtype)
