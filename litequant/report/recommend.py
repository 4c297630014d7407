"""Which variant to ship: the budgets of ``params.yaml`` ``recommend`` applied to the report's rows.

A variant *qualifies* when it converted, loses at most ``max_top1_drop`` top-1 points against
the float Keras model of the same run, agrees with it on at least ``min_agreement`` % of the
evaluation images, and stays under every ceiling that is set (p50 latency at ``threads``,
``.tflite`` size, runtime memory). The qualifying variants are ranked by ``rank_by``
(``latency``: p50 at ``threads``; ``size``; ``memory``): the best value, and every value within
``rank_tolerance`` (relative) of it, count as equal, and the most faithful of those (agreement,
then top-1) ranks first; then the next, the same way. The first is *recommended*, the second the
*runner-up*. Every other variant gets its reason: a budget it misses (too unfaithful, too slow,
too large, too much memory, a figure not measured, a latency of another benchmark session), a
failed conversion, or, for one that qualifies, how it compares with the recommended one: slower
(larger, ...) by how much, and whether its fidelity gain is beyond noise (the paired won / lost
sign test of :func:`litequant.report.summary.beyond_noise`, images where it agrees with the float
model and the recommended one does not, and the reverse). When nothing qualifies, the closest
variant is named: of those missing the fewest budgets, the most faithful whose relative excess
over them (:class:`Miss`) is within ``rank_tolerance`` of the smallest.

Latency budgets read absolute p50 times of one benchmark session; a variant timed in another
session is "not comparable", and a thread count the session found contended by other processes
is recommended on with a caveat saying so. The float Keras model and the peer model are not
candidates.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from litequant.core.errors import PipelineError
from litequant.core.params import RecommendParams
from litequant.quantize.registry import FLOAT_VARIANT
from litequant.report.summary import (
    FLOAT_MODEL_ROW,
    PEER_ROW,
    beyond_noise,
    busy_machine,
    paired_changes,
)

#: Slack of the budget comparisons (a figure exactly on its budget qualifies).
_TOLERANCE = 1e-9

#: Verdict kinds of the compact table, in the order they are listed.
RECOMMENDED, RUNNER_UP, QUALIFIES = "recommended", "runner-up", "qualifies"
UNFAITHFUL, SLOW, LARGE, MEMORY = ("too unfaithful", "too slow", "too large", "too much memory")
NOT_MEASURED, NOT_COMPARABLE, FAILED = "not measured", "not comparable", "conversion failed"


@dataclass(frozen=True)
class Miss:
    """One budget a variant misses: ``kind`` (``too slow`` ...), the figures in words, and by
    how much, relative (``value / ceiling - 1``; for top-1 and agreement the points missed over
    the points the budget allows, at least 1; infinite for a figure not measured)."""

    kind: str
    text: str
    excess: float = math.inf


@dataclass(frozen=True)
class Verdict:
    """Why a variant was or was not recommended (``reason`` empty for the recommended one)."""

    variant: str
    kind: str
    reason: str

    @property
    def qualifies(self) -> bool:
        return self.kind in (RECOMMENDED, RUNNER_UP, QUALIFIES)


@dataclass(frozen=True)
class Recommendation:
    """The report's answer: ``recommended`` (``None`` when nothing qualifies, then ``closest``),
    ``runner_up``, the qualifying variants best first (``ranked``), a :class:`Verdict` per
    candidate (qualifying ones first, in rank order) and caveats (e.g. a busy machine)."""

    budgets: RecommendParams
    recommended: str | None
    runner_up: str | None
    closest: str | None
    ranked: list[str]
    verdicts: dict[str, Verdict]
    caveats: list[str] = field(default_factory=list)


def rank_column(budgets: RecommendParams) -> str:
    """The row column ``rank_by`` minimises (``latency_p50_ms_t<threads>``, ``size_bytes``,
    ``memory_mib``)."""
    return {"latency": f"latency_p50_ms_t{budgets.threads}", "size": "size_bytes",
            "memory": "memory_mib"}[budgets.rank_by]


def _number(row: dict[str, Any], key: str) -> float | None:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _thr(threads: int) -> str:
    return f"{threads} thread{'' if threads == 1 else 's'}"


def describe_value(budgets: RecommendParams, value: float) -> str:
    """A value of the rank column in words (``1.43 ms``, ``4.02 MB``, ``9.8 MiB``)."""
    if budgets.rank_by == "latency":
        return f"{value:.2f} ms"
    if budgets.rank_by == "size":
        return f"{value / 1e6:.2f} MB"
    return f"{value:.1f} MiB"


def _latency_matters(budgets: RecommendParams) -> bool:
    return budgets.rank_by == "latency" or budgets.max_p50_ms is not None


def budget_misses(row: dict[str, Any], budgets: RecommendParams) -> list[Miss]:
    """Every budget of ``budgets`` a report row (``summary.build_rows``, or a ``variants.json``
    row) misses; empty when it qualifies. Top-1 reads ``delta_top1`` (points vs the float Keras
    model of the same run), agreement is in %, size in bytes, memory in MiB."""
    misses = []
    delta, agreement = _number(row, "delta_top1"), _number(row, "agreement")
    if delta is None or agreement is None:
        return [Miss(NOT_MEASURED, "not evaluated (no top-1 or agreement)")]
    if delta < -budgets.max_top1_drop - _TOLERANCE:
        misses.append(Miss(UNFAITHFUL, f"top-1 {delta:+.2f} points vs the float model "
                                       f"(budget -{budgets.max_top1_drop:.2f})",
                           (-delta - budgets.max_top1_drop) / max(budgets.max_top1_drop, 1.0)))
    if agreement < budgets.min_agreement - _TOLERANCE:
        images = _number(row, "images")
        short = "" if not images else (
            f", {math.ceil((budgets.min_agreement - agreement) * images / 100 - 1e-6)} of "
            f"{images:.0f} images short")
        misses.append(Miss(UNFAITHFUL, f"agreement {agreement:.2f} % < {budgets.min_agreement:.2f}"
                                       f" %{short}", (budgets.min_agreement - agreement)
                           / max(100.0 - budgets.min_agreement, 1.0)))
    latency = _number(row, f"latency_p50_ms_t{budgets.threads}")
    if _latency_matters(budgets) and latency is None:
        misses.append(Miss(NOT_MEASURED, f"no p50 latency at {_thr(budgets.threads)}"))
    elif budgets.max_p50_ms is not None and latency is not None \
            and latency > budgets.max_p50_ms + _TOLERANCE:
        misses.append(Miss(SLOW, f"p50 {latency:.2f} ms at {_thr(budgets.threads)} > "
                                 f"{budgets.max_p50_ms:g} ms", latency / budgets.max_p50_ms - 1))
    size = _number(row, "size_bytes")
    if budgets.max_size_mb is not None and size is not None \
            and size / 1e6 > budgets.max_size_mb + _TOLERANCE:
        misses.append(Miss(LARGE, f"{size / 1e6:.2f} MB > {budgets.max_size_mb:g} MB",
                           size / 1e6 / budgets.max_size_mb - 1))
    memory = _number(row, "memory_mib")
    if (budgets.max_memory_mib is not None or budgets.rank_by == "memory") and memory is None:
        misses.append(Miss(NOT_MEASURED, "runtime memory not measured"))
    elif budgets.max_memory_mib is not None and memory is not None \
            and memory > budgets.max_memory_mib + _TOLERANCE:
        misses.append(Miss(MEMORY, f"{memory:.1f} MiB > {budgets.max_memory_mib:g} MiB",
                           memory / budgets.max_memory_mib - 1))
    return misses


def miss_text(misses: list[Miss]) -> str:
    """Misses in words, those of one kind together: ``too unfaithful: top-1 ..., agreement ...;
    too slow: ...``."""
    kinds: dict[str, list[str]] = {}
    for miss in misses:
        kinds.setdefault(miss.kind, []).append(miss.text)
    return "; ".join(f"{kind}: {', '.join(texts)}" for kind, texts in kinds.items())


def _check_threads(candidates: list[dict[str, Any]], budgets: RecommendParams) -> None:
    """One line when the latency budgets read a thread count the benchmark did not measure."""
    if not _latency_matters(budgets):
        return
    measured = sorted({int(key.rsplit("_t", 1)[1]) for row in candidates for key in row
                       if key.startswith("latency_p50_ms_t")})
    if measured and budgets.threads not in measured:
        raise PipelineError(
            f"recommend.threads: {budgets.threads} was not measured (benchmark.threads: "
            f"{', '.join(map(str, measured))}); set recommend.threads to one of them")


def _fidelity(row: dict[str, Any]) -> tuple[float, float]:
    return (_number(row, "agreement") or 0.0, _number(row, "top1") or 0.0)


def rank(rows: dict[str, dict[str, Any]], budgets: RecommendParams) -> list[str]:
    """Qualifying variants (``rows`` by name), best first: the smallest rank value and every
    value within ``rank_tolerance`` of it count as equal, the most faithful of them first."""
    column = rank_column(budgets)
    pool = dict(rows)
    ordered = []
    while pool:
        best = min(float(row[column]) for row in pool.values())
        tied = [name for name, row in pool.items()
                if float(row[column]) <= best * (1 + budgets.rank_tolerance) + _TOLERANCE]
        pick = max(tied, key=lambda name: (*_fidelity(pool[name]), -float(pool[name][column])))
        ordered.append(pick)
        del pool[pick]
    return ordered


_WORSE = {"latency": "slower", "size": "larger", "memory": "more memory"}
_EQUAL = {"latency": "as fast as", "size": "as small as", "memory": "as little memory as"}


def _versus(name: str, row: dict[str, Any], chosen: str, chosen_row: dict[str, Any],
            budgets: RecommendParams, changes: dict[str, tuple[int, int]]) -> str:
    """How a qualifying variant compares with the recommended one, in words."""
    column = rank_column(budgets)
    value, reference = float(row[column]), float(chosen_row[column])
    if value > reference * (1 + budgets.rank_tolerance) + _TOLERANCE:
        ratio = value / reference if reference else math.inf
        where = f" at {_thr(budgets.threads)}" if budgets.rank_by == "latency" else ""
        rank_text = (f"{_WORSE[budgets.rank_by]} than `{chosen}` ({describe_value(budgets, value)}"
                     f" vs {describe_value(budgets, reference)}{where}, {ratio:.2f}x)")
    else:
        rank_text = (f"{_EQUAL[budgets.rank_by]} `{chosen}` (within "
                     f"{budgets.rank_tolerance:.0%})")
    agreement, chosen_agreement = _fidelity(row)[0], _fidelity(chosen_row)[0]
    paired = changes.get(name)
    counts = "" if paired is None else (
        f"; {paired[0]} {'image' if paired[0] == 1 else 'images'} won / {paired[1]} lost "
        "against it: "
        + ("beyond noise" if beyond_noise(*paired) else "within noise"))
    if agreement > chosen_agreement + _TOLERANCE:
        fidelity = (f"more faithful (agreement {agreement:.2f} vs {chosen_agreement:.2f} %"
                    f"{counts})")
        if paired is not None and beyond_noise(*paired):
            fidelity += f": the better choice if fidelity matters more than {budgets.rank_by}"
    elif agreement < chosen_agreement - _TOLERANCE:
        fidelity = f"less faithful (agreement {agreement:.2f} vs {chosen_agreement:.2f} %{counts})"
    else:
        fidelity = f"as faithful (agreement {agreement:.2f} %{counts})"
    return f"qualifies; {rank_text}, {fidelity}"


def latency_sessions(collected: dict[str, Any], variants: list[str]) -> dict[str, str | None]:
    """The benchmark session id of each variant's latency record (``collected`` as the report
    stage gathers it; ``None`` where it has none)."""
    return {variant: (collected.get(variant, {}).get("benchmark") or {}).get("session")
            for variant in variants}


def recommend(rows: list[dict[str, Any]], budgets: RecommendParams,
              predictions: dict[str, np.ndarray] | None = None,
              sessions: dict[str, str | None] | None = None,
              session: dict[str, Any] | None = None) -> Recommendation:
    """Apply ``budgets`` to the report's ``rows`` (``summary.build_rows``).

    Args:
        rows: one row per model; the float Keras model and the peer model are not candidates.
        budgets: the ``recommend`` section.
        predictions: ``int`` ``(N,)`` top-1 per row name (``keras`` and variants), for the
            paired won / lost counts against the recommended variant (none without).
        sessions: each variant's benchmark session id (:func:`latency_sessions`); a variant
            timed in another session than float32's (else than most) is not comparable.
        session: the benchmark session record (``contended_threads``, ``other_load_cores``,
            ``cores``), for the busy-machine caveat.

    Raises:
        PipelineError: the latency budgets read a thread count that was not measured.
    """
    candidates = [row for row in rows if row["variant"] not in (FLOAT_MODEL_ROW, PEER_ROW)]
    _check_threads([row for row in candidates if row["status"] == "ok"], budgets)
    sessions = sessions or {}
    measured = [s for s in sessions.values() if s is not None]
    reference = sessions.get(FLOAT_VARIANT) or (Counter(measured).most_common(1)[0][0]
                                                if measured else None)
    misses: dict[str, list[Miss]] = {}
    failed: dict[str, str] = {}
    for row in candidates:
        name = row["variant"]
        if row["status"] != "ok":
            failed[name] = row.get("notes") or FAILED
            continue
        found = budget_misses(row, budgets)
        own = sessions.get(name)
        if _latency_matters(budgets) and reference and own and own != reference:
            found.append(Miss(NOT_COMPARABLE, f"latency from benchmark session {own}, the others "
                                              f"from {reference} (dvc repro -f benchmark)"))
        misses[name] = found
    by_name = {row["variant"]: row for row in candidates}
    ranked = rank({name: by_name[name] for name, found in misses.items() if not found}, budgets)
    recommended = ranked[0] if ranked else None
    runner_up = ranked[1] if len(ranked) > 1 else None
    changes = paired_changes(predictions, baseline=recommended) \
        if predictions is not None and recommended is not None else {}
    verdicts: dict[str, Verdict] = {}
    for position, name in enumerate(ranked):
        kind = RECOMMENDED if position == 0 else RUNNER_UP if position == 1 else QUALIFIES
        verdicts[name] = Verdict(name, kind, "" if position == 0 else _versus(
            name, by_name[name], ranked[0], by_name[ranked[0]], budgets, changes))
    column = rank_column(budgets)
    missing = sorted((name for name, found in misses.items() if found),
                     key=lambda name: (_number(by_name[name], column) is None,
                                       _number(by_name[name], column) or 0.0))
    for name in missing:
        verdicts[name] = Verdict(name, misses[name][0].kind, miss_text(misses[name]))
    for name, note in failed.items():
        verdicts[name] = Verdict(name, FAILED, (note if note.startswith(FAILED)
                                                else f"{FAILED}: {note}")[:160])
    closest = None
    if recommended is None and missing:
        fewest = min(len(misses[name]) for name in missing)
        near = [name for name in missing if len(misses[name]) == fewest]
        excess = {name: sum(m.excess for m in misses[name]) for name in near}
        least = min(excess.values())
        # excesses within rank_tolerance of the least count as equal: the most faithful wins
        closest = max((name for name in near
                       if excess[name] <= least + budgets.rank_tolerance + _TOLERANCE),
                      key=lambda name: (*_fidelity(by_name[name]), -excess[name]))
    caveats = []
    contended = {str(t) for t in (session or {}).get("contended_threads") or []}
    if _latency_matters(budgets) and str(budgets.threads) in contended:
        caveats.append(f"**Caveat**: at {_thr(budgets.threads)} {busy_machine(session or {})}: "
                       "the latency ranking may differ on a quiet machine (re-run dvc repro -f "
                       "benchmark when it is quiet).")
    return Recommendation(budgets, recommended, runner_up, closest, ranked, verdicts, caveats)


# --- what the report writes -------------------------------------------------------------------

def document(recommendation: Recommendation) -> dict[str, Any]:
    """``variants.json``'s ``recommendation``: the variant (``None`` when nothing qualifies),
    runner-up, closest, the qualifying variants best first, every other variant's reason and
    the budgets applied."""
    return {"variant": recommendation.recommended, "runner_up": recommendation.runner_up,
            "closest": recommendation.closest, "qualifying": list(recommendation.ranked),
            "reasons": {name: verdict.reason for name, verdict in recommendation.verdicts.items()
                        if verdict.reason},
            "budgets": recommendation.budgets.model_dump()}


def metrics(recommendation: Recommendation) -> dict[str, Any]:
    """``metrics.json``'s ``recommendation``: the recommended variant's name only (a column of
    ``dvc exp show``; ``None`` when nothing qualifies)."""
    return {"variant": recommendation.recommended}


def _figures(row: dict[str, Any], threads: int) -> str:
    """A variant's deciding figures in one clause."""
    parts = [f"{row['size_bytes'] / 1e6:.2f} MB"]
    if _number(row, "memory_mib") is not None:
        parts.append(f"{row['memory_mib']:.1f} MiB runtime memory")
    latency = _number(row, f"latency_p50_ms_t{threads}")
    if latency is not None:
        speedup = _number(row, f"speedup_t{threads}")
        parts.append(f"p50 {latency:.2f} ms at {_thr(threads)}"
                     + (f" ({speedup:.2f}x {FLOAT_VARIANT})" if speedup is not None else ""))
    parts.append(f"top-1 {row['top1']:.2f} % ({row['delta_top1']:+.2f} vs the float model)")
    parts.append(f"agreement {row['agreement']:.2f} %"
                 + (f" of {row['images']} images" if row.get("images") else ""))
    return ", ".join(parts)


