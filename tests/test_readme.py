"""The examples of the README and of the pages under docs/ run as written.

The pages are README.md, then every docs/*.md in name order. Every fenced block of a page is used: a
```yaml or ```python block whose first line is ``# NAME`` is written to the workspace as that file (the
named files of every page first, as a reader writes a section's files before running its commands);
any other ```yaml block must be a valid config fragment; any other ```python block runs; every line of a
```sh block runs (it must be an `rsft` command), in order, in a workspace holding the repository's
`examples/` and a `runs/demo` made by a quick demo, which stands for the repository's root, where a
reader runs them. A block preceded by an ``<!-- not run by the README test: why -->`` comment is
skipped, so no example is skipped silently; a block with no language is output (a table, a tree)
and any other language is refused. Each example is a test of its own, named by its page and the line
of its opening fence (``test_the_examples_run_as_written[docs/configuration.md:118]``); they share
one workspace and run in page order, so select them with -k while editing, and run the whole file to
check a change.

The README is the front door: at most 200 lines, and it links every page under docs/. Every relative
link of every page leads to a file or folder that exists, and an anchor to a heading of that page.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from rsft.core.config import build_config
from tests.conftest import ROOT, run_cli

BLOCK = re.compile(r"(<!-- not run by the README test[^>]*-->\s*\n)?```(\w*)\n(.*?)```", re.DOTALL)
NAMED = re.compile(r"# [\w.-]+\.(yaml|py)")
QUICK_DEMO = ["task.params.n_train=96", "task.params.n_eval=32", "warm_start.max_steps=300",
              "warm_start.target_pass1=0.3", "warm_start.eval_prompts=32", "train.max_steps=20",
              "eval.n=2", "eval.k=[1,2]"]
README_MAX_LINES = 200


def pages() -> list[Path]:
    """README.md, then the pages under docs/ in name order."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclass(frozen=True)
class Example:
    page: str  # relative to the repository, e.g. "docs/engines.md"
    line: int  # of the opening fence
    lang: str
    body: str
    skipped: bool

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def name(self) -> str | None:
        """The file a named block is written to, else None."""
        first = self.body.splitlines()[0] if self.body else ""
        return first[2:] if self.lang in ("yaml", "python") and NAMED.fullmatch(first) else None


def all_blocks() -> list[Example]:
    """Every fenced block of every page, skipped ones and output included, in page order."""
    out = []
    for path in pages():
        text = path.read_text()
        for m in BLOCK.finditer(text):
            out.append(Example(path.relative_to(ROOT).as_posix(), text.count("\n", 0, m.start(2)) + 1,
                               m.group(2), m.group(3), bool(m.group(1))))
    return out


def examples() -> list[Example]:
    """The blocks the test uses: not skipped, and not output."""
    return [e for e in all_blocks() if not e.skipped and e.lang]


def commands(body: str) -> list[list[str]]:
    out = []
    for line in body.splitlines():
        line = re.split(r"\s{2,}#", line)[0].strip()
        if not line or line.startswith("#"):
            continue
        args = shlex.split(line)
        assert args[0] == "rsft", f"a shell line that is not an rsft command: {line!r}"
        out.append(args[1:])
    return out


def test_the_pages_have_runnable_examples():
    langs = [e.lang for e in examples()]
    assert langs.count("sh") >= 2 and "python" in langs and "yaml" in langs
    for e in all_blocks():  # a ```bash or ```json block would otherwise be skipped without a word
        assert e.skipped or e.lang in ("", "sh", "yaml", "python"), f"{e.id}: a ```{e.lang} block is never run"
    names = [e.name for e in examples() if e.name]
    assert len(names) == len(set(names)), f"two pages write the same file: {names}"


def test_the_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= README_MAX_LINES, "README.md is the front door: move detail into docs/"
    linked = {target.split("#")[0] for _, target in links(readme)}
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{page.name}" in linked, f"README.md does not link docs/{page.name}"


