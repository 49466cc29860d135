"""Rule-based verifiers: numeric answers, math equivalence, exact/normalized match, regex, CTF flags, JSON.

Each factory returns a scorer with TRL GRPO's reward signature that returns
`Score` records (which TRL reads as floats). Every verifier keeps a *format
failure* (no answer could be extracted) apart from a *wrong answer* in
`Score.parts`: ``format`` is 1.0 when an answer was found, ``correct`` when it
was right. `format_credit` is the value a well-formed wrong answer earns
(partial credit; 0 by default). The expected answer comes from a dataset
column, named by `field`.

These verifiers do not execute anything; code runs only in `scoring.code`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from rsft.core.records import Score
from rsft.inputs.data.formats import completion_text

Scorer = Callable[..., list[Score]]
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_GSM8K = re.compile(r"####\s*(.+)")


def _verdict(found: str | None, correct: bool, format_credit: float, **extra: float) -> Score:
    if found is None:
        return Score(0.0, {"format": 0.0, "correct": 0.0, **extra})
    return Score(1.0 if correct else format_credit, {"format": 1.0, "correct": float(correct), **extra}, answer=found)


def _field(kwargs: dict[str, Any], field: str, n: int) -> list[Any]:
    if field not in kwargs:
        raise KeyError(f"the scorer needs a dataset column {field!r}; columns given: {sorted(kwargs)}")
    values = kwargs[field]
    if len(values) != n:
        raise ValueError(f"column {field!r} has {len(values)} values for {n} completions")
    return values


def parse_number(text: str) -> float | None:
    """A number written with optional $ and thousands separators, or None."""
    cleaned = text.strip().replace(",", "").replace("$", "").rstrip(".")
    try:
        return float(cleaned)
    except ValueError:
        m = _NUMBER.search(cleaned)
        return float(m.group().replace(",", "")) if m else None


def extract_number(text: str, fallback_last_number: bool = True) -> str | None:
    """The GSM8K answer after '#### ', else (optionally) the last number in the text."""
    m = _GSM8K.search(text)
    if m:
        n = _NUMBER.search(m.group(1).replace("$", ""))
        return n.group().replace(",", "") if n else None
    if fallback_last_number:
        nums = _NUMBER.findall(text.replace("$", ""))
        return nums[-1].replace(",", "") if nums else None
    return None


def numeric(field: str = "answer", tolerance: float = 1e-6, fallback_last_number: bool = True,
            format_credit: float = 0.0) -> Scorer:
    """Final numeric answer: GSM8K's '#### N' (commas and $ stripped), else the last number.

    The gold value may itself be a GSM8K solution ending in '#### N'. Correct when
    |answer − gold| <= tolerance.
    """

    def score(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[Score]:
        golds = _field(kwargs, field, len(completions))
        out = []
        for c, gold in zip(completions, golds, strict=True):
            found = extract_number(completion_text(c), fallback_last_number)
            g = parse_number(extract_number(str(gold), True) or "") if not isinstance(gold, (int, float)) else gold
            value = parse_number(found) if found is not None else None
            ok = value is not None and g is not None and abs(value - float(g)) <= tolerance
            out.append(_verdict(found, ok, format_credit))
        return out

    score.__name__ = "numeric"
    return score


def math_equiv(field: str = "answer", format_credit: float = 0.0, timeout_seconds: int = 5) -> Scorer:
    r"""LaTeX / \boxed{} equivalence through `math-verify` (the `rsft[math]` extra)."""
    from math_verify import parse, verify

    def score(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[Score]:
        golds = _field(kwargs, field, len(completions))
        out = []
        for c, gold in zip(completions, golds, strict=True):
            g = str(gold)
            gold_parsed = parse(g if "$" in g or "\\boxed" in g else f"${g}$", parsing_timeout=timeout_seconds)
            pred = parse(completion_text(c), parsing_timeout=timeout_seconds)
            found = str(pred[-1]) if pred else None
            ok = bool(pred) and bool(gold_parsed) and verify(gold_parsed, pred, timeout_seconds=timeout_seconds)
            out.append(_verdict(found, ok, format_credit))
        return out

    score.__name__ = "math"
    return score


def _normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower().rstrip(".")


def match(field: str = "answer", mode: str = "normalized", format_credit: float = 0.0) -> Scorer:
    """The whole completion equals the gold answer: exactly, or after case/whitespace normalization."""
    if mode not in ("exact", "normalized"):
        raise ValueError(f"mode must be 'exact' or 'normalized', got {mode!r}")
    norm = (lambda s: s.strip()) if mode == "exact" else _normalize

    def score(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[Score]:
        golds = _field(kwargs, field, len(completions))
        out = []
        for c, gold in zip(completions, golds, strict=True):
            text = completion_text(c)
            found = norm(text) if text.strip() else None
            out.append(_verdict(found, found is not None and found == norm(str(gold)), format_credit))
        return out

    score.__name__ = f"match_{mode}"
    return score


def regex(pattern: str, field: str | None = None, group: int = 1, format_credit: float = 0.0) -> Scorer:
    """The completion matches `pattern`; with `field`, the (last) match's group must equal that column."""
    rx = re.compile(pattern, re.DOTALL)

    def score(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[Score]:
        golds = _field(kwargs, field, len(completions)) if field else [None] * len(completions)
        out = []
        for c, gold in zip(completions, golds, strict=True):
            matches = list(rx.finditer(completion_text(c)))
            if not matches:
                out.append(_verdict(None, False, format_credit))
                continue
            last = matches[-1]
            found = last.group(group) if field and rx.groups >= group else last.group(0)
            ok = gold is None or found.strip() == str(gold).strip()
            out.append(_verdict(found, ok, format_credit))
        return out

    score.__name__ = "regex"
    return score


_FLAG = r"flag\{[^{}\s]{1,200}\}"


def flag(field: str = "flag", pattern: str = _FLAG, max_candidates: int = 3, format_credit: float = 0.0) -> Scorer:
    """CTF check: the completion reveals the prompt's `flag{...}`.

    A completion listing more than `max_candidates` distinct flags is wrong even
    if one is right, so spraying guesses does not pay.
    """
    rx = re.compile(pattern)

    def score(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[Score]:
        golds = _field(kwargs, field, len(completions))
        out = []
        for c, gold in zip(completions, golds, strict=True):
            found = list(dict.fromkeys(rx.findall(completion_text(c))))
            if not found:
                out.append(_verdict(None, False, format_credit))
                continue
            ok = str(gold).strip() in found and len(found) <= max_candidates
            out.append(_verdict(found[-1] if not ok else str(gold).strip(), ok, format_credit,
                                candidates=float(len(found))))
        return out

    score.__name__ = "flag"
    return score


_FENCE = re.compile(r"```(?:json)?\s*\n?(.*?)```", re.DOTALL)


def json_schema(schema: dict[str, Any] | None = None, schema_field: str | None = None,
                format_credit: float = 0.0) -> Scorer:
    """The completion (or its last ```json block) parses as JSON and validates against a JSON Schema.

    The schema is fixed (`schema`) or per prompt (`schema_field` column, a dict or a JSON string).
    Needs the `rsft[json]` extra (jsonschema). Parsing is ``format``; validation is ``correct``.
    """
    import jsonschema

    def score(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[Score]:
        schemas = _field(kwargs, schema_field, len(completions)) if schema_field else [schema] * len(completions)
        out = []
        for c, sch in zip(completions, schemas, strict=True):
            text = completion_text(c)
            blocks = _FENCE.findall(text)
            try:
                obj = json.loads(blocks[-1] if blocks else text)
            except (json.JSONDecodeError, ValueError):
                out.append(_verdict(None, False, format_credit))
                continue
            sch = json.loads(sch) if isinstance(sch, str) else sch
            ok = sch is None or jsonschema.Draft202012Validator(sch).is_valid(obj)
            out.append(_verdict(json.dumps(obj, sort_keys=True), ok, format_credit))
        return out

    score.__name__ = "json"
    return score
