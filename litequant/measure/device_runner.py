"""One benchmark session of ``.tflite`` models on the machine this file runs on: the runtime
figures of every model, each in a fresh process, then the interleaved latency session.

Standalone on purpose: it imports only the standard library, numpy and a LiteRT runtime
(``ai_edge_litert.interpreter``, else ``tflite_runtime.interpreter``), never the rest of
litequant, so the benchmark stage can copy this one file with the models to a target device and
run it there (:mod:`litequant.measure.devices`); on this machine the stage runs the very same file
with its own Python.

    python device_runner.py MANIFEST.json     # prints one line: RESULT_PREFIX + the JSON record

The manifest (paths relative to the manifest's folder, or absolute)::

    {"models": {"<name>": {"model": "<name>.tflite", "input": "<name>.npy"}},
     "threads": [1, 2], "warmup_runs": 5, "min_runs": 20, "min_seconds": 2.0, "rounds": 10,
     "runtime_repeats": 3}

``input`` is the ready input tensor of one invoke (``.npy``: preprocessed and quantized, batch
of 1), or null: then uniform random values of the input's dtype (0..1 for float inputs), saved
as a ``.npy`` first (by a forked child where it can: :func:`save_random_input`), so that every
fresh process loads its input alike.

**Runtime figures** (:func:`measure_runtime`, 1 interpreter thread), per model, in
``runtime_repeats`` fresh processes (the models taken in turn): the median memory growth, the
shortest init and first-invoke times (:func:`runtime_figures`). A fresh process is a fork of
this runner, which loads no model itself before (Linux only, and only while the runner has
created no interpreter and runs no thread but those its imports of numpy and the runtime
started: :func:`can_fork`); the child first maps again the file pages the runner has resident
(a fork leaves the libraries' code unmapped until touched), so that, as in a new process, the
code the imports ran is resident before the baseline. Otherwise (macOS, say) it is a new
interpreter process, ``python device_runner.py --runtime MODEL INPUT RUNS``. Either way:

* ``peak_memory_bytes``: the growth of the process's resident set from just before the
  interpreter is created (numpy, the runtime and the input already loaded) to its peak until
  after ``warmup_runs`` invokes: ``VmHWM`` (the peak, reset to the current resident set at the
  baseline through ``/proc/self/clear_refs``) minus ``VmRSS`` at the baseline, both from
  ``/proc/self/status`` (Linux). It counts every page the interpreter made resident: the model
  file's pages it read (the file is memory-mapped), weights repacked by XNNPACK, the tensor
  arena, the runtime's own heap; not the Python runtime, numpy or the runtime's shared libraries
  (loaded before the baseline), nor pages of the model file never touched. Without ``/proc``
  (macOS), the growth of ``ru_maxrss`` (a lower bound: the import peak may hide part of it).
* ``init_ms``: interpreter creation + ``allocate_tensors`` (where the default XNNPACK delegate
  is applied and repacks the weights).
* ``first_invoke_ms``: the first ``invoke`` after that.

**Latency** (:func:`latency_session`): every model is loaded once per thread count, warmed up,
then timed in ``rounds`` interleaved rounds (see :mod:`litequant.measure.benchmarking`); the
machine's load from other processes is measured meanwhile (``other_load_cores``,
``contended_threads``).

A problem the device's owner must fix (no numpy, no runtime, a model the runtime cannot load)
is printed as one line ``litequant-runner: <what to do>`` on stderr, exit code
:data:`RUNNER_ERROR_EXIT`.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

#: The prefix of the one stdout line that holds the result (JSON).
RESULT_PREFIX = "litequant-result: "
#: The prefix of the one stderr line that says what went wrong (and how to fix it).
ERROR_PREFIX = "litequant-runner: "
#: Exit code of a problem reported with :data:`ERROR_PREFIX`.
RUNNER_ERROR_EXIT = 3
#: How many cores other processes may keep busy, beyond those left for an interpreter's threads,
#: before that thread count is contended (:func:`contended_threads`).
CONTENTION_SLACK_CORES = 0.5
#: What ``peak_memory_bytes`` is, as recorded in the session (Linux).
MEMORY_METHOD_PROC = ("peak resident-set growth of a fresh process per model: VmHWM (reset at the "
                      "baseline) - VmRSS before the interpreter is created, /proc/self/status")
#: ... and where ``/proc/self/status`` does not exist.
MEMORY_METHOD_RUSAGE = ("growth of ru_maxrss of a fresh process per model from before the "
                        "interpreter is created (a lower bound)")
INSTALL_HINT = f"{sys.executable} -m pip install numpy ai-edge-litert (or tflite-runtime)"

#: Whether this process has created an interpreter (then a fork of it is no fresh process).
_interpreter_created = False
#: The threads (ids) of this process right after :func:`runtime` imported numpy and the runtime
#: into a process that had one thread: this one and OpenBLAS's pool, which OpenBLAS stops itself
#: before a fork; None when they were imported otherwise.
_import_threads: frozenset[str] | None = None


class RunnerError(Exception):
    """A problem on the device that its owner must fix; the message says how."""


# --- the runtime -------------------------------------------------------------------------------

def runtime() -> tuple[Any, str]:
    """The LiteRT ``Interpreter`` class and ``"<package> <version>"``.

    ``ai_edge_litert`` first, ``tflite_runtime`` otherwise; :class:`RunnerError` naming the fix
    when numpy or both runtimes are missing.
    """
    global _import_threads
    threads = _threads()
    fresh = "numpy" not in sys.modules and threads is not None and len(threads) == 1
    try:
        import numpy  # noqa: F401
    except ImportError:
        raise RunnerError(f"numpy is not installed for {sys.executable}: {INSTALL_HINT}"
                          ) from None
    try:
        import ai_edge_litert
        from ai_edge_litert.interpreter import Interpreter

        found = Interpreter, f"ai-edge-litert {_version('ai-edge-litert', ai_edge_litert)}"
    except ImportError:
        try:
            import tflite_runtime
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise RunnerError(f"no LiteRT runtime for {sys.executable} (neither ai_edge_litert "
                              f"nor tflite_runtime imports): {INSTALL_HINT}") from None
        found = Interpreter, f"tflite-runtime {_version('tflite-runtime', tflite_runtime)}"
    if fresh:
        _import_threads = _threads()
    return found


def _threads() -> frozenset[str] | None:
    """The ids of this process's threads (``/proc/self/task``), ``None`` without ``/proc``."""
    try:
        return frozenset(os.listdir("/proc/self/task"))
    except OSError:
        return None


