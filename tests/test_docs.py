"""The documentation says only what is true of this checkout.

README.md is the front page (at most 10 KB); the guide, the methods, the design and the dated
results live in docs/. These checks read the Markdown and compare what it names with the code:
the commands it shows, the ``params.yaml`` keys and the DVC metrics keys it quotes, and the
project files it points at. No network, no TensorFlow; a few seconds.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_LIMIT = 10 * 1024  # bytes
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]

#: Top-level packages whose ``python -m`` commands must name a module of this checkout.
PROJECT_PACKAGES = ("stages", "litequant", "tests", "benchmarks")
#: ``dvc exp show`` columns that are neither params nor metrics.
DVC_COLUMNS = {"Experiment", "State", "Created", "rev", "typ", "Executor", "parent"}
#: Suffixes of file names that look like dotted params keys (``model.tflite``, ``check.md``).
FILE_SUFFIXES = {"json", "tflite", "keras", "md", "csv", "npy", "png", "h5", "txt", "py", "yml",
                 "yaml", "tsv", "lock", "html"}

_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
_INLINE = re.compile(r"`([^`]+)`")
_MODULE_COMMAND = re.compile(r"python -m ([A-Za-z_][\w.]*)")
_SCRIPT_COMMAND = re.compile(r"python ((?:benchmarks|stages|tests)/[\w./-]+\.py)")
_SET_PARAM = re.compile(r"-S\s+['\"]?([A-Za-z_][\w.]*)=")
_PROJECT_PATH = re.compile(r"^((?:litequant|stages|tests|benchmarks|\.github|\.ci)/[\w./-]*)$")
_DOTTED_MODULE = re.compile(r"^(litequant(?:\.\w+)+)$")
_METRICS_COMMAND = re.compile(r"dvc (?:exp show|metrics show|metrics diff)\b[^\n`]*")


def _text(path: Path) -> str:
    return path.read_text("utf-8")


def _split(path: Path) -> tuple[list[str], list[str]]:
    """The fenced code blocks of a document and its inline code spans (outside the blocks)."""
    text = _text(path)
    blocks = _FENCE.findall(text)
    prose = _FENCE.sub("", text)
    return blocks, _INLINE.findall(prose)


def _code(path: Path) -> list[str]:
    """Every piece of code in a document: fenced blocks (``\\`` continuations joined) and spans."""
    blocks, spans = _split(path)
    return [block.replace("\\\n", " ") for block in blocks] + spans


def _everywhere(pattern: re.Pattern[str]) -> dict[str, list[str]]:
    """Every match of ``pattern`` in the code of the documents: match -> documents naming it."""
    found: dict[str, list[str]] = {}
    for path in DOCUMENTS:
        for code in _code(path):
            for match in pattern.findall(code):
                found.setdefault(match, []).append(path.relative_to(ROOT).as_posix())
    return found


# --- (1) the front page ---------------------------------------------------------------------

def test_readme_is_a_front_page():
    size = README.stat().st_size
    assert size <= README_LIMIT, (
        f"README.md is {size} bytes (limit {README_LIMIT}): move detail into docs/")


def test_readme_points_at_every_document():
    readme = _text(README)
    assert len(DOCUMENTS) > 1, "no docs/*.md"
    missing = [path.relative_to(ROOT).as_posix() for path in DOCUMENTS[1:]
               if path.relative_to(ROOT).as_posix() not in readme]
    assert not missing, f"README.md does not link {missing}"


# --- (2) commands ---------------------------------------------------------------------------

def _module_file(module: str) -> Path | None:
    base = ROOT / module.replace(".", "/")
    for candidate in (base.with_suffix(".py"), base / "__main__.py"):
        if candidate.is_file():
            return candidate
    return None


def _project_modules() -> dict[str, list[str]]:
    return {module: where for module, where in _everywhere(_MODULE_COMMAND).items()
            if module.split(".")[0] in PROJECT_PACKAGES}


def test_commands_name_modules_and_scripts_that_exist():
    modules, scripts = _project_modules(), _everywhere(_SCRIPT_COMMAND)
    assert "stages.check" in modules, "the CI gate's command is documented nowhere"
    missing = [f"python -m {module} ({', '.join(sorted(set(where)))})"
               for module, where in sorted(modules.items()) if _module_file(module) is None]
    missing += [f"python {script} ({', '.join(sorted(set(where)))})"
                for script, where in sorted(scripts.items()) if not (ROOT / script).is_file()]
    assert not missing, "documented commands that name no file:\n" + "\n".join(missing)


def test_documented_stage_commands_answer_help():
    stages = sorted(module for module in _project_modules() if module.startswith("stages."))
    assert stages, "no python -m stages.X command documented"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    running = {stage: subprocess.Popen([sys.executable, "-m", stage, "--help"], cwd=ROOT, env=env,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for stage in stages}
    failed = []
    for stage, process in running.items():
        out, err = process.communicate(timeout=60)
        if process.returncode != 0 or "usage:" not in out:
            failed.append(f"python -m {stage} --help: exit {process.returncode}\n{err[-500:]}")
    assert not failed, "\n".join(failed)


# --- (3) params keys ------------------------------------------------------------------------

def _params() -> dict[str, Any]:
    return yaml.safe_load(_text(ROOT / "params.yaml"))


def _resolves(params: dict[str, Any], key: str) -> bool:
    """``key`` names a node of ``params`` (``<name>`` stands for any key of a non-empty map)."""
    node: Any = params
    for part in key.split("."):
        if not isinstance(node, dict):
            return False
        if part.startswith("<") and part.endswith(">"):
            if not node:
                return False
            node = next(iter(node.values()))
        elif part in node:
            node = node[part]
        else:
            return False
    return True


def _documented_params(sections: list[str]) -> dict[str, list[str]]:
    """Params keys the documents quote: ``-S key=...`` anywhere and inline ``section.key``."""
    inline = re.compile(rf"^((?:{'|'.join(map(re.escape, sections))})(?:\.[\w<>-]+)+)")
    found: dict[str, list[str]] = {}
    for path in DOCUMENTS:
        name = path.relative_to(ROOT).as_posix()
        blocks, spans = _split(path)
        keys = [key for code in _code(path) for key in _SET_PARAM.findall(code)]
        keys += [match.group(1) for span in spans if (match := inline.match(span.strip()))]
        for key in keys:
            if key.split(".")[0] in sections and key.rsplit(".", 1)[-1] not in FILE_SUFFIXES:
                found.setdefault(key, []).append(name)
    return found


def test_documented_params_keys_exist():
    params = _params()
    documented = _documented_params(list(params))
    for expected in ("fetch.source", "calibration.num_images", "benchmark.threads"):
        assert expected in documented, f"{expected} is documented nowhere"
    metrics = metrics_keys()  # `peer.top1` is the peer row's metric, not a key of section peer
    unknown = [f"{key} ({', '.join(sorted(set(where)))})"
               for key, where in sorted(documented.items())
               if not _resolves(params, key) and key not in metrics]
    assert not unknown, "params keys the docs name that params.yaml does not have:\n" + "\n".join(
        unknown)


# --- (4) DVC metrics keys -------------------------------------------------------------------

def _flatten(document: dict[str, Any], prefix: str = "") -> set[str]:
    keys = set()
    for key, value in document.items():
        if isinstance(value, dict):
            keys |= _flatten(value, f"{prefix}{key}.")
        else:
            keys.add(f"{prefix}{key}")
    return keys


def metrics_keys() -> set[str]:
    """The keys ``reports/metrics.json`` can have, as ``dvc`` shows them (``int8.top1``), from
    the report's own :func:`metrics_document` fed a row per model with every table column."""
    from litequant.report.summary import (
        FLOAT_MODEL_ROW,
        PEER_ROW,
        metrics_document,
        plot_columns,
        table_columns,
    )

    sample = {"latency_p50_ms_t1": 1.0, "speedup_t1": 1.0, "top1": 1.0, "top5": 1.0,
              "top5_overlap": 1.0, "threads": 1}
    columns = set(table_columns([sample])) | set(plot_columns([sample])) | set(sample)
    names = [FLOAT_MODEL_ROW, PEER_ROW, *_params()["convert"]["variants"]]
    rows = [{**{column: 50.0 for column in columns}, "variant": name, "status": "ok",
             "tool": "tool", "notes": ""} for name in names]
    return _flatten(metrics_document(rows))


