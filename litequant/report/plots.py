"""The report's static figures: PNGs that work offline, in a pull-request comment or job summary.

Two figures of two panels each, every point labelled with its variant name (one label naming
all the variants drawn on the same spot), axes zoomed to the data (not from 0):

* ``accuracy_vs_size.png``: top-1 (%) vs file size (MB), agreement with the float model (%) vs
  size; the float Keras model's top-1 is a dashed line;
* ``accuracy_vs_latency.png``: the same against p50 latency on a log scale, at the smallest
  thread count measured (named in the axis title);
* ``accuracy_vs_memory.png``: the same against runtime memory (the benchmark's peak memory
  growth, MiB), when it was measured;
* ``selection_curve.png``: ``int8_selective``'s calibration agreement with float32 vs the number
  of weight ops kept float, one point per greedy step (each a real int8 model), the budget line
  and the chosen model.

Drawn with matplotlib's Agg backend (no display needed). Imports nothing of the project but the
atomic writer.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from litequant.core import atomic

#: Label offsets (points) tried in turn until the label overlaps no other label or point and is
#: nearer its own point than any other (``dy == 0``: centred beside the point).
_OFFSETS = ((6, 4), (6, -11), (-6, 4), (-6, -11), (8, 0), (-8, 0), (6, 14), (6, -21),
            (-6, 14), (-6, -21), (6, 24), (6, -31))


#: Points closer than this (pixels) share one label, their names joined by commas.
_SAME_SPOT = 3.0


def coincident_labels(axes: Any, points: list[tuple[float, float, str]]
                      ) -> list[tuple[float, float, str]]:
    """One ``(x, y, "a, b")`` per spot: points drawn on top of each other (same size and
    agreement, say) get one label naming all of them instead of labels that cannot say which
    point is which."""
    spots: list[tuple[float, float, float, float, list[str]]] = []
    for x, y, name in points:
        px, py = axes.transData.transform((x, y))
        for spot in spots:
            if abs(spot[0] - px) <= _SAME_SPOT and abs(spot[1] - py) <= _SAME_SPOT:
                spot[4].append(name)
                break
        else:
            spots.append((px, py, x, y, [name]))
    return [(x, y, ", ".join(names)) for _, _, x, y, names in spots]


def _box_distance(box: tuple[float, float, float, float], px: float, py: float) -> float:
    """Pixels from a point to the nearest edge of a box (0 inside)."""
    dx = max(box[0] - px, 0.0, px - box[2])
    dy = max(box[1] - py, 0.0, py - box[3])
    return (dx * dx + dy * dy) ** 0.5


def _annotate(axes: Any, name: str, point: tuple[float, float], offset: tuple[float, float]
              ) -> Any:
    """A label ``offset`` points from ``point``, with a thin leader line to it."""
    dx, dy = offset
    return axes.annotate(name, point, xytext=offset, textcoords="offset points", fontsize=8,
                         ha="left" if dx > 0 else "right",
                         va="bottom" if dy > 0 else "top" if dy < 0 else "center",
                         arrowprops={"arrowstyle": "-", "color": "#999999", "linewidth": 0.5,
                                     "shrinkA": 0, "shrinkB": 3})


def _place_labels(axes: Any, points: list[tuple[float, float, str]]) -> None:
    """Annotate each spot with its names, at the first offset that overlaps nothing placed and
    is nearer its own point than any other (else the first that overlaps nothing)."""
    from matplotlib.text import Text

    figure = axes.figure
    renderer = figure.canvas.get_renderer()
    points = coincident_labels(axes, points)
    centres = [tuple(axes.transData.transform((x, y))) for x, y, _ in points]
    taken = [(cx - 4, cy - 4, cx + 4, cy + 4) for cx, cy in centres]
    frame = axes.get_window_extent(renderer)
    for (x, y, name), own in sorted(zip(points, centres, strict=True), key=lambda p: p[0][:2]):
        others = [c for c in centres if c != own]
        chosen = fallback = None
        for dx, dy in _OFFSETS:
            label = _annotate(axes, name, (x, y), (dx, dy))
            label.update_positions(renderer)
            box = Text.get_window_extent(label, renderer)  # the text alone, not the leader
            bounds = (box.x0, box.y0, box.x1, box.y1)
            label.remove()
            inside = (frame.x0 <= bounds[0] and bounds[2] <= frame.x1 and frame.y0 <= bounds[1]
                      and bounds[3] <= frame.y1)
            if not inside or any(bounds[0] < t[2] and t[0] < bounds[2] and bounds[1] < t[3]
                                 and t[1] < bounds[3] for t in taken):
                continue
            fallback = fallback or (dx, dy, bounds)
            if all(_box_distance(bounds, *own) <= _box_distance(bounds, *other)
                   for other in others):
                chosen = (dx, dy, bounds)
                break
        dx, dy, bounds = chosen or fallback or (*_OFFSETS[-1], bounds)
        _annotate(axes, name, (x, y), (dx, dy))
        taken.append(bounds)


def _zoom(values: list[float], log: bool = False) -> tuple[float, float]:
    """Axis limits around ``values`` with room for labels (a log axis pads by ratio)."""
    low, high = min(values), max(values)
    if log:
        return low / 1.25, high * 1.6
    span = (high - low) or max(abs(high), 1.0) * 0.02
    return low - 0.12 * span, high + 0.3 * span


#: Points more than this many percentage points below the best one (collapsed variants, e.g.
#: int4 at 11 %) are drawn on the bottom edge with their value, so they do not squash the axis.
COLLAPSED_POINTS = 20.0


#: The label suffix of the report's recommended variant (drawn with a green ring).
RECOMMENDED_MARK = " (recommended)"


def _panel(axes: Any, points: list[dict[str, Any]], x: str, y: str, x_title: str, y_title: str,
           reference: float | None = None, log: bool = False, highlight: str | None = None
           ) -> list[tuple[float, float, str]]:
    """Draw the points and axes of one panel; returns the points to label (after layout).
    ``highlight``: a variant drawn with a green ring and labelled recommended."""
    drawn = [(float(p[x]), float(p[y]), p["variant"] + (RECOMMENDED_MARK
                                                        if p["variant"] == highlight else ""))
             for p in points if p.get(x) not in (None, "") and p.get(y) not in (None, "")]
    if not drawn:
        axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
        return []
    if log:
        from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

        axes.set_xscale("log")
        low, high = _zoom([d[0] for d in drawn], log)
        nice = [m * 10.0 ** e for e in range(-2, 5) for m in (1, 2, 5)]
        axes.xaxis.set_major_locator(FixedLocator([v for v in nice if low <= v <= high]))
        axes.xaxis.set_major_formatter(ScalarFormatter())
        axes.xaxis.set_minor_formatter(NullFormatter())
    best = max(d[1] for d in drawn)
    faithful = [d for d in drawn if d[1] >= best - COLLAPSED_POINTS]
    low, high = _zoom([d[1] for d in faithful] + ([reference] if reference is not None else []))
    collapsed = [d for d in drawn if d[1] < low]
    drawn = [d for d in drawn if d not in collapsed]
    axes.scatter([d[0] for d in drawn], [d[1] for d in drawn], s=22, color="#1f77b4", zorder=3)
    chosen = [d for d in drawn if d[2].endswith(RECOMMENDED_MARK)]
    if chosen:
        axes.scatter([d[0] for d in chosen], [d[1] for d in chosen], s=110, facecolors="none",
                     edgecolors="#2ca02c", linewidths=1.8, zorder=4)
    axes.set_xlim(*_zoom([d[0] for d in drawn + collapsed], log))
    if collapsed:  # on the bottom edge, pointing down, with their real value in the label
        low -= 0.08 * (high - low)
        edge = low + 0.02 * (high - low)
        axes.scatter([d[0] for d in collapsed], [edge] * len(collapsed), s=30, marker="v",
                     color="#d62728", zorder=3, clip_on=False)
        drawn += [(d[0], edge, f"{d[2]} ({d[1]:.1f}, off scale)") for d in collapsed]
    axes.set_ylim(low, high)
    if reference is not None:
        axes.axhline(reference, color="grey", linestyle="--", linewidth=0.8)
        axes.annotate("float Keras model", (axes.get_xlim()[0], reference), xytext=(4, -9),
                      textcoords="offset points", fontsize=7, color="grey")
    axes.set_xlabel(x_title)
    axes.set_ylabel(y_title)
    axes.grid(True, which="both", linewidth=0.3, alpha=0.6)
    return drawn


def figure_png(points: list[dict[str, Any]], x: str, x_title: str, title: str,
               float_top1: float | None, log: bool = False, highlight: str | None = None
               ) -> bytes:
    """A two-panel figure (top-1 | agreement vs ``x``) as PNG bytes; ``highlight``: the
    recommended variant, ringed and labelled so."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)  # the renderer that measures the labels
    left, right = figure.subplots(1, 2)
    labels = [(left, _panel(left, points, x, "top1", x_title, "top-1 accuracy (%)", float_top1,
                            log, highlight)),
              (right, _panel(right, points, x, "agreement", x_title,
                             "top-1 agreement with the float model (%)", None, log, highlight))]
    figure.suptitle(title)
    figure.canvas.draw()  # lays the axes out, so labels are placed where they will be drawn
    figure.set_layout_engine("none")
    for axes, drawn in labels:
        _place_labels(axes, drawn)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