def links(text: str) -> list[tuple[int, str]]:
    """(line, target) of each markdown link of a page outside code blocks and code spans."""
    out = []
    prose = re.sub(r"^```.*?^```", lambda m: "\n" * m.group().count("\n"), text, flags=re.DOTALL | re.MULTILINE)
    for i, line in enumerate(prose.splitlines(), 1):
        for target in re.findall(r"\]\(([^)\s]+)\)", re.sub(r"`[^`]*`", "", line)):
            out.append((i, target))
    return out


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_pages_links_resolve():
    for path in pages():
        for line, target in links(path.read_text()):
            if re.match(r"\w+:", target):  # https:, mailto:
                continue
            file, _, fragment = target.partition("#")
            dest = (path.parent / file).resolve() if file else path
            where = f"{path.relative_to(ROOT)}:{line}: {target}"
            assert dest.exists(), f"{where}: no such file"
            if fragment:
                headings = re.findall(r"^#+ (.*)$", dest.read_text(), flags=re.MULTILINE)
                assert fragment in {anchor(h) for h in headings}, f"{where}: no such heading"


# Timeouts guard against a hang, not against slowness: about 150 s in all on 2 quiet cores, and a loaded
# machine took more than 600 s for the quick demo alone once, so each command gets half an hour.
HANG = 1800
RAN: dict[str, int] = {}  # id of each example that ran to the end here -> the rsft commands it ran


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, smol_gguf: Path) -> Path:
    """The reader's checkout after `make demo` and `make model`, with every page's named files written."""
    ws = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "examples", ws / "examples")
    (ws / ".cache" / "models").mkdir(parents=True)  # where `make model` put the real model
    (ws / ".cache" / "models" / smol_gguf.name).symlink_to(smol_gguf)
    run_cli("demo", *QUICK_DEMO, cwd=ws, check=True, timeout=HANG)  # what `make demo` leaves, in less time
    for e in examples():  # a reader writes the files a section shows before running its commands
        if e.name:
            (ws / e.name).write_text(e.body)
    return ws


@pytest.mark.parametrize("example", examples(), ids=lambda e: e.id)
def test_the_examples_run_as_written(example: Example, workspace: Path):
    ran = 0
    if example.name:  # written by the workspace; it must be what the page shows, and parse
        assert (workspace / example.name).read_text() == example.body
        if example.lang == "yaml":
            yaml.safe_load(example.body)
        else:
            compile(example.body, example.id, "exec")
    elif example.lang == "yaml":
        build_config(yaml.safe_load(example.body))  # a config fragment: it must validate
    elif example.lang == "sh":
        for args in commands(example.body):
            proc = run_cli(*args, cwd=workspace, timeout=HANG)
            assert proc.returncode == 0, f"{example.id}: rsft {' '.join(args)}:\n{proc.stderr[-2000:]}"
            ran += 1
    elif example.lang == "python":
        exec(compile(example.body, example.id, "exec"), {})
    RAN[example.id] = ran


def test_the_examples_left_what_they_promise(request: pytest.FixtureRequest):
    """After every example ran (this runs last), what their commands promise is there."""
    missing = [e.id for e in examples() if e.id not in RAN]
    if missing:
        pytest.skip(f"not every example ran to the end in this session (run the whole file): {', '.join(missing)}")
    workspace = request.getfixturevalue("workspace")
    assert sum(RAN.values()) >= 6
    assert (workspace / "runs" / "my-run" / "round-002" / "metrics.json").exists()
    assert (workspace / "rm" / "config.json").exists()
    # the real model's round (README "A real pretrained model"): what tests/real/test_run.py checks in the slow tier
    smol = workspace / "runs" / "smollm2" / "round-000"
    metrics = json.loads((smol / "metrics.json").read_text())
    assert metrics["eval"]["engine"] == "ctranslate2" and metrics["eval"]["precision"] == "float32"
    sampled = {tuple(s["token_ids"]) for line in (smol / "kept.jsonl").read_text().splitlines()
               for s in json.loads(line)["samples"] if s["finish_reason"] == "stop"}
    rows = [json.loads(x) for x in (smol / "selected.jsonl").read_text().splitlines()]
    assert rows and all(tuple(r["completion_ids"]) in sampled and r["completion_ids"][-1] == 2 for r in rows)
    adapter = json.loads((smol / "model-adapter" / "adapter_config.json").read_text())
    assert {"q_proj", "v_proj", "down_proj"} <= set(adapter["target_modules"])  # all-linear on Llama's names
