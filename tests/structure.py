"""The project's import graph and what each stage touches, derived from the code itself.

``python -m tests.structure`` prints, for every stage script, its import depth (the longest
chain of project modules it imports, itself included), the project files it imports (what its
``dvc.yaml`` code ``deps`` must be) and the ``litequant.core.layout`` paths it names (what its data
``deps`` and ``outs`` must cover). ``tests/test_structure.py`` asserts the same facts;
``python -m tests.structure --write-deps`` rewrites the code ``deps`` of every stage in
``dvc.yaml`` from the imports.

Imports are read with ``ast`` from every ``import``/``from ... import`` statement, including
lazy ones inside functions; only modules of this project (``stages``, ``litequant``) count.
"""

from __future__ import annotations

import ast
import functools
import inspect
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("stages", "litequant")
#: Data files a library module reads through ``importlib.resources``.
PACKAGE_DATA = {"litequant.data.labels": ["litequant/data/imagenet_classes.tsv"]}


def module_path(module: str) -> Path:
    return REPO / (module.replace(".", "/") + ".py")


def project_modules() -> list[str]:
    """Every non-package module of the project (``stages.fetch``, ``litequant.core.params``...)."""
    return sorted(".".join(path.relative_to(REPO).with_suffix("").parts)
                  for package in PACKAGES for path in (REPO / package).rglob("*.py")
                  if path.stem != "__init__")


@functools.cache
def imports_of(module: str) -> frozenset[str]:
    """The project modules ``module`` imports directly (at any nesting level)."""
    tree = ast.parse(module_path(module).read_text("utf-8"))
    found = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name.split(".")[0] in PACKAGES and module_path(name).is_file():
                found.add(name)
    return frozenset(found - {module})


def stage_modules() -> list[str]:
    return [m for m in project_modules() if m.startswith("stages.")]


@functools.cache
def depth(module: str, seen: tuple[str, ...] = ()) -> int:
    """Layers in the longest import chain from ``module`` (1: it imports no project module).

    Raises ``RecursionError``-free ``ValueError`` naming the cycle when there is one.
    """
    if module in seen:
        raise ValueError("import cycle: " + " -> ".join((*seen, module)))
    below = [depth(child, (*seen, module)) for child in imports_of(module)]
    return 1 + max(below, default=0)


def closure(module: str) -> set[str]:
    """``module`` and every project module it imports, transitively."""
    found, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current not in found:
            found.add(current)
            todo.extend(imports_of(current))
    return found


def code_files(stage: str) -> set[str]:
    """The project files a stage's code consists of (its ``dvc.yaml`` code ``deps``)."""
    files = set()
    for module in closure(stage):
        files.add(module_path(module).relative_to(REPO).as_posix())
        files.update(PACKAGE_DATA.get(module, []))
    return files


def layout_paths(stage: str, key: str = "${key}") -> set[str]:
    """The ``litequant.core.layout`` paths a stage script names (per-variant ones for ``key``)."""
    from litequant.core import layout

    tree = ast.parse(module_path(stage).read_text("utf-8"))
    paths = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == "layout":
            value = getattr(layout, node.attr)
            if callable(value) and not isinstance(value, type):
                parameters = list(inspect.signature(value).parameters)
                if parameters == ["variant"]:
                    value = value(key)
                else:
                    continue  # a reader: it is handed a path the script names
            values = value.values() if isinstance(value, dict) else [value]
            paths.update(Path(v).as_posix() for v in values if isinstance(v, Path))
    return paths


def write_code_deps(dvc_yaml: Path = REPO / "dvc.yaml") -> None:
    """Rewrite the code part of every stage's ``deps`` in ``dvc.yaml`` from :func:`code_files`
    (the stage's own script first, then the library files in order; data deps are kept)."""
    import re

    lines = dvc_yaml.read_text("utf-8").split("\n")
    out: list[str] = []
    stage = None
    index = 0
    while index < len(lines):
        line = lines[index]
        match = re.match(r"^\s+cmd: python -m stages\.(\w+)", line)
        stage = match.group(1) if match else stage
        out.append(line)
        index += 1
        if line.strip() != "deps:" or stage is None:
            continue
        indent = " " * (len(lines[index]) - len(lines[index].lstrip()))
        listed = []
        while index < len(lines) and lines[index].strip().startswith("- "):
            listed.append(lines[index].strip()[2:])
            index += 1
        own = f"stages/{stage}.py"
        code = [own] + sorted(code_files(f"stages.{stage}") - {own})
        data = [d for d in listed if not d.startswith(PACKAGES)]
        out += [f"{indent}- {dep}" for dep in code + data]
    dvc_yaml.write_text("\n".join(out), "utf-8")


def main() -> None:
    import sys

    if "--write-deps" in sys.argv:
        write_code_deps()
        return
    print(f"{'stage':<24} {'depth':>5}  imports")
    for stage in stage_modules():
        own = sorted(m for m in closure(stage) if m != stage)
        print(f"{stage:<24} {depth(stage):>5}  {', '.join(own)}")
    print("\nlibrary modules by depth:")
    for module in project_modules():
        if module.startswith("litequant."):
            print(f"  {depth(module)}  {module}  <- {', '.join(sorted(imports_of(module)))}")


if __name__ == "__main__":
    main()