def _version(package: str, module: Any = None) -> str:
    """The installed version of ``package`` (its metadata, else ``module.__version__``)."""
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return str(getattr(module, "__version__", "unknown"))


def _interpreter(interpreter_class: Any, model: str, threads: int, data: Any) -> Any:
    """An interpreter of ``model`` with ``threads`` threads, its input resized to ``data``'s
    shape when the model's differs (a dynamic batch), tensors allocated."""
    global _interpreter_created
    _interpreter_created = True
    try:
        interpreter = interpreter_class(model_path=model, num_threads=threads)
        detail = interpreter.get_input_details()[0]
        if tuple(detail["shape"]) != tuple(data.shape):
            interpreter.resize_tensor_input(detail["index"], list(data.shape), strict=True)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as error:
        raise _unloadable(model, error) from None
    return interpreter


def _unloadable(model: str, error: Exception) -> RunnerError:
    message = str(error).splitlines()[0] if str(error) else repr(error)
    return RunnerError(f"{Path(model).name}: not a loadable TFLite model for this runtime "
                       f"({message})")


def model_input(interpreter_class: Any, model: str, path: str | None) -> Any:
    """The input of one invoke: the ``.npy`` at ``path``, else random values of the model's
    input dtype and shape (batch 1): this creates an interpreter (:func:`save_random_input`
    does it in a child process where it can)."""
    import numpy as np

    global _interpreter_created
    if path:
        return np.load(path)
    _interpreter_created = True
    try:
        detail = interpreter_class(model_path=model).get_input_details()[0]
    except (ValueError, RuntimeError) as error:
        raise _unloadable(model, error) from None
    shape = [1 if d == -1 else int(d) for d in detail.get("shape_signature", detail["shape"])]
    dtype = np.dtype(detail["dtype"])
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, int(info.max) + 1, shape).astype(dtype)
    return rng.random(shape).astype(dtype)


def save_random_input(interpreter_class: Any, model: str, path: str, name: str) -> None:
    """Save :func:`model_input`'s random input of ``model`` (manifest name ``name``) as the
    ``.npy`` ``path``; in a forked child when :func:`can_fork`, so that this process still
    creates no interpreter before the runtime figures."""
    if not can_fork():
        _save_input(interpreter_class, model, path)
        return
    code, _, stderr = _forked(partial(_save_input, interpreter_class, model, path))
    if code != 0:
        raise RunnerError(_child_error(name, stderr, code))


