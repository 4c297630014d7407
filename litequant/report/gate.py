"""The CI regression gate's checks (``python -m stages.check``): limits applied to every variant
row of ``reports/metrics.json`` (top-1) and ``reports/variants.json`` beside it (status, size,
speed-ups), against the same run's float model and a baseline revision.

The latency check compares a variant's p50 latency relative to float32's *of the same benchmark
session* (the report's ``speedup_t<threads>``, written only within one session) with the
baseline's; where either side has latencies but no such ratio, the check says "not comparable"
instead of judging.

With the ``recommend`` budgets, the gate also checks that the report's recommended variant
(``variants.json`` ``recommendation``) still meets them in this run's figures (a report that
recommends nothing fails: no variant meets the budgets), and says when the recommendation
changed against the baseline (which is not a failure)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litequant.core import atomic
from litequant.core.errors import PipelineError, UnusableInputError
from litequant.core.params import CheckParams, RecommendParams
from litequant.quantize.registry import FLOAT_VARIANT
from litequant.report.recommend import SLOW, budget_misses, miss_text
from litequant.report.summary import FLOAT_MODEL_ROW as FLOAT_ROW
from litequant.report.summary import busy_machine

#: Rows of the metrics documents that are not variants.
NOT_VARIANTS = ("data", "model", "latency_session", "recommendation", FLOAT_ROW)
#: The document entry of the report's recommendation (``variants.json``, ``metrics.json``).
RECOMMENDATION = "recommendation"
#: The note of a latency check whose ratio does not exist (latencies of different sessions).
NOT_COMPARABLE = "not comparable"
_TOLERANCE = 1e-9


class GateFailed(PipelineError):
    """At least one limit is violated (exit code 1)."""


@dataclass(frozen=True)
class Check:
    """One row of the gate's table: ``current`` vs ``baseline`` of ``metric`` for ``variant``."""

    variant: str
    metric: str
    baseline: str
    current: str
    delta: str
    limit: str
    ok: bool
    note: str = ""

    @property
    def result(self) -> str:
        return ("ok" if self.ok else "**FAIL**") + (f" ({self.note})" if self.note else "")


# --- reading -----------------------------------------------------------------------------------

def details_path(metrics: Path) -> Path:
    """``variants.json`` beside a ``metrics.json``: the report's non-metric values per row."""
    return metrics.with_name("variants.json")


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UnusableInputError(f"{path} not found: run the pipeline first (dvc repro)")
    try:
        document = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as error:
        raise UnusableInputError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(document, dict):
        raise UnusableInputError(f"{path}: not a JSON object; was it written by stages.report?")
    return document