def _metrics_commands() -> list[tuple[str, str]]:
    found = []
    for path in DOCUMENTS:
        for code in _code(path):
            found += [(path.relative_to(ROOT).as_posix(), command)
                      for command in _METRICS_COMMAND.findall(code)]
    return found


def _named_keys(command: str) -> list[str]:
    """The keys a ``dvc exp show`` / ``dvc metrics`` command names (``--keep``/``--drop`` regex
    alternatives, ``--sort-by``), or none when it targets another file than the metrics."""
    words = shlex.split(command, comments=True)
    targets = [words[i + 1] for i, word in enumerate(words[:-1]) if word == "--targets"]
    if any(target != "reports/metrics.json" for target in targets):
        return []
    keys = []
    for i, word in enumerate(words[:-1]):
        if word in ("--keep", "--drop"):
            keys += [part.strip("^$") for part in words[i + 1].split("|")]
        elif word == "--sort-by":
            keys.append(words[i + 1])
    return [key for key in keys if key and key != ".*" and key not in DVC_COLUMNS]


def test_metrics_keys_in_dvc_examples_are_written_by_the_report():
    known, params = metrics_keys(), _params()
    assert "int8.top1" in known and "keras.top1" in known, sorted(known)
    commands = _metrics_commands()
    assert any(_named_keys(command) for _, command in commands), "no dvc exp show --keep example"
    wrong = [f"{key} in `{command.strip()}` ({where})" for where, command in commands
             for key in _named_keys(command) if key not in known and not _resolves(params, key)]
    assert not wrong, ("keys neither reports/metrics.json nor params.yaml has:\n"
                       + "\n".join(wrong))


# --- (5) project files ----------------------------------------------------------------------

def _names_code(dotted: str) -> bool:
    """``dotted`` is a module or package of the project, or a name defined at the top level of
    one (``litequant.core.arrays.NpyRows``)."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        base = ROOT / "/".join(parts[:n])
        source = next((path for path in (base.with_suffix(".py"), base / "__init__.py")
                       if path.is_file()), None)
        if source is None:
            continue
        if n == len(parts):
            return True
        defined = rf"^(?:def|class)\s+{re.escape(parts[n])}\b|^{re.escape(parts[n])}\s*[:=]"
        return re.search(defined, _text(source), re.M) is not None
    return False


def test_project_paths_and_modules_named_exist():
    missing = []
    for path in DOCUMENTS:
        name = path.relative_to(ROOT).as_posix()
        for span in _split(path)[1]:
            span = span.strip()
            if (match := _PROJECT_PATH.match(span)) and not (ROOT / match.group(1)).exists():
                missing.append(f"{span} ({name})")
            elif (match := _DOTTED_MODULE.match(span)) and not _names_code(match.group(1)):
                missing.append(f"{span} ({name})")
    assert not missing, "the docs name files or modules that do not exist:\n" + "\n".join(
        missing)
