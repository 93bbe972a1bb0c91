"""The house rules, checked on the code itself: layers import only the layers below them; a class name is
defined once in the package; every package the lab imports is declared; ``lab --help`` loads nothing heavy."""

from __future__ import annotations

import ast
import collections
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "lab"
LAYERS = [["core"], ["store"], ["llm"], ["emulator", "hedge"], ["proxy", "imports", "review"], ["collect"],
          ["analysis"], ["report"], ["cli"]]
"""The layers, bottom first, as docs/design.md draws them: a package imports its own modules and the layers
below it, never a layer above nor a sibling of its own layer."""
LEVEL = {package: level for level, layer in enumerate(LAYERS) for package in layer}
DISTRIBUTIONS = {"dotenv": "python-dotenv"}
"""Import names that differ from the names their distributions are declared by."""


def modules() -> dict[str, ast.Module]:
    return {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): ast.parse(p.read_text())
            for p in sorted(LAB.rglob("*.py")) if "data" not in p.relative_to(LAB).parts}


def lab_imports(tree: ast.Module) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("lab"):
            found |= {f"lab.{a.name}" for a in node.names} if node.module == "lab" else {node.module}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("lab")}
    return found


def package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_package_of_the_lab_is_in_a_layer():
    assert {package(m) for m in modules()} - {None} == set(LEVEL)


def test_a_layer_imports_only_the_layers_below_it():
    wrong = []
    for module, tree in modules().items():
        mine = package(module)
        for imported in lab_imports(tree):
            theirs = package(imported)
            if mine and theirs and theirs != mine and LEVEL[theirs] >= LEVEL[mine]:
                wrong.append(f"{module} imports {imported} ({mine} is layer {LEVEL[mine]}, {theirs} {LEVEL[theirs]})")
    assert not wrong, "\n".join(wrong)


def test_no_class_name_is_defined_twice():
    where = collections.defaultdict(list)
    for module, tree in modules().items():
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                where[node.name].append(module)
    assert {name: places for name, places in where.items() if len(places) > 1} == {}


def test_every_imported_package_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {d.split(">")[0].split("=")[0].split("[")[0].strip().lower()
                for d in [*project["dependencies"], *project["optional-dependencies"]["notebooks"]]}
    imported = set()
    for tree in modules().values():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m != "lab"}
    undeclared = {m for m in third_party if DISTRIBUTIONS.get(m, m).replace("_", "-").lower() not in declared}
    assert not undeclared


def test_lab_help_loads_nothing_heavy():
    # What `lab --help` imports: the speed of the command is the benchmarks' to measure, what it loads is ours.
    code = ("import sys; from lab import cli\n"
            "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('pandas', 'numpy', 'scipy', 'anthropic', 'openai', 'aiohttp', 'pyarrow', "
            "'matplotlib') if m in sys.modules), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.stderr.strip().splitlines()[-1] == "[]"
