"""The shape of the house (docs/ARCHITECTURE.md): no import cycles, and imports only flow down the layers.

Imports are read with `ast`, those inside functions and under TYPE_CHECKING
included: a lazy import is still a dependency. Names the registry imports by
string (`rsft.core.registry.BUILTINS`) are not imports, by design.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# bottom to top, one folder per layer (src/rsft/<folder>/): a module may import its own layer and the ones
# below, never above. The folder names are the layers, so where a module sits says which floor it is on.
LAYERS = [
    ("core", ["rsft.core"]),
    ("inputs", ["rsft.inputs"]),
    ("parts", ["rsft.parts"]),
    ("learning", ["rsft.learning"]),
    ("stages", ["rsft.stages"]),
    ("loop", ["rsft.loop"]),
    ("cli", ["rsft.cli", "rsft"]),
]
PACKAGE_ROOT = {"__init__.py", "cli.py"}  # the only modules outside a layer folder


def modules() -> dict[str, Path]:
    out = {}
    for f in (SRC / "rsft").rglob("*.py"):
        name = ".".join(f.relative_to(SRC).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = f
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The rsft modules `name` imports, anywhere in the file."""
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name and not name.startswith(t + "."):
                found.add(t)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: imports(m, p, known) for m, p in known.items()}


def layer(module: str) -> int:
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > best[1]):
                best = (i, len(p))
    assert best is not None, f"{module} is in no layer of LAYERS: place it"
    return best[0]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_every_imported_name_is_an_edge(tmp_path):
    (tmp_path / "m.py").write_text("from rsft import a, b\nimport rsft.c, rsft.d\n")
    known = {name: tmp_path for name in ("rsft", "rsft.a", "rsft.b", "rsft.c", "rsft.d", "rsft.m")}
    assert imports("rsft.m", tmp_path / "m.py", known) == {"rsft.a", "rsft.b", "rsft.c", "rsft.d"}


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_imports_flow_down_the_layers():
    upward = sorted(f"{m} ({LAYERS[layer(m)][0]}) imports {t} ({LAYERS[layer(t)][0]})"
                    for m, targets in graph().items() for t in targets if layer(t) > layer(m))
    assert upward == []


def test_every_registry_entry_imports():
    from rsft.core.registry import BUILDERS, BUILTINS, import_object

    for kind, table in BUILTINS.items():
        for name, target in table.items():
            if name in ("ctranslate2", "vllm"):
                continue  # optional extras (vllm lives in its own venv; see tests/vllm)
            assert callable(import_object(target, f"{kind}.{name}")), (kind, name)
    for kind, target in BUILDERS.items():
        assert callable(import_object(target, kind))


def test_every_module_sits_in_a_layer_folder():
    root = SRC / "rsft"
    loose = sorted(p.name for p in root.glob("*.py") if p.name not in PACKAGE_ROOT)
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert loose == []
    assert folders == sorted(prefix.split(".")[1] for _, prefixes in LAYERS for prefix in prefixes if "." in prefix and prefix != "rsft.cli")
