"""Thin shell shared by every stage's ``main()``: quiet logging, clear errors, exit codes.

TensorFlow's C++ and absl log spew is silenced unless ``--verbose`` is given or the environment
variable ``LITEQUANT_VERBOSE=1`` is set. A :class:`~stages.errors.PipelineError` is printed as one
line (``error: ...``) with its exit code (1; 2 for
:class:`~stages.errors.UnusableInputError`), never as a traceback wall.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from stages.errors import PipelineError

T = TypeVar("T")


def verbose_requested(argv: list[str] | None = None) -> bool:
    """True when ``--verbose`` is on the command line or ``LITEQUANT_VERBOSE`` is set."""
    argv = sys.argv[1:] if argv is None else argv
    return "--verbose" in argv or os.environ.get("LITEQUANT_VERBOSE", "") not in ("", "0")


def silence_tensorflow(verbose: bool = False) -> None:
    """Silence TensorFlow/absl/Keras logging. Must run before TensorFlow is imported."""
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    os.environ.setdefault("GLOG_minloglevel", "3")
    os.environ.setdefault("TF_TFLITE_LOG_SEVERITY", "ERROR")
    warnings.filterwarnings("ignore")
    for name in ("tensorflow", "absl", "keras", "h5py", "tensorflow_datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:  # absl is present wherever TensorFlow is
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
        absl_logging.set_stderrthreshold("error")
    except ImportError:
        pass


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Silence C/C++ writes to the process's stderr (fd 2) for the duration, unless verbose.

    TensorFlow Lite and the MLIR converter print INFO lines (``Created TensorFlow Lite XNNPACK
    delegate``, ``fully_quantize: ...``) straight to fd 2, past Python's logging. Errors still
    surface as Python exceptions with their messages.
    """
    if verbose_requested([]):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def progress(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate ``items`` with a tqdm progress bar on a terminal, silently otherwise."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        yield from tqdm(items, desc=description, total=total, leave=False)
    else:
        yield from items


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
