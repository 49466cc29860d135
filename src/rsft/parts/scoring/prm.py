"""A process reward model (PRM) as a scorer: one score per reasoning step, reduced to one value.

An outcome reward model judges a completion as a whole; a PRM judges each step, so a solution that
reaches the right answer through a wrong step can rank below one whose every step holds. The
completion is split into steps at a separator the user names (``"\\n"`` by default, or a step tag
such as ``"ки"`` for Math-Shepherd); steps that are blank once stripped are dropped. Each step gets
a probability of being good, from one of two kinds of HF checkpoint:

- ``kind: token`` (Math-Shepherd style): an `AutoModelForTokenClassification`, run once on the whole
  rendered text. A step's score is read at the token holding the step's last character (its last
  non-blank one): the text is tokenized with the fast tokenizer's offsets mapping, and the position
  is the last token, not zero-width (special tokens), whose start offset is at or before that
  character, which is the token covering it. A causal model at that position has read the prompt
  and every step up to and including this one, and nothing after.
- ``kind: sequence``: an `AutoModelForSequenceClassification`, run on each prefix: step i's score
  is the model's score of prompt + the completion up to the end of step i.

With one label the probability is sigmoid(logit); with two it is softmax's label 1 (label 0 "bad",
label 1 "good"). Text is rendered exactly as the reward-model scorer renders it
(`rsft.parts.scoring.reward_model.render`: the chat template when the tokenizer has one).

The value is `reduce` over the step scores: ``min`` (a chain is as good as its weakest step),
``last`` (the PRM's view of the whole solution once it has read all of it), or ``product`` (the
probability that every step is good, if they were independent). Each step's score is kept in
``parts`` as ``step_0``, ``step_1``, ... with ``steps``, the count. A completion with no step (empty
or blank) scores 0.0, the lowest a step can score, with ``steps = 0``: it is a bad completion, not a
scorer failure. A text longer than `max_length` tokens is an error on that sample, not truncated:
a step's score depends on every token before it, so a cut prefix would change what is scored.

It scores; it does not train a PRM, label steps (no Monte-Carlo rollouts) or search over steps.
"""

from __future__ import annotations

import math
from typing import Any, Literal, cast

import torch

from rsft.core.errors import ConfigError, RsftError
from rsft.core.records import Score
from rsft.inputs.data.formats import completion_text
from rsft.parts.scoring.reward_model import adds_special_tokens, render

Reduce = Literal["min", "last", "product"]
Kind = Literal["token", "sequence"]
REDUCE = {"min": min, "last": lambda xs: xs[-1], "product": math.prod}
HEADS = {"token": "ForTokenClassification", "sequence": "ForSequenceClassification"}


def split_steps(text: str, separator: str) -> list[tuple[int, int]]:
    """The (start, end) character spans of the non-blank steps of `text`, each stripped of whitespace."""
    spans, pos = [], 0
    for piece in text.split(separator):
        lead = len(piece) - len(piece.lstrip())
        if piece.strip():
            spans.append((pos + lead, pos + len(piece.rstrip())))
        pos += len(piece) + len(separator)
    return spans


def token_at(offsets: list[tuple[int, int]], char: int) -> int:
    """The index of the token covering character `char`: the last non-empty token starting at or before it."""
    return max(i for i, (s, e) in enumerate(offsets) if e > s and s <= char)


