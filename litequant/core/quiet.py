"""Quiet by default: TensorFlow/absl/LiteRT log lines are silenced unless asked for.

``--verbose`` on a stage's command line, or ``LITEQUANT_VERBOSE=1`` in the environment, shows
them. Progress bars (tqdm) appear only on a terminal. Imports nothing of the project.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

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


@contextmanager
def progress_counter(description: str, total: int, unit: str = "img"
                     ) -> Iterator[Callable[[int], None]]:
    """A progress bar advanced by hand: yields ``update(n)``; shows the rate (``unit``/s) and
    the ETA on a terminal, does nothing otherwise (CI logs get only the stage's summary line)."""
    if not sys.stderr.isatty():
        yield lambda count: None
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=description, unit=unit, leave=False, smoothing=0.1) as bar:
        yield bar.update
