"""The fault harness's scorer: the addition check, run as a program in the code sandbox.

Each completion becomes ``s = '<completion>'`` and the test asserts it is the reversed sum of the
prompt's width, so every score of the harness's runs comes out of a real sandboxed process.
"""

from __future__ import annotations

from typing import Any

from rsft.inputs.data.formats import completion_text
from rsft.parts.scoring.code import code_scorer

_code: Any = None


def score(prompts: list[Any], completions: list[Any], answer: list[int], **_: Any) -> list[Any]:
    global _code
    if _code is None:
        _code = code_scorer(timeout=10.0, workers=2)
    programs = [f"s = {completion_text(c).strip()!r}\n" for c in completions]
    tests = [[f"assert s.isdigit() and len(s) == {len(completion_text(p).split('+')[0]) + 1} "
              f"and int(s[::-1]) == {int(a)}"] for p, a in zip(prompts, answer, strict=True)]
    return _code(prompts, programs, tests=tests)
