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


def code_files(stage: str, variant: str | None = None) -> set[str]:
    """The project files a stage's code consists of (its ``dvc.yaml`` code ``deps``); for
    ``stages.convert`` and a ``variant``, with the modules of its base and passes too (the
    stage imports them by name, :func:`litequant.quantize.registry.code_modules`)."""
    modules = closure(stage)
    if stage == CONVERT and variant is not None:
        from litequant.quantize.registry import code_modules

        for module in code_modules(variant):
            modules |= closure(module)
    files = set()
    for module in modules:
        files.add(module_path(module).relative_to(REPO).as_posix())
        files.update(PACKAGE_DATA.get(module, []))
    return files


CONVERT = "stages.convert"
#: The helpers every pass shares: deps of every ``convert@<variant>`` (fewer slots).
SHARED_BY_PASSES = {"litequant/quantize/flatbuffer.py", "litequant/quantize/convolution.py"}


def convert_stage() -> str:
    """The ``convert`` stage of ``dvc.yaml``, one ``convert@<variant>`` per registry variant,
    its wiring derived from the variant's composition: the code of its base and passes, the
    variants it is built from, the calibration split and params it needs. DVC interpolates no
    list, so each variant's extra deps and params fill numbered slots (``c0``, ``c1`` ...;
    a variant with fewer repeats its first one)."""
    from litequant.quantize import registry

    common = sorted((code_files(CONVERT) | SHARED_BY_PASSES) - {"stages/convert.py"})
    rows = {}
    for name in registry.VARIANTS:
        deps = sorted(code_files(CONVERT, name) - set(common) - {"stages/convert.py"})
        deps += registry.data_deps(name)[1:]
        rows[name] = (deps, registry.params_sections(name))
    width = {kind: max(len(row[index]) for row in rows.values())
             for index, kind in enumerate("dp")}
    lines = ["  convert:",
             "    # generated from litequant/quantize/registry.py: python -m tests.structure "
             "--write-deps",
             "    foreach:"]
    for name, (deps, params) in rows.items():
        deps = deps or ["data/export"]
        params = params or [f"convert.variants.{name}"]
        slots = [f"d{i}: {deps[i] if i < len(deps) else deps[0]}" for i in range(width["d"])]
        slots += [f"p{i}: {params[i] if i < len(params) else params[0]}"
                  for i in range(width["p"])]
        lines.append(f"      {name}: {{{', '.join(slots)}}}")
    lines += ["    do:", "      cmd: python -m stages.convert ${key}", "      deps:",
              "        - stages/convert.py", *(f"        - {dep}" for dep in common),
              "        - data/export", *(f"        - ${{item.d{i}}}" for i in range(width["d"])),
              "      params:", "        - convert.variants.${key}",
              *(f"        - ${{item.p{i}}}" for i in range(width["p"])),
              "      outs:", "        - data/convert/${key}"]
    return "\n".join(lines) + "\n"


def layout_paths(stage: str, key: str = "${key}") -> set[str]:
    """The ``litequant.core.layout`` paths a stage script names: per-variant ones for ``key``,
    or for the variant a module constant names (``layout.convert_dir(ANALYSED_VARIANT)``)."""
    from litequant.core import layout

    tree = ast.parse(module_path(stage).read_text("utf-8"))
    constants = {target.id: node.value.value for node in tree.body
                 if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                 and isinstance(node.value.value, str)
                 for target in node.targets if isinstance(target, ast.Name)}
    fixed = {}  # layout.<per-variant path>(NAME): the variant a module constant names
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and len(node.args) == 1 \
                and isinstance(node.args[0], ast.Name) and node.args[0].id in constants:
            fixed[id(node.func)] = constants[node.args[0].id]
    paths = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == "layout":
            value = getattr(layout, node.attr)
            if callable(value) and not isinstance(value, type):
                parameters = list(inspect.signature(value).parameters)
                if parameters == ["variant"]:
                    value = value(fixed.get(id(node), key))
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


def write_convert_stage(dvc_yaml: Path = REPO / "dvc.yaml") -> None:
    """Replace the ``convert`` stage of ``dvc.yaml`` with :func:`convert_stage`."""
    import re

    text = dvc_yaml.read_text("utf-8")
    pattern = re.compile(r"^  convert:\n.*?(?=^  \w+:\n)", re.M | re.S)
    if not pattern.search(text):
        raise SystemExit("dvc.yaml has no convert stage followed by another stage")
    dvc_yaml.write_text(pattern.sub(lambda _: convert_stage() + "\n", text, count=1), "utf-8")


def main() -> None:
    import sys

    if "--write-deps" in sys.argv:
        write_code_deps()
        write_convert_stage()
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
