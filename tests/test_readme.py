"""The README's examples run as written.

Every fenced block of README.md is used: a ```yaml or ```python block whose first line is ``# NAME`` is
written to the workspace as that file (all of them first, as a reader writes a section's files before
running its commands); any other ```yaml block must be a valid config fragment; every
line of a ```sh block runs (it must be an `rsft` command), in order, in a workspace holding the
repository's `examples/` and a `runs/demo` made by a quick demo. A block preceded by an
``<!-- not run by the README test: why -->`` comment is skipped, so no example is skipped silently.
"""

from __future__ import annotations

import re
import shlex
import shutil

import pytest
import yaml

from rsft.config import build_config
from tests.conftest import ROOT, run_cli

BLOCK = re.compile(r"(<!-- not run by the README test[^>]*-->\s*\n)?```(\w*)\n(.*?)```", re.DOTALL)
QUICK_DEMO = ["task.params.n_train=96", "task.params.n_eval=32", "warm_start.max_steps=300",
              "warm_start.target_pass1=0.3", "warm_start.eval_prompts=32", "train.max_steps=20",
              "eval.n=2", "eval.k=[1,2]"]


def blocks() -> list[tuple[str, str]]:
    """(language, text) of each block the test runs, in README order."""
    return [(lang, body) for skip, lang, body in BLOCK.findall((ROOT / "README.md").read_text()) if not skip]


def commands(body: str) -> list[list[str]]:
    out = []
    for line in body.splitlines():
        line = re.split(r"\s{2,}#", line)[0].strip()
        if not line or line.startswith("#"):
            continue
        args = shlex.split(line)
        assert args[0] == "rsft", f"a README shell line that is not an rsft command: {line!r}"
        out.append(args[1:])
    return out


def test_the_readme_has_runnable_examples():
    langs = [lang for lang, _ in blocks()]
    assert langs.count("sh") >= 2 and "python" in langs and "yaml" in langs


# Timeouts guard against a hang, not against slowness: about 150 s in all on 2 quiet cores, and a loaded
# machine took more than 600 s for the quick demo alone once, so each command gets half an hour.
HANG = 1800


def test_the_readme_examples_run_as_written(tmp_path, smol_gguf):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    (tmp_path / ".cache" / "models").mkdir(parents=True)  # where `make model` put the real model
    (tmp_path / ".cache" / "models" / smol_gguf.name).symlink_to(smol_gguf)
    run_cli("demo", *QUICK_DEMO, cwd=tmp_path, check=True, timeout=HANG)  # what `make demo` leaves, in less time
    ran = 0
    named = [(lang, body) for lang, body in blocks()
             if lang in ("yaml", "python") and re.fullmatch(r"# [\w.-]+\.(yaml|py)", body.splitlines()[0])]
    for _, body in named:  # a reader writes the files a section shows before running its commands
        (tmp_path / body.splitlines()[0][2:]).write_text(body)
    for lang, body in blocks():
        if (lang, body) in named:
            continue
        if lang == "yaml":
            data = yaml.safe_load(body)
            build_config(data)  # a config fragment: it must validate
        elif lang == "sh":
            for args in commands(body):
                proc = run_cli(*args, cwd=tmp_path, timeout=HANG)
                assert proc.returncode == 0, f"rsft {' '.join(args)}:\n{proc.stderr[-2000:]}"
                ran += 1
        elif lang == "python":
            exec(compile(body, "README.md", "exec"), {})
    assert ran >= 6
    assert (tmp_path / "runs" / "my-run" / "round-002" / "metrics.json").exists()
    assert (tmp_path / "rm" / "config.json").exists()
    assert (tmp_path / "runs" / "smollm2" / "round-000" / "metrics.json").exists()
