"""The benchmark session's runtime figures and device record
(:mod:`litequant.measure.device_runner`, run on this machine by
:mod:`litequant.measure.devices`), the ``benchmark.device``/``ssh`` params, and the report's
device label and runtime columns."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from litequant.core.errors import PipelineError
from litequant.core.params import BenchmarkParams, section
from litequant.measure import device_runner
from litequant.report.summary import build_rows, markdown, model_records
from tests.conftest import params_section, repo_params
from tests.test_latency_sessions import _collected, _session

MIB = 2**20
#: Input width of the hand-made models: 32x32x3 flattened.
FLAT = 32 * 32 * 3
#: Output width of the big model: its one weight matrix is FLAT x 1024 float32 = 12 MiB.
BIG_UNITS = 1024


def _dense_model(path: Path, units: int) -> Path:
    """A ``(1, 32, 32, 3)`` float32 image model: flatten, one dense layer of ``units``; its
    weights are ``FLAT * units * 4`` bytes."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((32, 32, 3), batch_size=1), keras.layers.Flatten(),
                              keras.layers.Dense(units)])
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small (8 units, 96 KiB of weights) and a big (12 MiB of weights) model."""
    folder = tmp_path_factory.mktemp("runner")
    return {"small": _dense_model(folder / "small.tflite", 8),
            "big": _dense_model(folder / "big.tflite", BIG_UNITS)}


@pytest.fixture(scope="module")
def session(models: dict[str, Path]) -> dict:
    """One local session of both models."""
    from litequant.measure.benchmarking import measure_session

    models = {name: (path, "tf") for name, path in models.items()}
    settings = params_section(BenchmarkParams, threads=[1], warmup_runs=2, min_runs=4,
                              min_seconds=0.1, runtime_repeats=1)
    return measure_session(models, settings)


@pytest.mark.slow  # TF converts the models; runner subprocesses
def test_runtime_figures_are_present_and_sane(session: dict) -> None:
    for name in ("small", "big"):
        figures = session["models"][name]["runtime"]
        assert set(figures) == {"peak_memory_bytes", "init_ms", "first_invoke_ms", "threads"}
        assert figures["threads"] == 1
        assert isinstance(figures["peak_memory_bytes"], int)
        assert 0 < figures["peak_memory_bytes"] < 200 * MIB, figures
        assert 0 < figures["init_ms"] < 10_000 and 0 < figures["first_invoke_ms"] < 10_000
        assert session["models"][name]["latency"]["1"]["runs"] >= 4


@pytest.mark.slow  # TF converts the models; runner subprocesses
def test_a_bigger_model_grows_the_resident_set_by_at_least_its_weights(session: dict) -> None:
    # the big model's 12 MiB weight matrix is read (the file is mapped) and packed by XNNPACK:
    # it is resident at least once and at most about twice, on top of what the small one needs
    weights = FLAT * BIG_UNITS * 4
    small = session["models"]["small"]["runtime"]["peak_memory_bytes"]
    big = session["models"]["big"]["runtime"]["peak_memory_bytes"]
    assert 0.95 * weights <= big - small <= 2.5 * weights, (small / MIB, big / MIB)


@pytest.mark.slow  # TF converts the models; runner subprocesses
def test_the_session_names_this_machine(session: dict) -> None:
    from importlib import metadata

    record = session["session"]
    device = record["device"]
    assert list(device) == ["kind", "hostname", "cpu", "cores", "runtime", "python"]
    assert device["kind"] == "local" and device["hostname"] == platform.node()
    assert device["cores"] == os.cpu_count() and device["python"] == platform.python_version()
    assert device["runtime"] == f"ai-edge-litert {metadata.version('ai-edge-litert')}"
    assert device["cpu"] == device_runner.cpu_model() and device["cpu"]
    # the device's facts once, under "device"
    assert not {"host", "cpu", "cores", "python", "ai_edge_litert"} & set(record)
    assert "VmHWM" in record["memory_method"] or "ru_maxrss" in record["memory_method"]
    assert record["runtime_repeats"] == 1 and "contended_threads" in record
    assert record["runtime_other_load_cores"] >= 0.0


def test_runner_without_numpy_says_what_to_install(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"models": {}}))
    # -I -S: this Python without its site-packages, as on a device where numpy is missing
    child = subprocess.run([sys.executable, "-I", "-S", device_runner.__file__, str(manifest)],
                           capture_output=True, text=True)
    assert child.returncode == device_runner.RUNNER_ERROR_EXIT
    assert child.stderr.strip() == (f"{device_runner.ERROR_PREFIX}numpy is not installed for "
                                    f"{sys.executable}: {sys.executable} -m pip install numpy "
                                    "ai-edge-litert (or tflite-runtime)")


def test_runner_without_a_litert_runtime_says_what_to_install(tmp_path: Path) -> None:
    import numpy

    # a Python that finds numpy (and only numpy) beside the runner: no ai_edge_litert, no
    # tflite_runtime, as on a device with only numpy installed
    packages = Path(numpy.__file__).parents[1]
    only_numpy = tmp_path / "site"
    only_numpy.mkdir()
    for name in ("numpy", "numpy.libs"):
        if (packages / name).exists():
            (only_numpy / name).symlink_to(packages / name)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"models": {}}))
    child = subprocess.run([sys.executable, "-S", device_runner.__file__, str(manifest)],
                           capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(only_numpy)})
    assert child.returncode == device_runner.RUNNER_ERROR_EXIT, child.stderr
    assert child.stderr.strip() == (f"{device_runner.ERROR_PREFIX}no LiteRT runtime for "
                                    f"{sys.executable} (neither ai_edge_litert nor "
                                    f"tflite_runtime imports): {sys.executable} -m pip install "
                                    "numpy ai-edge-litert (or tflite-runtime)")


def _run_manifest(folder: Path, models: dict[str, str]) -> subprocess.CompletedProcess:
    """The runner on a manifest of ``models`` (name → path), inputs left to the runner."""
    manifest = folder / "manifest.json"
    manifest.write_text(json.dumps({"models": {name: {"model": path, "input": None}
                                               for name, path in models.items()},
                                    "threads": [1], "warmup_runs": 0, "min_runs": 1,
                                    "min_seconds": 0.01, "rounds": 1, "runtime_repeats": 1}))
    return subprocess.run([sys.executable, device_runner.__file__, str(manifest)],
                          capture_output=True, text=True)


@pytest.mark.slow  # TF converts the models; runner subprocesses
def test_runner_alone_builds_a_random_input(tmp_path: Path, models: dict[str, Path]) -> None:
    child = _run_manifest(tmp_path, {"small": str(models["small"])})
    assert child.returncode == 0, child.stderr
    result_line, = [line for line in child.stdout.splitlines()
                    if line.startswith(device_runner.RESULT_PREFIX)]
    result = json.loads(result_line[len(device_runner.RESULT_PREFIX):])
    assert result["models"]["small"]["runtime"]["peak_memory_bytes"] > 0
    assert result["models"]["small"]["latency"]["1"]["runs"] >= 1
    assert result["session"]["device"]["hostname"] == platform.node()


def test_runner_refuses_a_broken_model_in_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a flatbuffer" * 10)
    child = _run_manifest(tmp_path, {"broken": "broken.tflite"})  # relative to the manifest
    assert child.returncode == device_runner.RUNNER_ERROR_EXIT
    assert child.stderr.strip() == (f"{device_runner.ERROR_PREFIX}broken.tflite: not a loadable "
                                    "TFLite model for this runtime (The model is not a valid "
                                    "Flatbuffer buffer)")


#: Run first by :func:`_fresh_runner`: the runner loaded by path as ``runner`` (standalone, as
#: on a device) in a new Python, numpy and the runtime imported by the runner itself; ``fail``
#: replaces what a path must not use.
FRESH_RUNNER = """
import importlib.util, json, os, signal, sys, threading, types
spec = importlib.util.spec_from_file_location("device_runner", sys.argv[1])
runner = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runner)
interpreter_class, _ = runner.runtime()