def _budget_text(budgets: RecommendParams) -> str:
    parts = [f"top-1 drop ≤ {budgets.max_top1_drop:.1f} points", f"agreement ≥ "
             f"{budgets.min_agreement:g} %"]
    if budgets.max_p50_ms is not None:
        parts.append(f"p50 ≤ {budgets.max_p50_ms:g} ms at {_thr(budgets.threads)}")
    if budgets.max_size_mb is not None:
        parts.append(f"size ≤ {budgets.max_size_mb:g} MB")
    if budgets.max_memory_mib is not None:
        parts.append(f"memory ≤ {budgets.max_memory_mib:g} MiB")
    return ", ".join(parts)


_BEST = {"latency": "fastest", "size": "smallest", "memory": "leanest in memory"}


def opening(recommendation: Recommendation, rows: list[dict[str, Any]]) -> list[str]:
    """The lines ``summary.md`` opens with: the recommendation, its qualifying figures, the
    runner-up, the reason for every other variant, then the compact table."""
    budgets = recommendation.budgets
    by_name = {row["variant"]: row for row in rows}
    chosen = recommendation.recommended
    where = f" at {_thr(budgets.threads)}" if budgets.rank_by == "latency" else ""
    lines = []
    if chosen is not None:
        count = len(recommendation.ranked)
        lines += [f"## Recommendation: ship `{chosen}`", "",
                  f"**`{chosen}`**: {_figures(by_name[chosen], budgets.threads)}. It meets every "
                  f"budget ({_budget_text(budgets)}) and is the {_BEST[budgets.rank_by]}{where} "
                  f"of the {count} variant{'s' if count > 1 else ''} that do (values within "
                  f"{budgets.rank_tolerance:.0%} count as equal; the more faithful wins).", ""]
        if recommendation.runner_up:
            runner = recommendation.runner_up
            lines += [f"Runner-up: **`{runner}`**: {_figures(by_name[runner], budgets.threads)}; "
                      f"{recommendation.verdicts[runner].reason.removeprefix('qualifies; ')}.",
                      ""]
    else:
        lines += ["## Recommendation: no variant meets the budgets", "",
                  f"None of the {len(recommendation.verdicts)} variants meets every budget "
                  f"({_budget_text(budgets)})."
                  + (f" Closest: **`{recommendation.closest}`** "
                     f"({_figures(by_name[recommendation.closest], budgets.threads)}): "
                     f"{recommendation.verdicts[recommendation.closest].reason}."
                     if recommendation.closest else ""), ""]
    others = [v for name, v in recommendation.verdicts.items()
              if name not in (chosen, recommendation.runner_up, recommendation.closest)]
    if others:
        lines += ["Not chosen:", ""]
        lines += [f"- `{v.variant}`: {v.reason}" for v in others]
        lines.append("")
    lines += [f"{caveat}" for caveat in recommendation.caveats]
    if recommendation.caveats:
        lines.append("")
    lines += ["Budgets: `recommend` in params.yaml; try another with e.g. `dvc exp run -S "
              "recommend.max_p50_ms=2.0` or `-S recommend.rank_by=size`.", ""]
    return lines + compact_table(recommendation, rows)


