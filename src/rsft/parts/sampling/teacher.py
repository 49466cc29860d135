"""The teacher (`sampling.model`), checked before any work as the student is.

The teacher is loaded only when its first round samples, after the base model was built and
evaluated; a wrong path found then has cost that time, and was reported under the student's key.
Checked here: the path is a model (a local directory, a GGUF file, or a hub id in the local cache),
under the key `sampling.model`.

Its tokenizer must be the student's: samples are token ids, and the student trains on the ids the
teacher drew (`rsft.learning.training.tokens`), so a teacher with another vocabulary would teach the student
ids that mean other text to it. The two vocabularies (`get_vocab()`, added tokens included) must be
equal; the first token they disagree on is named.

It loads no weights.
"""

from __future__ import annotations

from typing import Any

from rsft.core.errors import ConfigError
from rsft.inputs.modeling import check_model_path, load_tokenizer, read_config

KEY = "sampling.model"


def check_teacher(path: str, student_tokenizer: Any, trust_remote_code: bool = False) -> None:
    """The teacher at `path` exists and shares the student's tokenizer (see the module docstring)."""
    check_model_path(path, KEY)
    read_config(path, KEY, trust_remote_code)
    teacher = load_tokenizer(path, KEY, trust_remote_code)
    theirs, mine = teacher.get_vocab(), student_tokenizer.get_vocab()
    if theirs == mine:
        return
    differ = [t for t in sorted(set(theirs) | set(mine), key=lambda t: (mine.get(t, theirs.get(t)), t))
              if theirs.get(t) != mine.get(t)]
    token = differ[0]

    def say(vocab: dict[str, int]) -> str:
        return f"id {vocab[token]}" if token in vocab else "absent"

    raise ConfigError(f"key '{KEY}': the teacher's tokenizer is not the student's (model.path): {len(differ)} of "
                      f"{len(set(theirs) | set(mine))} tokens differ (the first, {token!r}, is {say(theirs)} in the "
                      f"teacher and {say(mine)} in the student; {len(theirs)} vs {len(mine)} tokens); the student "
                      "trains on the token ids the teacher samples, so they must share one tokenizer")