#: The memory axis: what the benchmark's memory figure counts.
MEMORY_AXIS = "runtime memory: peak resident-set growth of a fresh process (MiB)"


def write_figures(points: list[dict[str, Any]], threads: list[str], float_top1: float | None,
                  size_png: Path, latency_png: Path, description: str,
                  memory_png: Path | None = None, highlight: str | None = None) -> None:
    """Write the size, latency and (with ``memory_png``) memory figures of the plot ``points``
    (``plot_rows`` of the report).

    ``threads``: the measured thread counts (the latency figure uses the smallest);
    ``description``: the model and data, shown in the titles; ``highlight``: the recommended
    variant (ringed in every figure).
    """
    atomic.write_bytes(size_png, figure_png(
        points, "size_mb", "model file size (MB)", f"Accuracy vs size: {description}",
        float_top1, highlight=highlight))
    if memory_png is not None:
        measured = any(p.get("memory_mib") not in (None, "") for p in points)
        atomic.write_bytes(memory_png, figure_png(
            points, "memory_mib", MEMORY_AXIS, f"Accuracy vs runtime memory: {description}",
            float_top1, highlight=highlight) if measured else message_png(
            "Runtime memory was not measured by this benchmark session"))
    if threads:
        count = threads[0]
        unit = "thread" if count == "1" else "threads"
        x_title = f"p50 latency, one image, {count} {unit} (ms, log scale)"
        png = figure_png(points, f"latency_p50_ms_t{count}", x_title,
                         f"Accuracy vs latency ({count} {unit}): {description}", float_top1,
                         log=True, highlight=highlight)
    else:
        png = figure_png([], "none", "latency", "no latency measured", None)
    atomic.write_bytes(latency_png, png)