def compact_table(recommendation: Recommendation, rows: list[dict[str, Any]]) -> list[str]:
    """The ten-second table: variant, verdict, size, memory (when measured), p50 and speed-up at
    the budgets' thread count, top-1 and Δ, agreement; qualifying variants first in rank order,
    then the others by the rank figure, the peer model last."""
    budgets = recommendation.budgets
    threads = budgets.threads
    by_name = {row["variant"]: row for row in rows}
    order = [*recommendation.verdicts, *(r["variant"] for r in rows if r["variant"] == PEER_ROW)]
    memory = any(_number(by_name[name], "memory_mib") is not None for name in order)
    float_top1 = _number(by_name.get(FLOAT_MODEL_ROW, {}), "top1")
    lines = ["### At a glance", "",
             f"Ordered by the budgets: qualifying variants first, best {budgets.rank_by} first; "
             f"latency at {_thr(threads)}; Δ and agreement against the float Keras model"
             + (f" (top-1 {float_top1:.2f} %)" if float_top1 is not None else "") + ".", "",
             "| variant | verdict | size MB |" + (" memory MiB |" if memory else "")
             + f" p50 ms ({threads} thr) | speed-up | top-1 % (Δ) | agreement % |",
             "|---|---|---:|" + ("---:|" if memory else "") + "---:|---:|---:|---:|"]
    for name in order:
        row = by_name[name]
        verdict = recommendation.verdicts.get(name)
        kind = "peer model" if verdict is None else (
            "**ship**" if verdict.kind == RECOMMENDED else verdict.kind)
        if row["status"] != "ok":
            lines.append(f"| `{name}` | {kind} | – |" + (" – |" if memory else "")
                         + " – | – | – | – |")
            continue
        latency = _number(row, f"latency_p50_ms_t{threads}")
        speedup = _number(row, f"speedup_t{threads}")
        mem = _number(row, "memory_mib")
        lines.append(
            f"| `{name}` | {kind} | {row['size_bytes'] / 1e6:.2f} |"
            + ((f" {mem:.1f} |" if mem is not None else " – |") if memory else "")
            + (f" {latency:.2f} |" if latency is not None else " – |")
            + (f" {speedup:.2f}x |" if speedup is not None else " – |")
            + f" {row['top1']:.2f} ({row['delta_top1']:+.2f}) | {row['agreement']:.2f} |")
    lines.append("")
    return lines