def fail(*args, **kwargs):
    raise AssertionError("the other path ran")

def figures(path, models, runs=2, repeats=2):
    # runtime_figures by one path only: "fork" (no subprocess) or "subprocess" (no fork)
    saved = runner.can_fork, runner.subprocess, os.fork
    if path == "fork":
        runner.subprocess = types.SimpleNamespace(run=fail)
    else:
        runner.can_fork, os.fork = (lambda: False), fail
    try:
        return runner.runtime_figures(models, runs, repeats)
    except runner.RunnerError as error:
        return str(error)
    finally:
        runner.can_fork, runner.subprocess, os.fork = saved
"""


def _fresh_runner(script: str, *args: str) -> dict:
    """:data:`FRESH_RUNNER` then ``script`` in a new Python (``sys.argv[2:]`` = ``args``); the
    JSON ``script`` prints last."""
    child = subprocess.run([sys.executable, "-c", FRESH_RUNNER + script, device_runner.__file__,
                            *args], capture_output=True, text=True)
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout.splitlines()[-1])


#: The fork path needs Linux's /proc (elsewhere the runner starts new processes only).
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


def _sane(figures: dict) -> None:
    assert figures["threads"] == 1 and figures["peak_memory_bytes"] > 0, figures
    assert figures["init_ms"] > 0 and figures["first_invoke_ms"] > 0, figures


@linux_only
@pytest.mark.slow  # TF converts the models
def test_forked_and_new_processes_measure_alike(tmp_path: Path, models: dict[str, Path]) -> None:
    result = _fresh_runner("""