def merge(details: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    """One ``{row: {key: value}}`` document from ``variants.json`` and ``metrics.json``."""
    merged = {row: dict(values) for row, values in details.items() if isinstance(values, dict)}
    for row, values in metrics.items():
        if isinstance(values, dict):
            merged.setdefault(row, {}).update(values)
    return merged


def read_metrics(path: Path) -> dict[str, Any]:
    """The current run's rows (``{"keras": {...}, "<variant>": {...}, ...}``): ``path``
    (``metrics.json``) merged into :func:`details_path` (``variants.json``)."""
    document = merge(_read_json(details_path(path)), _read_json(path))
    if not isinstance(document.get(FLOAT_ROW), dict) or "top1" not in document[FLOAT_ROW]:
        raise UnusableInputError(f"{path}: no {FLOAT_ROW!r} row (the float baseline of the run); "
                                 "was it written by stages.report?")
    return document


def variant_rows(document: dict[str, Any]) -> list[str]:
    """The variant rows of a metrics document, in file order (everything but data/keras)."""
    return [name for name, row in document.items()
            if name not in NOT_VARIANTS and isinstance(row, dict)]


def _run(command: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise UnusableInputError(f"{command[0]}: command not found") from None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def merge_base(branch: str) -> str:
    """The commit where ``HEAD`` forked from ``branch`` (``git merge-base HEAD branch``)."""
    done = _run(["git", "merge-base", "HEAD", branch])
    if done.returncode != 0:
        raise UnusableInputError(f"cannot find the merge base of HEAD and {branch!r} "
                                 f"({_last_line(done.stderr)}); pass --baseline REV, or "
                                 "--base-branch (in CI: fetch the history, e.g. fetch-depth: 0)")
    return done.stdout.strip()


def metrics_diff(revision: str, path: Path) -> dict[str, dict[str, Any]]:
    """``dvc metrics diff --json --all REVISION`` for ``path`` and its :func:`details_path`:
    ``{"row.key": {old, new, diff}}`` (values of ``path`` win).

    ``dvc metrics diff`` itself never fails on a regression; this returns its parsed JSON
    (empty when neither side has the files).
    """
    details = details_path(path)
    done = _run([sys.executable, "-m", "dvc", "metrics", "diff", "--json", "--all", revision,
                 "--targets", str(details), str(path)])
    if done.returncode != 0:
        raise UnusableInputError(f"dvc metrics diff {revision}: {_last_line(done.stderr)}")
    try:
        parsed = json.loads(done.stdout or "{}")
    except json.JSONDecodeError:
        raise UnusableInputError(f"dvc metrics diff {revision}: unexpected output "
                                 f"{done.stdout[:200]!r}") from None
    return {**parsed.get(details.as_posix(), {}), **parsed.get(path.as_posix(), {})}


def baseline_from_diff(diff: dict[str, dict[str, Any]], revision: str, path: Path
                       ) -> dict[str, Any]:
    """The baseline metrics (the diff's ``old`` side) as a nested ``{row: {key: value}}``."""
    baseline: dict[str, Any] = {}
    for flat_key, change in diff.items():
        row, _, key = flat_key.partition(".")
        if key and isinstance(change, dict) and change.get("old") is not None:
            baseline.setdefault(row, {})[key] = change["old"]
    if FLOAT_ROW not in baseline:
        raise UnusableInputError(f"baseline {revision} has no {path} metrics (commit the "
                                 "report there, or run with --no-baseline)")
    return baseline


# --- checking ----------------------------------------------------------------------------------

def _number(row: dict[str, Any] | None, key: str) -> float | None:
    value = None if row is None else row.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _points(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _signed(value: float) -> str:
    return f"{value:+.2f}"


def _percent(value: float) -> str:
    return f"{100 * value:+.1f} %"


def latency_ratio(document: dict[str, Any], variant: str, threads: int) -> float | None:
    """``variant``'s p50 latency over float32's of the same benchmark session: the inverse of
    the report's ``speedup_t<threads>`` (None when the report gave no speed-up)."""
    speedup = _number(document.get(variant), f"speedup_t{threads}")
    if speedup is None or speedup <= 0:
        return None
    return 1.0 / speedup


def _has_latency(document: dict[str, Any] | None, variant: str, threads: int) -> bool:
    return _number((document or {}).get(variant), f"latency_p50_ms_t{threads}") is not None


def check_variant(variant: str, current: dict[str, Any], baseline: dict[str, Any] | None,
                  limits: CheckParams) -> list[Check]:
    """Every check of one variant row (see the module docstring)."""
    row = current[variant]
    old = None if baseline is None else baseline.get(variant)
    checks: list[Check] = []
    if row.get("failed"):
        was = "–" if old is None else "failed" if old.get("failed") else "ok"
        return [Check(variant, "status", was, "failed", "–", "must not fail", False)]

    top1 = _number(row, "top1")
    limit = limits.limit(variant, "max_top1_drop_vs_float")
    float_top1 = _number(current[FLOAT_ROW], "top1")
    if limit is not None and top1 is not None and float_top1 is not None:
        delta = top1 - float_top1
        checks.append(Check(variant, f"top1 vs float ({FLOAT_ROW}, same run)",
                            _points(float_top1), _points(top1), _signed(delta),
                            f"≥ {-limit:.2f}", delta >= -limit - _TOLERANCE))

    if baseline is None:
        return checks
    if old is None:
        checks.append(Check(variant, "baseline", "–", "present", "–", "–", True,
                            "new variant: no baseline"))
        return checks

    limit = limits.limit(variant, "max_top1_regression")
    old_top1 = _number(old, "top1")
    if limit is not None and top1 is not None and old_top1 is not None:
        delta = top1 - old_top1
        checks.append(Check(variant, "top1 vs baseline", _points(old_top1), _points(top1),
                            _signed(delta), f"≥ {-limit:.2f}", delta >= -limit - _TOLERANCE))

    limit = limits.limit(variant, "max_size_growth")
    size, old_size = _number(row, "size_bytes"), _number(old, "size_bytes")
    if limit is not None and size is not None and old_size:
        growth = size / old_size - 1
        checks.append(Check(variant, "size (bytes)", f"{old_size:.0f}", f"{size:.0f}",
                            _percent(growth), f"≤ {_percent(limit)}",
                            growth <= limit + _TOLERANCE))

    limit = limits.limit(variant, "max_latency_regression")
    threads = limits.latency_threads
    ratio = latency_ratio(current, variant, threads)
    old_ratio = latency_ratio(baseline, variant, threads)
    metric = f"p50 latency / {FLOAT_VARIANT} ({threads} thr)"
    if limit is not None and variant != FLOAT_VARIANT and ratio and old_ratio:
        growth = ratio / old_ratio - 1
        checks.append(Check(variant, metric, f"{old_ratio:.3f}", f"{ratio:.3f}",
                            _percent(growth), f"≤ {_percent(limit)}",
                            growth <= limit + _TOLERANCE))
    elif limit is not None and variant != FLOAT_VARIANT and (
            (ratio is None and _has_latency(current, variant, threads))
            or (old_ratio is None and _has_latency(baseline, variant, threads))):
        side, document = ("current run", current) if ratio is None else ("baseline", baseline)
        session = document.get("latency_session") or {}
        why = (busy_machine(session) if threads in (session.get("contended_threads") or [])
               else f"no {FLOAT_VARIANT} latency of the same benchmark session")
        checks.append(Check(
            variant, metric, "–" if old_ratio is None else f"{old_ratio:.3f}",
            "–" if ratio is None else f"{ratio:.3f}", "–", f"≤ {_percent(limit)}", True,
            f"{NOT_COMPARABLE}: the {side} has no speed-up at {threads} thread(s): {why}"))
    return checks


def recommended(document: dict[str, Any] | None) -> tuple[bool, str | None]:
    """Whether ``document`` (a merged metrics document) records a recommendation, and the
    recommended variant (``None``: nothing met the budgets)."""
    entry = (document or {}).get(RECOMMENDATION)
    if not isinstance(entry, dict) or "variant" not in entry:
        return False, None
    return True, entry["variant"]


def recommendation_checks(current: dict[str, Any], baseline: dict[str, Any] | None,
                          budgets: RecommendParams) -> list[Check]:
    """The recommended variant still meets ``budgets`` in this run's figures (a latency
    ceiling at a contended thread count is "not comparable", not judged); and whether the
    recommendation changed against the baseline (said, not failed). None for a report that
    records no recommendation."""
    present, variant = recommended(current)
    if not present:
        return []
    had, old = recommended(baseline)
    before = (old or "none") if had else "–"
    limit = "params.yaml recommend"
    if variant is None:
        return [Check("recommendation", "meets the budgets", before, "none", "–", limit, False,
                      "no variant meets the budgets (summary.md names the closest)")]
    row = current.get(variant)
    if not isinstance(row, dict):
        return [Check("recommendation", "meets the budgets", before, variant, "–", limit, False,
                      f"{variant} has no row in the report")]
    misses = budget_misses(row, budgets)
    session = current.get("latency_session") or {}
    contended = [str(t) for t in session.get("contended_threads") or []]
    note = ""
    if str(budgets.threads) in contended and budgets.max_p50_ms is not None:
        misses = [m for m in misses if m.kind != SLOW]
        note = (f"{NOT_COMPARABLE}: p50 ceiling at {budgets.threads} thread(s): "
                f"{busy_machine(session)}")
    if misses:
        note = miss_text(misses)
    checks = [Check(f"recommended: {variant}", "meets the budgets", before, variant, "–", limit,
                    not misses, note)]
    if had and old != variant:
        reasons = (current.get(RECOMMENDATION) or {}).get("reasons") or {}
        why = reasons.get(old) if old else None
        checks.append(Check("recommendation", "changed vs baseline", old or "none", variant,
                            "changed", "–", True, f"{old} now: {why}" if why else "changed"))
    return checks


def run_checks(current: dict[str, Any], baseline: dict[str, Any] | None,
               limits: CheckParams) -> list[Check]:
    """The checks of every variant row of ``current``, in the file's order."""
    variants = variant_rows(current)
    if not variants:
        raise UnusableInputError("the metrics have no variant rows to check")
    return [check for variant in variants
            for check in check_variant(variant, current, baseline, limits)]


def markdown(checks: list[Check], revision: str | None, notes: list[str]) -> str:
    """The gate's verdict and table, ready for a pull-request comment."""
    failures = [c for c in checks if not c.ok]
    verdict = (f"**FAIL**: {len(failures)} of {len(checks)} checks violate the limits"
               if failures else f"**PASS**: all {len(checks)} checks within the limits")
    against = f"baseline `{revision}`" if revision else "no baseline revision (same-run checks)"
    lines = ["## Quantization regression gate", "", f"{verdict}; {against}.", "",
             "| variant | metric | baseline | current | Δ | limit | ok/FAIL |",
             "|---|---|---:|---:|---:|---:|---|"]
    lines += [f"| {c.variant} | {c.metric} | {c.baseline} | {c.current} | {c.delta} | "
              f"{c.limit} | {c.result} |" for c in checks]
    lines += ["", "top-1 in percent (Δ in points). \"top1 vs float\" compares with the float Keras "
              "model of the same run; latency is the ratio to the float32 variant of the same "
              "benchmark session (absolute times are never compared across runs; \"not "
              "comparable\" where a side has no such ratio). Limits: params.yaml `check`."]
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def comparability_notes(current: dict[str, Any], baseline: dict[str, Any] | None) -> list[str]:
    """Warnings when the two runs did not evaluate the same amount of data."""
    if baseline is None:
        return []
    notes = []
    for key in ("evaluation_images", "calibration_images"):
        new, old = _number(current.get("data"), key), _number(baseline.get("data"), key)
        if new is not None and old is not None and new != old:
            notes.append(f"data.{key} differs (baseline {old:.0f}, current {new:.0f}): "
                         "deltas against the baseline are not like-for-like.")
    return notes


def check(limits: CheckParams, baseline_rev: str | None, base_branch: str, metrics: Path,
          output: Path, budgets: RecommendParams | None = None) -> list[Check]:
    """Run the gate: print and write the table; raise :class:`GateFailed` on a violation.

    ``baseline_rev``: a git revision, ``None`` for the merge base with ``base_branch``, or
    ``""`` for no baseline comparison; ``budgets``: the ``recommend`` section, to check the
    recommendation too (:func:`recommendation_checks`).
    """
    current = read_metrics(metrics)
    revision = None
    old = None
    if baseline_rev != "":
        revision = baseline_rev or merge_base(base_branch)
        old = baseline_from_diff(metrics_diff(revision, metrics), revision, metrics)
    checks = run_checks(current, old, limits)
    if budgets is not None:
        checks += recommendation_checks(current, old, budgets)
    text = markdown(checks, revision, comparability_notes(current, old))
    atomic.write_text(output, text)
    print(text, end="")
    failures = [c for c in checks if not c.ok]
    if failures:
        raise GateFailed("quantization regression gate failed: " + "; ".join(
            f"{c.variant} {c.metric}" for c in failures) + f" (table in {output})")
    return checks
