"""The shell every stage's ``main()`` runs in: ``--help``, quiet logging, one-line errors.

A :class:`~litequant.core.errors.PipelineError` is printed as one line (``error: ...``) with its
exit code (1; 2 for :class:`~litequant.core.errors.UnusableInputError`), never as a traceback wall.
TensorFlow's logs are silenced unless ``--verbose`` (:mod:`litequant.core.quiet`).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from litequant.core.errors import PipelineError
from litequant.core.quiet import silence_tensorflow, verbose_requested


def run_stage(description: str, body: Callable[[argparse.Namespace], None],
              configure: Callable[[argparse.ArgumentParser], None] | None = None,
              argv: list[str] | None = None) -> int:
    """Parse ``--help``/``--verbose`` (plus the stage's own arguments), run ``body``, map errors.

    Returns the process exit code: 0 on success, the error's ``exit_code`` on a
    :class:`PipelineError` (printed as one line on stderr: 1, or 2 for unusable input), 130 on
    Ctrl-C.
    """
    module = Path(sys.argv[0]).stem if argv is None else "stage"
    parser = argparse.ArgumentParser(
        prog=f"python -m stages.{module}", description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow/absl logs and full tracebacks "
                             "(or set LITEQUANT_VERBOSE=1)")
    parser.add_argument("--params", default="params.yaml",
                        help="params file to read (default: params.yaml)")
    if configure is not None:
        configure(parser)
    args = parser.parse_args(argv)
    args.verbose = args.verbose or verbose_requested([])
    silence_tensorflow(args.verbose)
    try:
        body(args)
    except PipelineError as error:
        if args.verbose:
            raise
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


#: Signals by which a child itself crashes (TensorFlow's C++ code segfaults or aborts on some
#: models, e.g. infinite calibration ranges); a stop (SIGKILL, SIGTERM, Ctrl-C) is not one.
CRASH_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGFPE,
                           signal.SIGILL})
_SUPERVISED = "LITEQUANT_SUPERVISED"


def run_supervised(command: list[str]) -> str | None:
    """Run ``command`` (a ``python -m stages...`` line) in a child process that dies with this one.

    Returns ``None`` when the child succeeds, the signal's name (``"SIGSEGV"``) when it crashed
    (:data:`CRASH_SIGNALS`). A child stopped by another signal, or failing with an error (already
    printed by the child), ends this process with the same exit code.
    """
    source_root = str(Path(__file__).resolve().parents[2])  # run this very code in the child
    path = os.pathsep.join(p for p in (source_root, os.environ.get("PYTHONPATH")) if p)
    child = subprocess.run(command, env={**os.environ, "PYTHONPATH": path, _SUPERVISED: "1"})
    if child.returncode == 0:
        return None
    if -child.returncode in CRASH_SIGNALS:
        return signal.Signals(-child.returncode).name
    raise SystemExit(child.returncode if child.returncode > 0 else 128 - child.returncode)


def die_with_parent() -> None:
    """In a child of :func:`run_supervised`: get SIGKILL when the parent dies (Linux)."""
    if os.environ.get(_SUPERVISED) != "1" or not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL))
    if os.getppid() == 1:  # the parent was already gone before prctl took effect
        os._exit(128 + int(signal.SIGKILL))