model, data = sys.argv[2], sys.argv[3]
runner.save_random_input(interpreter_class, model, data, "small")  # in a fork: no interpreter here
print(json.dumps({"can_fork": runner.can_fork(),
                  "fork": figures("fork", {"small": (model, data)}),
                  "subprocess": figures("subprocess", {"small": (model, data)})}))
""", str(models["small"]), str(tmp_path / "input.npy"))
    assert result["can_fork"] is True
    assert isinstance(result["fork"], dict) and isinstance(result["subprocess"], dict), result
    forked, spawned = result["fork"]["small"], result["subprocess"]["small"]
    _sane(forked)
    _sane(spawned)
    # the same pages counted: a fork that left the libraries' code unmapped (no _map_again) counts
    # some 2.4 MiB more here, the code the interpreter runs that a new process had resident
    difference = abs(forked["peak_memory_bytes"] - spawned["peak_memory_bytes"])
    assert difference < MIB // 2, (forked, spawned)


@linux_only
def test_a_forked_measurement_fails_in_the_same_one_line(tmp_path: Path) -> None:
    import numpy as np

    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a flatbuffer" * 10)
    data = tmp_path / "input.npy"
    np.save(data, np.zeros((1, 4), np.float32))
    result = _fresh_runner("""
models = {"broken": (sys.argv[2], sys.argv[3])}
errors = {"can_fork": runner.can_fork(), "fork": figures("fork", models),
          "subprocess": figures("subprocess", models)}
runner.measure_runtime = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
errors["signal"] = figures("fork", {"crash": (sys.argv[2], sys.argv[3])})
print(json.dumps(errors))
""", str(broken), str(data))
    assert result["can_fork"] is True
    message = ("broken.tflite: not a loadable TFLite model for this runtime (The model is not a "
               "valid Flatbuffer buffer)")
    assert result["fork"] == result["subprocess"] == message
    assert result["signal"] == "crash: the runtime measurement failed (exit code -9)"


@linux_only
@pytest.mark.slow  # TF converts the models
def test_no_fork_once_this_process_made_an_interpreter(tmp_path: Path,
                                                       models: dict[str, Path]) -> None:
    result = _fresh_runner("""
