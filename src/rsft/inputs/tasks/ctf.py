"""`ctf`: a CPU-sized capture-the-flag task for agent trajectories.

Each episode is a small generated file tree. The prompt lists the files; the
file ``start`` says ``see NAME``, that file may point on (``see NAME``) up to
`max_depth` hops, and the last one holds ``flag{dddd}``. Decoy files say
``nothing``. The agent acts with shell commands, one per turn, run by the
shell tool in the code scorer's sandbox, and ends with ``submit flag{...}``. The
rule to learn is "cat start, follow the clues, submit what you find": a tiny
character model learns the action language from a few gold trajectories, then
rejection sampling raises its capture rate (the `flag` verifier judges the last
action).

The text convention, rendered by `CHAT_TEMPLATE` (the tiny model's tokenizer
gets it): a user or tool message is its text and a newline; an assistant turn
is ``$ `` + the command + EOS + newline, with the command and EOS inside
``{% generation %}`` so TRL's ``assistant_only_loss`` trains on actions only,
never on tool output.

The tool (`ShellTool`) runs each command in a fresh sandbox work directory
seeded with the episode's files: no network, host files invisible, a timeout,
and output capped. What it does not do: keep state between one command and the
next (a file the agent writes is gone at its next turn); the episode's files
are always all there is.
"""

from __future__ import annotations

import functools
import json
import random
import string
from typing import Any, Literal

from rsft.core.progress import notice
from rsft.core.records import Prompt
from rsft.core.registry import lookup
from rsft.inputs.sandbox import Limits, Sandbox
from rsft.inputs.tasks.base import Task

ALPHABET = string.ascii_letters + string.digits + "{}$:._-/' \n"
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'assistant' %}"
    "$ {% generation %}{{ m['content'] }}{{ eos_token }}{% endgeneration %}\n"
    "{% else %}{{ m['content'] }}\n{% endif %}{% endfor %}{% if add_generation_prompt %}$ {% endif %}"
)
SUBMIT = "submit "
EXIT = "\x00rsft-exit="  # ends the tool's output, then the command's exit status


def episode(rng: random.Random, max_depth: int = 3, decoys: int = 2,
            depth_cap: int | None = None) -> tuple[dict[str, str], str, list[str]]:
    """Files (name → content), the flag, and the clue chain the agent must read (``start`` first).

    Every episode has ``max_depth + decoys + 1`` files whatever its own depth (1 to `depth_cap`,
    default `max_depth`), so the depth cannot be read off the listing's length."""
    names: list[str] = []
    while len(names) < max_depth + decoys:
        name = "".join(rng.choice(string.ascii_lowercase) for _ in range(3))
        if name not in names and name != "see":
            names.append(name)
    depth = rng.randint(1, depth_cap or max_depth)
    path = ["start", *names[:depth]]
    flag_text = "flag{" + "".join(rng.choice(string.digits) for _ in range(4)) + "}"
    files = {a: f"see {b}\n" for a, b in zip(path, path[1:])}
    files[path[-1]] = flag_text + "\n"
    for name in names[depth:]:
        files[name] = "nothing\n"
    return files, flag_text, path


def _prompt(pid: str, files: dict[str, str], flag_text: str) -> Prompt:
    listing = sorted(files)
    return Prompt(pid, messages=({"role": "user", "content": "files: " + " ".join(listing)},),
                  fields={"flag": flag_text, "files": files})


def observation(output: str) -> str:
    """What a command's output looks like to the agent (the gold trajectories use the same)."""
    return output.rstrip() or "(no output)"


def gold_trajectory(files: dict[str, str], flag_text: str, chain: list[str]) -> list[dict[str, Any]]:
    """The shortest capture: cat along the chain, then submit (TRL conversational completion messages)."""
    out: list[dict[str, Any]] = []
    for name in chain:
        out += [{"role": "assistant", "content": f"cat {name}"}, {"role": "tool", "content": observation(files[name])}]
    return [*out, {"role": "assistant", "content": SUBMIT + flag_text}]


SandboxMode = Literal["auto", "bwrap", "unshare", "process"]


