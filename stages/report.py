"""Stage ``report``: one table of what each variant costs, as DVC metrics, Markdown, CSV, plots.

Reads every variant's ``data/convert``, ``data/evaluate``, ``data/benchmark`` output (the
variants of ``convert.variants``), the float Keras model's metrics, ``data/fetch/fetch.json``,
``data/export/model.json``, the peer model's ``data/evaluate_peer`` and ``data/benchmark_peer``
and ``reports/layer_errors.csv``, and writes

* ``reports/metrics.json``: DVC metrics, one entry per row (``keras``, then each variant);
* ``reports/summary.md`` and ``reports/summary.csv``: one row per variant: size, compression vs
  float32, latency p50 per thread count, speed-up vs float32, top-1, top-k, Δtop-1 vs the float
  Keras model, agreement, top-k overlap, KL divergence, SQNR, notes (k = min(5, classes - 1));
* ``reports/plots/variants.csv``: the plot data (accuracy vs size, latency per variant);
* ``reports/plots/confusion.csv``: ``actual, predicted`` class per evaluation image of ``int8``
  (else the first integer variant), for label spaces of up to 100 classes (header only above),
  and in ``summary.md`` a per-class top-1 table, float model vs each integer variant (from
  ``data/prepare/classes.json``, the evaluation labels and every ``predictions.npy``).

Variants calibrated on noise are marked NOT REPRESENTATIVE, and ``summary.md`` explains why their
accuracy collapses.
"""

from __future__ import annotations

from typing import Any

from litequant import atomic, layout
from litequant.cli import run_stage
from litequant.labels import PER_CLASS_LIMIT
from litequant.params import ConvertParams, read_section
from litequant.report import (
    FLOAT_MODEL_ROW,
    PEER_ROW,
    build_rows,
    confusion_rows,
    confusion_variant,
    csv_text,
    markdown,
    metrics_document,
    plot_rows,
    table_columns,
)


def collect(variants: list[str]) -> dict[str, Any]:
    """Every stage output the report reads, keyed as :func:`litequant.report.build_rows` wants."""
    collected: dict[str, Any] = {
        "data": layout.read_json(layout.FETCH_INFO, "fetch"),
        "model": layout.read_model_info(layout.MODEL_INFO),
        FLOAT_MODEL_ROW: layout.read_json(layout.KERAS_METRICS, "evaluate_keras"),
    }
    peer = layout.PEER_EVALUATION_DIR / "metrics.json"
    if peer.is_file():
        collected[PEER_ROW] = layout.read_json(peer, "evaluate_peer")
    peer_latency = layout.PEER_BENCHMARK_DIR / "latency.json"
    if peer_latency.is_file():
        collected["peer_benchmark"] = layout.read_json(peer_latency, "benchmark_peer")
    if layout.LAYER_ERRORS_CSV.is_file():
        collected["layer_errors"] = layout.read_layer_errors(layout.LAYER_ERRORS_CSV)
    for variant in variants:
        collected[variant] = {
            "conversion": layout.read_conversion(layout.CONVERT_DIR / variant),
            "evaluation": layout.read_json(layout.EVALUATE_DIR / variant / "metrics.json",
                                           f"evaluate@{variant}"),
            "benchmark": layout.read_json(layout.BENCHMARK_DIR / variant / "latency.json",
                                          f"benchmark@{variant}"),
        }
    collected["per_class"] = per_class(variants, collected)
    return collected


def per_class(variants: list[str], collected: dict[str, Any]) -> dict[str, Any] | None:
    """Class names, evaluation labels and every model's top-1 predictions, for label spaces of
    up to :data:`~litequant.labels.PER_CLASS_LIMIT` classes (else ``None``)."""
    names = layout.read_json(layout.CLASSES, "prepare")["names"]
    if len(names) > PER_CLASS_LIMIT:
        return None
    predictions = {FLOAT_MODEL_ROW: layout.load_predictions(layout.KERAS_PREDICTIONS,
                                                            "evaluate_keras")}
    for variant in variants:
        if collected[variant]["evaluation"].get("status") == "ok":
            predictions[variant] = layout.load_predictions(layout.predictions_file(variant),
                                                           f"evaluate@{variant}")
    return {"names": names, "labels": layout.load_labels(layout.EVALUATION_SPLIT),
            "predictions": predictions, "confusion_variant": confusion_variant(predictions)}


def report(params: ConvertParams) -> list[dict[str, Any]]:
    """Write every report file; returns the table rows."""
    variants = list(params.variants)
    collected = collect(variants)
    rows = build_rows(collected, variants)
    atomic.write_json(layout.METRICS, metrics_document(rows, collected))
    atomic.write_text(layout.SUMMARY_MD, markdown(rows, collected))
    atomic.write_text(layout.SUMMARY_CSV, csv_text(rows, table_columns(rows)))
    atomic.write_text(layout.VARIANTS_PLOT_CSV,
                      csv_text(plot_rows(rows), ["variant", "size_mb", "top1", "agreement",
                                                 "latency_p50_ms"]))
    view = collected["per_class"]
    confusion = [] if view is None else confusion_rows(
        view["names"], view["labels"], view["predictions"][view["confusion_variant"]])
    atomic.write_text(layout.CONFUSION_CSV, csv_text(confusion, ["actual", "predicted"]))
    print(markdown(rows, collected))
    return rows


def main(argv: list[str] | None = None) -> int:
    return run_stage(__doc__, lambda args: report(read_section(ConvertParams, args.params)),
                     argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
