"""A scripted engine for unit tests of the stages around sampling.

It never touches a model: sample i of a prompt is `script(prompt, i)`, by
default the prompt's `fields["fake"][i % len]` or a fixed string. It exists so
that scoring, selection and metrics can be tested in milliseconds; end-to-end
tests must use a real engine.
"""

from __future__ import annotations

from collections.abc import Callable

from rsft.core.records import Prompt, Sample
from rsft.parts.sampling.base import SamplingParams


def _default_script(prompt: Prompt, index: int) -> str:
    options = prompt.fields.get("fake") or ["fake"]
    return str(options[index % len(options)])


def fake_engine(model_path: str = "", tokenizer_path: str | None = None, dtype: str = "float32",
                trust_remote_code: bool = False) -> FakeEngine:
    """The registry's factory: the model arguments are ignored, there is no model."""
    return FakeEngine()


class FakeEngine:
    name = "fake"
    precision = "none"

    def __init__(self, script: Callable[[Prompt, int], str] = _default_script) -> None:
        self.script = script

    def generate(self, prompts: list[Prompt], n: int, params: SamplingParams) -> list[list[Sample]]:
        out = []
        for p in prompts:
            group = []
            for i in range(params.first_index, params.first_index + n):
                text = self.script(p, i)
                ids = tuple(ord(c) for c in text)
                group.append(Sample(p.id, i, text, ids, logprob=-float(len(ids)), entropy=1.0, finish_reason="stop"))
            out.append(group)
        return out
