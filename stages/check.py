"""The CI regression gate: fail when a quantized variant got worse than the limits allow.

``python -m stages.check [--baseline REV | --no-baseline]`` reads ``reports/metrics.json`` and
``reports/variants.json`` (the workspace, i.e. this run) and the same files at a baseline git
revision through ``dvc metrics diff --json --all REV`` (default REV: the merge base of ``HEAD``
and ``main``, see ``--base-branch``), applies the limits of the ``check`` section of
``params.yaml`` to every variant row and prints a Markdown table (variant | metric | baseline |
current | Δ | limit | result) for a pull-request comment, also written to ``reports/check.md``.

Checks, per variant row (every row of the metrics except ``data`` and the float ``keras`` row):

* ``status``: a variant recorded as failed (``failed: true``) fails the gate;
* ``top1 vs float``: top-1 drop against the float Keras model *of the same run*
  (``check.max_top1_drop_vs_float``, percentage points);
* ``top1 vs baseline``: top-1 drop against the same variant at the baseline
  (``check.max_top1_regression``, points);
* ``size``: relative growth of the ``.tflite`` size against the baseline
  (``check.max_size_growth``);
* ``latency ratio``: p50 latency divided by the float32 p50 latency *of the same benchmark
  session* (the report's speed-up), compared with the baseline's ratio
  (``check.max_latency_regression``, relative). Absolute times of two runs are never compared:
  CI machines differ and are noisy. Where a side has latencies but no ratio of one session, the
  row says "not comparable" and does not fail.

A variant missing from the baseline is shown as new and only gets the same-run checks.

The recommendation (``recommend`` in ``params.yaml``): the report's recommended variant must
still meet the budgets in this run's figures (a report that recommends nothing fails); a
recommendation that changed against the baseline is listed (not a failure).

Exit codes: 0 all checks pass; 1 a limit is violated (or a variant failed); 2 unusable input
(missing or malformed metrics, unknown revision, a baseline without metrics).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from litequant.core import layout
from litequant.core.cli import run_stage
from litequant.core.errors import PipelineError, UnusableInputError
from litequant.core.params import CheckParams, RecommendParams, load, section
from litequant.report.gate import check


def _arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--baseline", metavar="REV",
                       help="git revision or DVC experiment whose reports/metrics.json is the "
                            "baseline (default: the merge base of HEAD and --base-branch)")
    group.add_argument("--no-baseline", action="store_true",
                       help="only the same-run checks (e.g. when the target branch has no "
                            "metrics yet)")
    parser.add_argument("--base-branch", default="main",
                        help="branch for the default baseline (default: main; in CI e.g. "
                             "origin/main)")
    parser.add_argument("--metrics", type=Path, default=layout.METRICS,
                        help=f"current metrics (default: {layout.METRICS})")
    parser.add_argument("--output", type=Path, default=layout.CHECK_MD,
                        help=f"where to write the Markdown table (default: {layout.CHECK_MD})")


def _run(args: argparse.Namespace) -> None:
    try:
        params = load(args.params)
        limits = section(params, CheckParams, args.params)
        budgets = section(params, RecommendParams, args.params)
    except PipelineError as error:  # bad limits: the gate cannot judge (exit 2, not 1)
        raise UnusableInputError(str(error)) from None
    check(limits, "" if args.no_baseline else args.baseline, args.base_branch, args.metrics,
          args.output, budgets)


def main(argv: list[str] | None = None) -> int:
    return run_stage(__doc__, _run, configure=_arguments, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