class ShellTool:
    """Runs one shell command in the sandbox, in a fresh work directory seeded with `files`.

    The command gets `timeout` seconds of its own (the sandbox's start-up is not counted against it),
    the seeded files carry a fixed modification time and the clock's zone is UTC, so the same command
    prints the same thing on a resumed run. What still differs between calls: the sandbox's uid
    (visible to ``id`` or ``ls -n``) and the wall clock (``date``)."""

    def __init__(self, sandbox: SandboxMode = "auto", timeout: float = 2.0, output_limit: int = 200) -> None:
        self.box = _sandbox(sandbox)
        self.timeout, self.output_limit = timeout, output_limit

    def __call__(self, files: dict[str, str], command: str) -> tuple[str, dict[str, Any]]:
        # the command's output goes through a pipe, so output past the sandbox's file-size cap is cut
        # here (its tail kept) rather than killing the harness before it reports the exit status
        code = ("import os, subprocess, sys\n"
                f"for name, text in {json.dumps(files)}.items():\n"
                "    with open(name, 'w') as f:\n"
                "        f.write(text)\n"
                "    os.utime(name, (0, 0))\n"
                "try:\n"
                f"    r = subprocess.run({json.dumps(command)}, shell=True, stdout=subprocess.PIPE, "
                f"stderr=subprocess.STDOUT, timeout={self.timeout}, env={{**os.environ, 'TZ': 'UTC'}})\n"
                "except subprocess.TimeoutExpired:\n"
                f"    sys.stdout.write({json.dumps(EXIT)} + 'timeout')\n"
                "else:\n"
                f"    sys.stdout.write(r.stdout.decode('utf-8', 'replace')[-{self.output_limit}:] + "
                f"{json.dumps(EXIT)} + str(r.returncode))\n")
        result = self.box.run(code, keep_output=self.output_limit + 32)
        info: dict[str, Any] = {"mode": result.mode}
        output, marker, code_text = result.output.rpartition(EXIT)
        output = output[-self.output_limit:]
        if result.status == "timeout" or code_text == "timeout":
            return "error: the command timed out", {**info, "error": "timeout"}
        if not marker:  # the tool itself failed (out of memory, killed)
            why = (result.detail or result.status).splitlines()[0][:120]
            return f"error: the tool failed ({why})", {**info, "error": why}
        exit_code = int(code_text) if code_text.strip().lstrip("-").isdigit() else -1
        info["exit"] = exit_code
        if exit_code:
            info["error"] = f"exit {exit_code}"
        return observation(output), info


@functools.cache
def _sandbox(mode: str) -> Sandbox:
    """One sandbox per mode (probed once); the outer timeout leaves room for start-up on a busy machine.
    A weaker sandbox than bwrap is said in one line, once."""
    box = Sandbox(mode, Limits(timeout=30.0, memory_mb=256, max_procs=16, max_output_bytes=1 << 16))
    if box.mode != "bwrap":
        notice(f"ctf shell tool: bwrap is not available here, so tool calls run in the {box.mode!r} sandbox, "
               "which does not hide host files" + (" or the network" if box.mode == "process" else ""))
    return box


class CtfEnv:
    """One ctf episode: shell commands through `ShellTool`, ``submit flag{...}`` ends it."""

    def __init__(self, prompt: Prompt, sandbox: SandboxMode = "auto", timeout: float = 2.0,
                 output_limit: int = 200) -> None:
        self.files: dict[str, str] = dict(prompt.fields.get("files") or {})
        self.tool = ShellTool(sandbox, timeout, output_limit)

    def reset(self, prompt: Prompt) -> str | None:
        return None  # the prompt's listing is the opening observation

    def step(self, action: str) -> tuple[str, bool, dict[str, Any]]:
        command = action.strip()
        if command.startswith(SUBMIT):
            return "submitted", True, {"submitted": command[len(SUBMIT):]}
        if not command:
            return "error: empty command", False, {"error": "empty command"}
        obs, info = self.tool(self.files, command)
        return obs, False, info


def make_task(n_train: int = 400, n_eval: int = 100, n_gold: int = 40, max_depth: int = 3, decoys: int = 2,
              gold_max_depth: int | None = 1, seed: int = 0) -> Task:
    """Episodes for training, held-out evaluation and the warm start's gold trajectories (disjoint draws).

    The gold episodes go at most `gold_max_depth` hops deep (default 1: the warm start shows the action
    language on the shortest chains only), so following longer chains is what the rounds must learn.
    """
    gold_depth = max_depth if gold_max_depth is None else gold_max_depth
    if not 1 <= gold_depth <= max_depth or decoys < 0 or min(n_train, n_gold, n_eval) < 0:
        raise ValueError("need 1 <= gold_max_depth <= max_depth, decoys >= 0 and counts >= 0")
    rng = random.Random(f"ctf/{seed}")
    draws = [episode(rng, max_depth, decoys, max_depth if i < n_train + n_eval else gold_depth)
             for i in range(n_train + n_eval + n_gold)]
    prompts = [_prompt(f"ctf-{i}", files, f) for i, (files, f, _) in enumerate(draws)]
    gold = [(prompts[i], gold_trajectory(*draws[i])) for i in range(n_train + n_eval, len(draws))]
    return Task("ctf", prompts[:n_train], prompts[n_train:n_train + n_eval], lookup("scorer", "flag", "task.name")(), gold, ALPHABET,
                chat_template=CHAT_TEMPLATE, env=CtfEnv)
