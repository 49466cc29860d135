"""The built-in `countdown` task (TinyZero): combine the given numbers into the target.

    prompt      "3 7 25>46:"                  numbers, then the target
    completion  "<answer>25+3*7</answer>"     any expression using each number exactly once

The verifier follows TinyZero's rules: the last ``<answer>…</answer>`` counts;
only digits, ``+ - * / ( )`` and spaces are allowed; each given number is used
exactly once; |value − target| < 1e-5 is correct. A well-formed but wrong
answer earns `format_credit` (TinyZero's 0.1); no answer earns 0. Most
problems have many valid answers, which is what exercises dedup.

Expressions are evaluated by walking a Python AST restricted to numbers and
the four operators, never with `eval`.
"""

from __future__ import annotations

import ast
import operator
import random
import re
from typing import Any

from rsft.core.records import Prompt, Score
from rsft.inputs.data.formats import completion_text
from rsft.inputs.tasks.base import Task

ALPHABET = "0123456789+-*/() <>answer:"
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_ALLOWED = re.compile(r"^[\d+\-*/() ]+$")
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_SYMBOL = {"+": ast.Add, "-": ast.Sub, "*": ast.Mult, "/": ast.Div}


def evaluate(expr: str) -> tuple[float, list[int]] | None:
    """(value, numbers used) of an arithmetic expression, or None if it is not one."""
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except (SyntaxError, ValueError):
        return None
    numbers: list[int] = []

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
            numbers.append(node.value)
            return float(node.value)
        raise ValueError("not arithmetic")

    try:
        return walk(tree.body), numbers
    except (ValueError, ZeroDivisionError, OverflowError):
        return None


def countdown_scorer(format_credit: float = 0.1) -> Any:
    def score(prompts: list[Any], completions: list[Any], numbers: list[list[int]], target: list[int],
              **_: Any) -> list[Score]:
        out = []
        for c, nums, tgt in zip(completions, numbers, target, strict=True):
            answers = _ANSWER.findall(completion_text(c))
            if not answers:
                out.append(Score(0.0, {"format": 0.0, "numbers": 0.0, "correct": 0.0}))
                continue
            expr = answers[-1].strip()
            result = evaluate(expr) if _ALLOWED.match(expr) else None
            uses = result is not None and sorted(result[1]) == sorted(nums)
            correct = uses and abs(result[0] - float(tgt)) < 1e-5
            parts = {"format": 1.0, "numbers": float(uses), "correct": float(correct)}
            out.append(Score(1.0 if correct else format_credit, parts, answer=expr.replace(" ", "")))
        return out

    score.__name__ = "countdown"
    return score


def _random_expression(nums: list[int], rng: random.Random) -> tuple[str, float]:
    """Combine nums in a random order with random operators, one parenthesised step at a time."""
    order = nums[:]
    rng.shuffle(order)
    expr, value = str(order[0]), float(order[0])
    for n in order[1:]:
        op = rng.choice("+-*/" if value % n == 0 else "+-*")
        value = _OPS[_SYMBOL[op]](value, n)
        expr = f"({n}{op}{expr})" if op in "+*" and rng.random() < 0.5 else f"({expr}{op}{n})"
    return expr[1:-1] if len(order) > 1 else expr, value


def make_problem(rng: random.Random, n_numbers: tuple[int, int], max_number: int, max_target: int) -> tuple[list[int], int, str]:
    while True:
        k = rng.randint(*n_numbers)
        nums = [rng.randint(1, max_number) for _ in range(k)]
        expr, value = _random_expression(nums, rng)
        if value == int(value) and 1 <= value <= max_target:
            return nums, int(value), expr


def make_prompt(nums: list[int], target: int, pid: str) -> Prompt:
    return Prompt(pid, text=f"{' '.join(map(str, nums))}>{target}:", fields={"numbers": nums, "target": target})


def make_task(n_train: int = 2000, n_eval: int = 500, n_gold: int = 2000, min_numbers: int = 3,
              max_numbers: int = 4, max_number: int = 20, max_target: int = 100, seed: int = 0,
              format_credit: float = 0.1) -> Task:
    """Seeded, disjoint splits of countdown problems; gold completions are the generating expressions."""
    rng = random.Random(f"countdown:{seed}")
    seen: set[tuple[tuple[int, ...], int]] = set()
    problems = []
    while len(problems) < n_train + n_eval + n_gold:
        nums, target, expr = make_problem(rng, (min_numbers, max_numbers), max_number, max_target)
        key = (tuple(sorted(nums)), target)
        if key not in seen:
            seen.add(key)
            problems.append((nums, target, expr))
    train = [make_prompt(n, t, f"train-{i}") for i, (n, t, _) in enumerate(problems[:n_train])]
    held = [make_prompt(n, t, f"eval-{i}") for i, (n, t, _) in enumerate(problems[n_train : n_train + n_eval])]
    gold = [(make_prompt(n, t, f"gold-{i}"), f"<answer>{e}</answer>")
            for i, (n, t, e) in enumerate(problems[n_train + n_eval :])]
    return Task("countdown", train, held, countdown_scorer(format_credit), gold, ALPHABET)