def message_png(text: str) -> bytes:
    """A small figure that only says ``text`` (a figure whose data the run does not have)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 1.5), dpi=100)
    FigureCanvasAgg(figure)
    figure.text(0.5, 0.5, text, ha="center", va="center", fontsize=12)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def selection_png(selection: dict[str, Any] | None, title: str) -> bytes:
    """``int8_selective``'s agreement-vs-layers-kept curve as PNG bytes.

    ``selection``: ``selection.json``
    (:func:`litequant.quantize.passes.selection.select_float_ops`: every greedy step's real
    model), or ``None`` (a figure saying it was not built).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    if not selection:
        axes.text(0.5, 0.5, "int8_selective was not built", ha="center", va="center",
                  transform=axes.transAxes)
    else:
        built = [p for p in selection["curve"] if p.get("agreement") is not None]
        accepted = [p for p in built if p["accepted"]]
        axes.plot([p["layers_kept"] for p in accepted], [p["agreement"] for p in accepted],
                  marker="o", color="#1f77b4", label="real int8 model, units accepted")
        rejected = [p for p in built if not p["accepted"]]
        if rejected:
            axes.scatter([p["layers_kept"] for p in rejected], [p["agreement"] for p in rejected],
                         marker="x", color="grey",
                         label="tried, skipped (latency, or no gain beyond noise)")
        floor = 100.0 - selection["budget_points"]
        axes.axhline(floor, color="grey", linestyle="--", linewidth=0.8,
                     label=f"budget: {selection['budget_points']:g} points lost")
        verdict = "" if selection["budget_met"] else " (budget not met: closest)"
        axes.scatter([selection["layers_kept"]], [selection["agreement"]], marker="s", s=50,
                     color="#d62728", zorder=3,
                     label=f"chosen: {selection['layers_kept']} weight ops kept{verdict}")
        axes.set_xlabel("weight ops kept float (greedy steps)")
        axes.set_ylabel(f"agreement with float32 (%), {selection['images']['budget']} images")
        axes.grid(True, linewidth=0.3, alpha=0.6)
        axes.legend(fontsize=8, loc="lower right")
    figure.suptitle(f"{title}\n(top-1 agreement with float32 on the calibration images)",
                    fontsize=11)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()
