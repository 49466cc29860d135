"""The code-execution scorer: run model-written Python against the prompt's tests, in a sandbox.

``code_scorer(...)`` returns a plain callable with TRL GRPO's reward signature,
``(prompts, completions, tests, **kwargs) -> list[Score]``. For each completion it

1. extracts the code: the last fenced ```python block (an unclosed one counts, as a truncated
   sample leaves it), else the last fenced block with no language, else the whole completion; with a
   ``code_prefix`` field (HumanEval: the prompt's signature and docstring, which the completion
   continues) the code runs after it (a completion that writes the whole function again redefines it);
2. turns the prompt's ``tests`` field into steps (`split_tests`);
3. runs code and steps in a `Sandbox` (see sandbox.py for what each mode protects);
4. scores the fraction of tests passed.

``Score.parts`` keeps ``passed``, ``total``, ``timeout``, ``crashed`` and ``format`` (1 when code was
found and compiled) apart, so a syntax error (format 0, value 0.0) is distinguishable from a
wrong program. Only a failure of the sandbox itself, or tests that cannot be read, is a Score
error. Samples run in parallel, one sandbox per sample, through a pool of `workers` threads that
each drive one child process.

What it does not do: stdin/stdout-style tests (APPS/Codeforces "input → expected output"), per-test
timeouts (the timeout covers the program and all its tests), or any check that a solution is not
special-casing the visible tests.
"""

from __future__ import annotations

import ast
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rsft.core.progress import notice
from rsft.core.records import Score
from rsft.inputs.data.formats import completion_text
from rsft.inputs.sandbox import Limits, RunResult, Sandbox, SandboxUnavailable, Step

# what each mode leaves open (the full table is in sandbox.py), printed when a code scorer is built
UNPROTECTED = {
    "bwrap": "no seccomp, and memory is limited per process, not per run",
    "unshare": "the program can read world-readable host files, write world-writable directories, fill the disk",
    "process": "the program has the host's network, can read what any user can read, write world-writable "
               "directories and fill the disk",
}

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)  # consumes open and close


def extract_code(text: str) -> str:
    """The last ```python fenced block (closed or not), else the last bare ``` block, else the whole text."""
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(text)]
    python = [body for lang, body in blocks if lang in ("python", "python3", "py")]
    bare = [body for lang, body in blocks if not lang]
    return (python or bare or [text])[-1]


def split_tests(tests: Any, entry_point: str | None = None) -> list[Step]:
    """The steps to run after the candidate, from a prompt's ``tests`` field.

    - a list of strings: each is one test (an assert, or a few statements);
    - a string: split at the top level. Each ``assert`` is a test; each function ``test_*()`` with
      no required arguments is defined in order and called, as a test, after everything else; a
      HumanEval-style ``check(candidate)`` is called as ``check(<entry_point>)``, from the prompt's
      ``entry_point`` field, which it then needs. Other statements (imports, helpers, assignments) are setup, run in
      order. A string with none of these is a single test.
    """
    if isinstance(tests, (list, tuple)):
        if not tests or not all(isinstance(t, str) for t in tests):
            raise ValueError("tests must be a non-empty list of strings (or one string)")
        return [Step(t) for t in tests]
    if not isinstance(tests, str) or not tests.strip():
        raise ValueError(f"tests must be a string or a list of strings, got {type(tests).__name__}")
    try:
        module = ast.parse(tests)
    except SyntaxError as e:
        raise ValueError(f"the tests do not parse: {e}") from None
    steps: list[Step] = []
    calls: list[Step] = []
    for node in module.body:
        source = ast.unparse(node)
        if isinstance(node, ast.Assert):
            steps.append(Step(source))
            continue
        steps.append(Step(source, is_test=False))
        if isinstance(node, ast.FunctionDef):
            required = len(node.args.posonlyargs) + len(node.args.args) - len(node.args.defaults)
            if node.name.startswith("test") and required == 0:
                calls.append(Step(f"{node.name}()"))
            elif node.name == "check" and required == 1:
                if not (isinstance(entry_point, str) and entry_point.isidentifier()):
                    raise ValueError(f"the tests define check(candidate) but entry_point is {entry_point!r}")
                calls.append(Step(f"check({entry_point})"))
    steps += calls
    if not any(s.is_test for s in steps):
        return [Step(tests)]
    return steps


def to_score(result: RunResult) -> Score:
    """The Score of one sandbox run; a sandbox failure is a Score error, everything else a value."""
    if result.status == "error":
        return Score(None, error=f"sandbox ({result.mode}): {result.detail.splitlines()[0] if result.detail else ''}")
    parts = {
        "passed": float(result.passed),
        "total": float(result.total),
        "timeout": float(result.status == "timeout"),
        "crashed": float(result.status == "crashed"),
        "format": float(result.compiled),
    }
    return Score(result.passed / result.total if result.total else 0.0, parts)


def code_scorer(timeout: float = 5.0, memory_mb: int = 512, workers: int = 2, mode: str = "auto",
                python: str | None = None) -> Callable[..., list[Score]]:
    """A scorer running each completion against its prompt's ``tests`` in a sandbox.

    `timeout` (seconds) and `memory_mb` (per process) bound each sample; `workers` samples run at
    once; `mode` is auto, bwrap, unshare or process; `python` is the interpreter to run (default:
    this one). The mode is resolved here, so an unavailable explicit mode fails at once.
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    try:
        sandbox = Sandbox(mode, Limits(timeout=timeout, memory_mb=memory_mb), python)
    except SandboxUnavailable as e:
        raise SandboxUnavailable(f"key 'scorer.kwargs.mode': sandbox mode {mode!r} cannot run here: "
                                 f"{str(e).splitlines()[0]}") from None
    chosen = f"{sandbox.mode!r}" + (" (chosen by mode: auto)" if mode == "auto" else "")
    said = threading.Event()  # the mode is said once, when scoring starts (not while a config is checked)

    def score_one(completion: Any, tests: Any, entry_point: str | None, prefix: str | None) -> Score:
        code = extract_code(completion_text(completion))
        if prefix and code.strip():  # HumanEval-style: the completion continues the prompt's code
            code = prefix + code
        try:
            steps = split_tests(tests, entry_point)
        except ValueError as e:
            return Score(None, error=str(e))
        if not code.strip():
            return Score(0.0, {"passed": 0.0, "total": float(sum(s.is_test for s in steps)), "timeout": 0.0,
                               "crashed": 0.0, "format": 0.0})
        try:
            return to_score(sandbox.run(code, steps))
        except Exception as e:  # noqa: BLE001 - e.g. no space left for a work directory
            return Score(None, error=f"sandbox: {type(e).__name__}: {e}")

    def score_code(prompts: Sequence[Any], completions: Sequence[Any], tests: Sequence[Any],
                   **kwargs: Any) -> list[Score]:
        if not said.is_set():
            said.set()
            notice(f"code scorer: sandbox mode {chosen}; it does not protect against: {UNPROTECTED[sandbox.mode]}")
        entry_points = kwargs.get("entry_point") or [None] * len(completions)
        prefixes = kwargs.get("code_prefix") or [None] * len(completions)
        if not (len(prompts) == len(completions) == len(tests) == len(entry_points) == len(prefixes)):
            raise ValueError("prompts, completions, tests, entry_point and code_prefix must have one entry per sample")
        with ThreadPoolExecutor(max_workers=min(workers, max(1, len(completions)))) as pool:
            return list(pool.map(score_one, completions, tests, entry_points, prefixes))

    score_code.sandbox = sandbox  # type: ignore[attr-defined]
    return score_code
