"""The code's shape: packages import only the layers before them, functions fit on a screen, and library
code says what is (no run history). Every import is parsed, function-level ones included."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "simrecon"
# Each step imports only earlier steps; packages on one step do not import each other. The top-level modules
# (logs.py: logging set-up; config_io.py: configurations to and from JSON; report.py: the HTML report) sit where their imports put them; __main__.py is the
# CLI's entry point (``python -m simrecon``).
LAYERS: list[tuple[str, ...]] = [
    ("logs",), ("config_io",), ("data",), ("synth", "encoding"), ("fields",), ("render",), ("scene",), ("train",), ("mesh", "lidar"),
    ("compose",), ("sim",), ("export", "report"), ("fleet", "viewer"), ("cli",),
]
RANK = {name: i for i, step in enumerate(LAYERS) for name in step}
MAX_FUNCTION_LINES = 80


def _unit(path: Path, root: Path = PACKAGE) -> str:
    """The layer unit of a module: its top package, or the module's own name at the top level."""
    rel = path.relative_to(root)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imported_units(path: Path, tree: ast.AST, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, unit) of every simrecon module ``path`` imports, relative or absolute, at any depth."""
    pkg = ["simrecon"] + list(path.relative_to(root).with_suffix("").parts[:-1])  # the package the module is in
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - node.level + 1]
                mods = [base + (node.module.split(".") if node.module else [])]
                if not node.module:  # from . import a, b: each name is a module of that package
                    mods = [base + [a.name] for a in node.names]
            else:
                mods = [node.module.split(".")] if node.module else []
        elif isinstance(node, ast.Import):
            mods = [a.name.split(".") for a in node.names]
        else:
            continue
        for mod in mods:
            if len(mod) >= 2 and mod[0] == "simrecon":
                found.append((node.lineno, mod[1]))
    return found


def layer_violations(root: Path = PACKAGE) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        me = _unit(path, root)
        if me in ("__init__", "__main__"):
            continue
        for line, other in _imported_units(path, ast.parse(path.read_text()), root):
            if other == me or other not in RANK:
                continue
            if me not in RANK:
                out.append(f"{path.relative_to(root)}: {me!r} has no place in LAYERS")
            elif RANK[other] >= RANK[me]:
                out.append(f"{path.relative_to(root)}:{line}: {me} imports {other} (a later or the same step)")
    return out


def test_layers_import_only_earlier_layers():
    assert not layer_violations(), "\n".join(layer_violations())


def test_the_layer_check_catches_a_planted_violation(tmp_path):
    for unit, text in {"data/io.py": "def f():\n    from ..cli import main\n",
                       "scene/a.py": "from simrecon.train import trainer\n",
                       "mesh/b.py": "from ..lidar import x\n", "render/ok.py": "from ..fields import y\n"}.items():
        (tmp_path / unit).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / unit).write_text(text)
    found = layer_violations(tmp_path)
    assert len(found) == 3, found
    assert any("data imports cli" in f for f in found) and any("scene imports train" in f for f in found)
    assert any("mesh imports lidar" in f for f in found)


def test_nothing_imports_the_cli():
    users = [f"{p.relative_to(PACKAGE)}" for p in PACKAGE.rglob("*.py") if _unit(p) not in ("cli", "__main__")
             and any(u == "cli" for _, u in _imported_units(p, ast.parse(p.read_text())))]
    assert not users, users


def long_functions(root: Path = PACKAGE) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    out.append(f"{path.relative_to(root)}:{node.lineno} {node.name}: {n} lines")
    return out


def test_functions_fit_on_a_screen():
    assert not long_functions(), "\n".join(long_functions())


def test_library_code_has_no_run_history():
    """Code says what is and why; which session measured what belongs in benchmarks/RESULTS.md."""
    history = re.compile(r"\bsessions?\s+\d+", re.IGNORECASE)
    hits = [f"{p.relative_to(PACKAGE)}:{i}" for p in PACKAGE.rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if history.search(line)]
    assert not hits, f"run history belongs in benchmarks/RESULTS.md: {hits}"