class PrmScorer:
    """Scores each step of each completion with a PRM, in batches, without gradients."""

    def __init__(self, path: str, separator: str = "\n", reduce: Reduce = "min", kind: Kind = "token",
                 batch_size: int = 16, max_length: int = 1024, dtype: str = "float32",
                 config_key: str = "scorer") -> None:
        from transformers import (AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification,
                                  AutoTokenizer)

        from rsft.inputs.modeling import DTYPES, check_model_path

        kw = f"{config_key}.kwargs"
        for name, value, allowed in (("reduce", reduce, REDUCE), ("kind", kind, HEADS), ("dtype", dtype, DTYPES)):
            if value not in allowed:  # the registry checks these too; a direct call is checked here
                raise ConfigError(f"key '{kw}.{name}': expected one of {list(allowed)}, got {value!r}")
        if not separator:
            raise ConfigError(f"key '{kw}.separator': must not be empty (it splits the completion into steps)")
        if batch_size < 1 or max_length < 1:
            raise ConfigError(f"key '{kw}': batch_size and max_length must be positive")
        check_model_path(path, f"key '{kw}.path': scorer prm")
        try:
            config = AutoConfig.from_pretrained(path)
        except (OSError, ValueError) as e:
            raise RsftError(f"key '{kw}.path': scorer prm {path!r}: cannot load ({str(e).splitlines()[0]})") from None
        if config.num_labels not in (1, 2):
            raise ConfigError(f"key '{kw}.path': scorer prm {path!r} has num_labels={config.num_labels}; a PRM "
                              "needs 1 (sigmoid) or 2 (softmax, label 1 = good step)")
        archs = config.architectures or []
        if archs and not any(a.endswith(HEADS[kind]) for a in archs):
            # loading a causal LM or the other head would silently score with a randomly initialized head
            raise ConfigError(f"key '{kw}.kind': scorer prm {path!r} is a {archs[0]}; kind {kind!r} needs a "
                              f"*{HEADS[kind]} checkpoint")
        auto = AutoModelForTokenClassification if kind == "token" else AutoModelForSequenceClassification
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = auto.from_pretrained(path, dtype=DTYPES[dtype]).eval()
        except (OSError, ValueError) as e:
            raise RsftError(f"key '{kw}.path': scorer prm {path!r}: cannot load ({str(e).splitlines()[0]})") from None
        if kind == "token" and not self.tokenizer.is_fast:
            raise ConfigError(f"key '{kw}.path': scorer prm {path!r}: kind 'token' needs a fast tokenizer "
                              "(its offsets mapping finds where each step ends)")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.tokenizer.padding_side = "right"  # positions from the unpadded tokenization stay valid
        self.separator, self.reduce, self.kind = separator, reduce, kind
        self.batch_size, self.max_length = batch_size, max_length
        self.special = adds_special_tokens(self.tokenizer)
        self.__name__ = "prm"

    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[Score]:
        out: list[Score | None] = [None] * len(prompts)
        jobs: list[tuple[int, str, list[int]]] = []  # (sample, text, the character ending each step) to run
        for i, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
            answer = completion_text(completion)
            spans = split_steps(answer, self.separator)
            if not spans:
                out[i] = Score(0.0, {"steps": 0.0})
            elif self.kind == "token":
                text = render(self.tokenizer, prompt, completion)
                start = text.rfind(answer)
                if start < 0:
                    out[i] = Score(None, error="prm: the chat template changed the completion's text, so its "
                                               "steps cannot be found in what the model reads")
                else:
                    jobs.append((i, text, [start + e - 1 for _, e in spans]))
            else:
                for _, e in spans:
                    jobs.append((i, render(self.tokenizer, prompt, answer[:e]), []))
        steps: dict[int, list[float]] = {}
        too_long: dict[int, int] = {}
        for b in range(0, len(jobs), self.batch_size):
            batch = jobs[b : b + self.batch_size]
            for (i, _, _), p in zip(batch, self._run(batch), strict=True):
                if isinstance(p, int):
                    too_long[i] = p
                else:
                    steps.setdefault(i, []).extend(p)
        for i in {j for j, _, _ in jobs}:
            if i in too_long:
                out[i] = Score(None, error=f"prm: {too_long[i]} tokens, over max_length {self.max_length} "
                                           "(a step is scored on its whole prefix, so nothing is truncated)")
            else:
                parts = {f"step_{k}": p for k, p in enumerate(steps[i])} | {"steps": float(len(steps[i]))}
                out[i] = Score(float(REDUCE[self.reduce](steps[i])), parts)
        return cast(list[Score], out)  # every sample was set above: no step, an error, or scored

    @torch.inference_mode()
    def _run(self, batch: list[tuple[int, str, list[int]]]) -> list[list[float] | int]:
        """Per job: its step probabilities (token kind: one per step end; sequence kind: one), or its token
        count when that is over max_length."""
        texts = [t for _, t, _ in batch]
        enc = self.tokenizer(texts, add_special_tokens=self.special, return_offsets_mapping=self.kind == "token")
        lengths = [len(ids) for ids in enc["input_ids"]]
        fit = [k for k, n in enumerate(lengths) if n <= self.max_length]
        result: list[list[float] | int] = list(lengths)
        if not fit:
            return result
        padded = self.tokenizer.pad({"input_ids": [enc["input_ids"][k] for k in fit],
                                     "attention_mask": [enc["attention_mask"][k] for k in fit]}, return_tensors="pt")
        logits = self.model(**padded).logits.float()  # token: [B, T, L]; sequence: [B, L]; L = num_labels
        probs = torch.sigmoid(logits[..., 0]) if logits.shape[-1] == 1 else logits.softmax(-1)[..., 1]
        # probs: token [B, T]; sequence [B]
        for row, k in enumerate(fit):
            if self.kind == "sequence":
                result[k] = [float(probs[row])]
            else:
                offsets = [tuple(o) for o in enc["offset_mapping"][k]]
                result[k] = [float(probs[row, token_at(offsets, c)]) for c in batch[k][2]]
        return result


def prm(path: str, separator: str = "\n", reduce: Reduce = "min", kind: Kind = "token", batch_size: int = 16,
        max_length: int = 1024, dtype: Literal["float32", "bfloat16", "float16"] = "float32",
        config_key: str = "scorer") -> PrmScorer:
    """The `prm` scorer (see the module docstring); `config_key` is where the config names it, for errors."""
    return PrmScorer(path, separator, reduce, kind, batch_size, max_length, dtype, config_key)