def _save_input(interpreter_class: Any, model: str, path: str) -> str:
    import numpy as np

    np.save(path, model_input(interpreter_class, model, None))
    return ""


# --- runtime figures: memory, init, first invoke (one fresh process per model) ------------------

def _status_bytes(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` in bytes (``None`` without ``/proc``)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset ``VmHWM`` to the current resident set (Linux 4.0+); False when not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        return True
    except OSError:
        return False


def _maxrss_bytes() -> int:
    import resource

    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(value) if sys.platform == "darwin" else int(value) * 1024


def measure_runtime(model: str, input_path: str, runs: int) -> dict[str, Any]:
    """Peak memory growth, init and first-invoke time of ``model`` at 1 thread, in this
    process (meant to be a fresh one: :func:`runtime_figures`).

    Returns ``{"peak_memory_bytes": int, "init_ms": float, "first_invoke_ms": float}``; the
    baseline is taken after numpy, the runtime and the input are loaded; the peak covers
    creation, allocation, the first invoke and ``runs`` more.
    """
    import gc

    import numpy as np

    interpreter_class, _ = runtime()
    data = np.load(input_path)  # no interpreter before the baseline: its first one is measured
    gc.collect()
    proc = _status_bytes("VmRSS") is not None
    if proc:
        reset = _reset_peak()
        baseline, peak_before = _status_bytes("VmRSS"), _status_bytes("VmHWM")
    else:
        baseline = _maxrss_bytes()
    samples = []
    started = time.perf_counter()
    interpreter = _interpreter(interpreter_class, model, 1, data)
    init_ms = (time.perf_counter() - started) * 1000.0
    samples.append(_status_bytes("VmRSS") or 0)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], data)
    started = time.perf_counter()
    interpreter.invoke()
    first_ms = (time.perf_counter() - started) * 1000.0
    samples.append(_status_bytes("VmRSS") or 0)
    for _ in range(runs):
        interpreter.invoke()
    samples.append(_status_bytes("VmRSS") or 0)
    if proc:
        peak = max(samples)
        peak_after = _status_bytes("VmHWM") or 0
        if reset or peak_after > (peak_before or 0):  # else the peak is the imports' one
            peak = max(peak, peak_after)
    else:
        peak = _maxrss_bytes()
    return {"peak_memory_bytes": max(0, int(peak - (baseline or 0))),
            "init_ms": init_ms, "first_invoke_ms": first_ms}


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def runtime_figures(models: dict[str, tuple[str, str]], runs: int, repeats: int
                    ) -> dict[str, dict[str, Any]]:
    """:func:`measure_runtime` of every model in ``repeats`` fresh processes each (forks of this
    one where :func:`can_fork`, else this file run with ``--runtime``; the models in turn, so a
    slow moment hits them alike): the median memory growth, and the shortest init and
    first-invoke times (other processes only ever add time to a one-off event, so the least
    disturbed of the processes is the closest to its cost)."""
    figures: dict[str, list[dict[str, Any]]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, (model, input_path) in models.items():
            pages = _resident_file_pages() if can_fork() else None
            if pages is not None:
                code, stdout, stderr = _forked(partial(_fresh_runtime, pages, model, input_path,
                                                       runs))
            else:
                command = [sys.executable, os.path.abspath(__file__), "--runtime", model,
                           input_path, str(runs)]
                child = subprocess.run(command, capture_output=True, text=True)
                code, stdout, stderr = child.returncode, child.stdout, child.stderr
            if code != 0:
                raise RunnerError(_child_error(name, stderr, code))
            figures[name].append(_result(stdout))
    return {name: {"peak_memory_bytes": int(_median([f["peak_memory_bytes"] for f in found])),
                   "init_ms": min(f["init_ms"] for f in found),
                   "first_invoke_ms": min(f["first_invoke_ms"] for f in found),
                   "threads": 1}
            for name, found in figures.items()}


def can_fork() -> bool:
    """Whether a fork of this process is a fresh process for :func:`measure_runtime`: Linux with
    ``/proc/self/status`` (the ``VmHWM`` method), this process has created no interpreter, and
    it runs no thread but those :func:`runtime`'s imports started in a process that had none
    (numpy's OpenBLAS pool, which OpenBLAS stops itself before a fork); any other thread might
    hold a lock the child would wait for forever."""
    if not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        return False
    if _interpreter_created or _status_bytes("VmHWM") is None:
        return False
    threads = _threads()
    return threads is not None and (len(threads) == 1 or threads <= (_import_threads or set()))


def _resident_file_pages() -> list[tuple[int, int]] | None:
    """``(address, length)`` of each run of pages resident in this process's readable
    file-backed mappings (``/proc/self/maps`` and the present bit of ``/proc/self/pagemap``);
    ``None`` where those, or ``/proc/self/mem`` (:func:`_map_again`), cannot be read.

    A fork copies the page tables of anonymous and written memory but leaves the rest of the
    file-backed mappings (the code of Python, numpy and the runtime) to be mapped again as the
    child touches them: the child's resident set would grow by the library pages it runs after
    its baseline, which a new process has resident from its imports."""
    page = os.sysconf("SC_PAGE_SIZE")
    runs: list[tuple[int, int]] = []
    try:
        with open("/proc/self/maps") as maps:
            lines = maps.read().splitlines()
        with open("/proc/self/mem", "rb", buffering=0):
            pass
        with open("/proc/self/pagemap", "rb", buffering=0) as pagemap:
            for line in lines:
                fields = line.split(maxsplit=5)
                if len(fields) < 6 or not fields[5].startswith("/") or fields[1][0] != "r":
                    continue
                low, high = (int(bound, 16) for bound in fields[0].split("-"))
                entries = os.pread(pagemap.fileno(), (high - low) // page * 8, low // page * 8)
                start = end = -1
                # bit 63 of each little-endian 8-byte entry: the page is present
                for index, flags in enumerate(entries[7::8]):
                    if flags & 0x80:
                        if index != end:
                            if end > start:
                                runs.append((low + start * page, (end - start) * page))
                            start = index
                        end = index + 1
                if end > start:
                    runs.append((low + start * page, (end - start) * page))
    except OSError:
        return None
    return runs


def _map_again(runs: list[tuple[int, int]]) -> None:
    """Map the pages of ``runs`` into this (forked) process again by reading them through
    ``/proc/self/mem`` (a read fault, as a new process's imports made), into one reused
    anonymous buffer: no allocation that would change what the heap holds afterwards."""
    import mmap

    chunk = 64 * os.sysconf("SC_PAGE_SIZE")
    buffer = mmap.mmap(-1, chunk)
    try:
        with memoryview(buffer) as view, open("/proc/self/mem", "rb", buffering=0) as memory:
            for address, length in runs:
                for offset in range(0, length, chunk):
                    try:
                        os.preadv(memory.fileno(), [view[:min(chunk, length - offset)]],
                                  address + offset)
                    except OSError:  # a mapping /proc/self/mem does not read (a device's)
                        break
    finally:
        buffer.close()


def _fresh_runtime(pages: list[tuple[int, int]], model: str, input_path: str, runs: int) -> str:
    """:func:`measure_runtime` in a forked child, after :func:`_map_again`: its result line."""
    _map_again(pages)
    return RESULT_PREFIX + json.dumps(measure_runtime(model, input_path, runs)) + "\n"


def _forked(task: Callable[[], str]) -> tuple[int, str, str]:
    """``task`` run in a child forked from this process: ``(exit code, the text task returned,
    the child's stderr)``, as :func:`main` run in a new process would end (exit
    :data:`RUNNER_ERROR_EXIT` and an :data:`ERROR_PREFIX` line for a :class:`RunnerError`, 1 and
    a traceback for another exception, minus the signal number for a signal). The child's
    stdout and stderr do not reach this process's; it leaves through ``os._exit``, never
    through this process's ``finally`` blocks or ``atexit`` handlers."""
    sys.stdout.flush()
    sys.stderr.flush()
    read, write = os.pipe()
    with tempfile.TemporaryFile() as errors:
        try:
            with warnings.catch_warnings():  # 3.12+ warns of threads: OpenBLAS stopped its own
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
        except OSError:
            os.close(read)
            os.close(write)
            raise
        if pid == 0:  # the child
            code = 1
            try:
                os.close(read)
                os.dup2(errors.fileno(), 2)
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 1)
                text = task().encode()
                while text:
                    text = text[os.write(write, text):]
                code = 0
            except RunnerError as error:
                sys.stderr.write(ERROR_PREFIX + str(error) + "\n")
                code = RUNNER_ERROR_EXIT
            except BaseException:
                traceback.print_exc()
            finally:
                try:
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        os.close(write)
        chunks = []
        try:
            while chunk := os.read(read, 65536):
                chunks.append(chunk)
        finally:
            os.close(read)
            _, status = os.waitpid(pid, 0)
        errors.seek(0)
        stderr = errors.read().decode(errors="replace")
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return code, b"".join(chunks).decode(errors="replace"), stderr


def _child_error(name: str, stderr: str, code: int) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if line.startswith(ERROR_PREFIX):
            return line[len(ERROR_PREFIX):]
    last = lines[-1] if lines else f"exit code {code}"
    return f"{name}: the runtime measurement failed ({last.strip()[:200]})"


def _result(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    raise RunnerError("a runtime measurement printed no result")


# --- the interleaved latency session -----------------------------------------------------------

def cpu_sample() -> tuple[float, float, float] | None:
    """``(wall seconds, CPU seconds busy on the whole machine, CPU seconds of this process and
    its finished children)``, or ``None`` where ``/proc/stat`` does not exist (not Linux): load
    is then not measured.

    Busy time is every ``/proc/stat`` field but idle and iowait: user, nice, system, irq,
    softirq and steal (time a hypervisor gave to other machines, also load this session saw).
    """
    try:
        with open("/proc/stat") as stat:
            first = stat.readline().split()
    except OSError:
        return None
    ticks = [int(value) for value in first[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]
    own = os.times()
    return (time.perf_counter(), busy / os.sysconf("SC_CLK_TCK"),
            own.user + own.system + own.children_user + own.children_system)


def other_load(before: tuple[float, float, float] | None,
               after: tuple[float, float, float] | None) -> float | None:
    """Average number of cores other processes kept busy between two CPU samples
    (:func:`cpu_sample`)."""
    if before is None or after is None or after[0] <= before[0]:
        return None
    others = (after[1] - before[1]) - (after[2] - before[2])
    return max(0.0, others / (after[0] - before[0]))


def contended_threads(load: float | None, cores: int | None, threads: list[int]) -> list[int]:
    """The thread counts whose timings other processes made unreliable: ``t`` threads need ``t``
    free cores, so ``t`` is contended when ``load > cores - t + CONTENTION_SLACK_CORES``.

    >>> contended_threads(1.3, 2, [1, 2])   # two busy processes sharing 2 cores with ours
    [2]
    >>> contended_threads(0.05, 2, [1, 2])  # an idle machine
    []
    """
    if load is None or not cores:
        return []
    return [t for t in threads if load > cores - t + CONTENTION_SLACK_CORES]


def summarize(times_ms: list[float]) -> dict[str, float]:
    """``mean_ms``, ``p50_ms``, ``p90_ms``, ``std_ms`` and ``runs`` of timed invokes (ms)."""
    import numpy as np

    values = np.array(times_ms)
    return {"mean_ms": float(values.mean()), "p50_ms": float(np.percentile(values, 50)),
            "p90_ms": float(np.percentile(values, 90)), "std_ms": float(values.std()),
            "runs": int(len(values))}


def _block(invoke: Any, times: list[float], runs: int, seconds: float) -> None:
    """One untimed invoke (re-warms caches after the other models ran), then timed invokes
    until ``runs`` runs and ``seconds`` seconds."""
    invoke()
    started = time.perf_counter()
    done = 0
    while done < runs or time.perf_counter() - started < seconds:
        begin = time.perf_counter()
        invoke()
        times.append((time.perf_counter() - begin) * 1000.0)
        done += 1


def latency_session(models: dict[str, tuple[str, str | None]], threads: list[int],
                    warmup_runs: int, min_runs: int, min_seconds: float, rounds: int
                    ) -> tuple[dict[str, dict[str, Any]], float | None]:
    """Latency of every (model, threads) pair, interleaved over ``rounds`` rounds.

    Returns ``({name: {"<threads>": stats}}, other_load_cores)``, stats as :func:`summarize`.
    """
    interpreter_class, _ = runtime()
    slots = []
    for name, (model, input_path) in models.items():
        data = model_input(interpreter_class, model, input_path)
        for count in threads:
            interpreter = _interpreter(interpreter_class, model, count, data)
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], data)
            for _ in range(warmup_runs + 1):
                interpreter.invoke()
            slots.append((name, count, interpreter, []))
    runs = math.ceil(min_runs / rounds)
    seconds = min_seconds / rounds
    before = cpu_sample()
    for index in range(rounds):
        shift = index % len(slots) if slots else 0
        for _, _, interpreter, times in slots[shift:] + slots[:shift]:
            _block(interpreter.invoke, times, runs, seconds)
    load = other_load(before, cpu_sample())
    latency: dict[str, dict[str, Any]] = {name: {} for name in models}
    for name, count, _, times in slots:
        latency[name][str(count)] = summarize(times)
    return latency, load


# --- the device and the whole session ------------------------------------------------------------

def cpu_model() -> str:
    """The CPU's name: ``model name`` of ``/proc/cpuinfo`` (x86), else its ``Model`` or
    ``Hardware`` line (ARM boards) with the architecture, else what ``platform`` knows."""
    found: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                if value.strip():
                    found.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    if "model name" in found:
        return found["model name"]
    for key in ("Model", "Hardware"):
        if key in found:
            return f"{found[key]} ({platform.machine()})"
    return platform.processor() or platform.machine() or "unknown"


def device_record(runtime_name: str) -> dict[str, Any]:
    """``hostname``, ``cpu``, ``cores``, ``runtime`` (``"<package> <version>"``), ``python``."""
    return {"hostname": platform.node(), "cpu": cpu_model(), "cores": os.cpu_count(),
            "runtime": runtime_name, "python": platform.python_version()}


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run(manifest_path: str) -> dict[str, Any]:
    """The whole session the manifest describes: runtime figures, then latency.

    Returns ``{"session": {started_utc, finished_utc, device, memory_method, other_load_cores,
    runtime_other_load_cores, contended_threads, numpy}, "models": {name: {"latency": {...},
    "runtime": {...}}}}`` (``runtime_other_load_cores``: the load of other processes while the
    runtime figures were measured, as ``other_load_cores`` is while the latency was timed).
    """
    with open(manifest_path) as handle:
        manifest = json.load(handle)
    folder = os.path.dirname(os.path.abspath(manifest_path))

    def located(path: str | None) -> str | None:
        return None if not path else os.path.join(folder, path)

    interpreter_class, runtime_name = runtime()
    started = _utc_now()
    with tempfile.TemporaryDirectory(prefix="litequant-inputs-") as inputs:
        models: dict[str, tuple[str, str | None]] = {}
        for index, (name, spec) in enumerate(manifest["models"].items()):
            model, data = located(spec["model"]), located(spec.get("input"))
            if data is None:  # the fresh processes all load their input the same way: a .npy
                data = os.path.join(inputs, f"input{index}.npy")
                save_random_input(interpreter_class, model, data, name)
            models[name] = (model, data)
        before = cpu_sample()
        figures = runtime_figures(models, manifest["warmup_runs"], manifest["runtime_repeats"])
        runtime_load = other_load(before, cpu_sample())
        latency, load = latency_session(models, manifest["threads"], manifest["warmup_runs"],
                                        manifest["min_runs"], manifest["min_seconds"],
                                        manifest["rounds"])
    cores = os.cpu_count()
    session = {"started_utc": started, "finished_utc": _utc_now(),
               "device": device_record(runtime_name),
               "memory_method": (MEMORY_METHOD_PROC if _status_bytes("VmRSS") is not None
                                 else MEMORY_METHOD_RUSAGE),
               "numpy": _version("numpy", sys.modules.get("numpy")),
               "other_load_cores": None if load is None else round(load, 2),
               "runtime_other_load_cores": (None if runtime_load is None
                                            else round(runtime_load, 2)),
               "contended_threads": contended_threads(load, cores, list(manifest["threads"]))}
    return {"session": session,
            "models": {name: {"latency": latency[name], "runtime": figures[name]}
                       for name in models}}


def main(argv: list[str]) -> int:
    """``MANIFEST`` (the session) or ``--runtime MODEL INPUT RUNS`` (one fresh-process runtime
    measurement); prints :data:`RESULT_PREFIX` + JSON on one stdout line."""
    try:
        if argv[:1] == ["--runtime"] and len(argv) == 4:
            result = measure_runtime(argv[1], argv[2], int(argv[3]))
        elif len(argv) == 1:
            result = run(argv[0])
        else:
            raise RunnerError("usage: device_runner.py MANIFEST.json")
    except RunnerError as error:
        sys.stderr.write(ERROR_PREFIX + str(error) + "\n")
        return RUNNER_ERROR_EXIT
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