model, data = sys.argv[2], sys.argv[3]
runner.save_random_input(interpreter_class, model, data, "small")  # a fork: OpenBLAS's pool stops
found = {"before": runner.can_fork()}
stop = threading.Event()
waiting = threading.Thread(target=stop.wait)
waiting.start()
found["another_thread"] = runner.can_fork()
stop.set()
waiting.join()
runner.model_input(interpreter_class, model, None)  # an interpreter in this process
found["after"] = runner.can_fork()
os.fork = fail  # so the figures come from new processes
found["figures"] = runner.runtime_figures({"small": (model, data)}, 2, 1)
print(json.dumps(found))
""", str(models["small"]), str(tmp_path / "input.npy"))
    assert (result["before"], result["another_thread"], result["after"]) == (True, False, False)
    _sane(result["figures"]["small"])


@pytest.mark.parametrize("change, message", [
    ({"device": "ssh"}, "benchmark.ssh.target must name the device (user@host) when "
                        "benchmark.device is 'ssh'"),
    ({"device": "phone"}, "benchmark.device: input should be 'local' or 'ssh', got 'phone'"),
    ({"ssh.target": "-oProxyCommand=sh@x"}, "benchmark.ssh.target must be user@host, got "
                                            "'-oProxyCommand=sh@x'"),
    ({"ssh.target": "raspberrypi"}, "benchmark.ssh.target must be user@host"),
    ({"ssh.port": 0}, "benchmark.ssh.port: input should be greater than or equal to 1, got 0"),
    ({"ssh.port": "22"}, "benchmark.ssh.port: input should be a valid integer"),
    ({"ssh.prt": 22}, "benchmark.ssh.prt: unknown key (known keys: target, port, key, "
                      "known_hosts, python, connect_timeout)"),
    ({"ssh.key": ""}, "benchmark.ssh.key: string should have at least 1 character"),
    ({"runtime_repeats": 0}, "benchmark.runtime_repeats: input should be greater than or equal "
                             "to 1"),
])
def test_device_params_are_refused_in_one_line(change: dict, message: str) -> None:
    params = repo_params()
    (key, value), = change.items()
    target = params["benchmark"]
    *parents, last = key.split(".")
    for part in parents:
        target = target[part]
    target[last] = value
    with pytest.raises(PipelineError) as error:
        section(params, BenchmarkParams)
    assert "\n" not in str(error.value) and message in str(error.value), str(error.value)


def test_ssh_key_file_problems_are_named_before_connecting(tmp_path: Path) -> None:
    from litequant.measure.devices import check_ssh_files

    key = tmp_path / "id_ed25519"
    ssh = {"target": "pi@192.0.2.1", "port": 22, "key": str(key), "known_hosts": None,
           "python": "python3", "connect_timeout": 5}
    settings = params_section(BenchmarkParams, device="ssh", ssh=ssh)
    with pytest.raises(PipelineError, match=f"benchmark.ssh.key: {key} is not a file"):
        check_ssh_files(settings.ssh)
    key.write_text("not a real key")
    key.chmod(0o644)
    with pytest.raises(PipelineError, match=f"readable by other users.*chmod 600 {key}"):
        check_ssh_files(settings.ssh)


def test_report_rows_carry_the_runtime_figures_and_the_device() -> None:
    document = _session("remote", {"float32": 8.0, "int8": 2.0})
    document["models"]["float32"]["runtime"] = {"peak_memory_bytes": 40 * MIB + MIB // 2,
                                                "init_ms": 13.456, "first_invoke_ms": 6.789,
                                                "threads": 1}
    document["models"]["int8"]["runtime"] = {"peak_memory_bytes": 15 * MIB, "init_ms": 6.0,
                                             "first_invoke_ms": 3.0, "threads": 1}
    document["session"]["device"] = {"kind": "ssh", "hostname": "raspberrypi",
                                     "cpu": "Raspberry Pi 4 Model B Rev 1.4 (aarch64)",
                                     "cores": 4, "runtime": "tflite-runtime 2.14.0",
                                     "python": "3.11.2"}
    records = model_records(document)
    collected = {**_collected({"float32": records["float32"], "int8": records["int8"]}),
                 "latency_session": document["session"]}
    rows = {row["variant"]: row for row in build_rows(collected, ["float32", "int8"])}
    assert (rows["float32"]["memory_mib"], rows["float32"]["init_ms"],
            rows["float32"]["first_invoke_ms"]) == (40.5, 13.46, 6.79)
    assert rows["int8"]["memory_mib"] == 15.0
    text = markdown(list(rows.values()), collected)
    label = ("raspberrypi (target device over SSH) (Raspberry Pi 4 Model B Rev 1.4 (aarch64), 4 "
             "cores; tflite-runtime 2.14.0)")
    assert f"measured on {label}" in text and f"(UTC) on {label}" in text
