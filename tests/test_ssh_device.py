"""The benchmark stage on a target device over SSH, end to end, against the real SSH server that
``.ci/run`` starts on 127.0.0.1 (``.ci/ssh-device.sh``: a second user, a temporary key, a generated
host key in a known_hosts file, a Python with numpy and ai-edge-litert for that user).

``python -m stages.benchmark`` runs in a small project (one tiny float32 variant) with
``benchmark.device: ssh``: the session must name the device and carry the runtime figures;
a wrong port, a wrong key, an unknown or changed host key and a device Python without numpy must
each stop the stage with one line naming the fix and exit 1; no key material may appear in any
output.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, repo_params, small_classifier

ENV = ("LITEQUANT_SSH_TEST_TARGET", "LITEQUANT_SSH_TEST_PORT", "LITEQUANT_SSH_TEST_KEY",
       "LITEQUANT_SSH_TEST_KNOWN_HOSTS", "LITEQUANT_SSH_TEST_PYTHON",
       "LITEQUANT_SSH_TEST_BARE_PYTHON")

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not all(os.environ.get(name) for name in ENV),
    reason="no SSH test device: run .ci/run (as root; it starts sshd on 127.0.0.1 and exports "
           "LITEQUANT_SSH_TEST_*), or source .ci/ssh-device.sh")]


def _ssh(**changes: object) -> dict:
    """``benchmark.ssh`` of the CI device, with ``changes``."""
    return {"target": os.environ["LITEQUANT_SSH_TEST_TARGET"],
            "port": int(os.environ["LITEQUANT_SSH_TEST_PORT"]),
            "key": os.environ["LITEQUANT_SSH_TEST_KEY"],
            "known_hosts": os.environ["LITEQUANT_SSH_TEST_KNOWN_HOSTS"],
            "python": os.environ["LITEQUANT_SSH_TEST_PYTHON"], "connect_timeout": 5, **changes}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with one converted variant (float32, a tiny model) ready to benchmark."""
    import tensorflow as tf

    folder = tmp_path_factory.mktemp("ssh_project")
    variant = folder / "data/convert/float32"
    variant.mkdir(parents=True)
    (variant / "model.tflite").write_bytes(
        tf.lite.TFLiteConverter.from_keras_model(small_classifier()).convert())
    (variant / "conversion.json").write_text(json.dumps({"status": "ok"}))
    (folder / "data/export").mkdir(parents=True)
    (folder / "data/export/model.json").write_text(json.dumps({"preprocessing": "tf"}))
    return folder


def _benchmark(project: Path, ssh: dict) -> subprocess.CompletedProcess:
    """``python -m stages.benchmark`` in ``project`` on the device ``ssh``."""
    params = repo_params()
    params["convert"]["variants"] = {name: name == "float32"
                                     for name in params["convert"]["variants"]}
    params["benchmark"].update(threads=[1], warmup_runs=1, min_runs=2, min_seconds=0.1,
                               runtime_repeats=1, device="ssh", ssh=ssh)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return subprocess.run([sys.executable, "-m", "stages.benchmark"], cwd=project,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def _device_folders() -> set[Path]:
    """The device user's temporary benchmark folders (the device is this machine)."""
    import pwd

    user = os.environ["LITEQUANT_SSH_TEST_TARGET"].split("@")[0]
    uid = pwd.getpwnam(user).pw_uid
    return {path for path in Path("/tmp").glob("litequant-benchmark-*")
            if path.stat().st_uid == uid}


def _device_python_version() -> str:
    return subprocess.run([os.environ["LITEQUANT_SSH_TEST_PYTHON"], "-c",
                           "import platform; print(platform.python_version())"],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_the_benchmark_runs_on_the_ssh_device_and_names_it(project: Path) -> None:
    key = Path(os.environ["LITEQUANT_SSH_TEST_KEY"])
    remote_folders = _device_folders()
    child = _benchmark(project, _ssh())
    assert child.returncode == 0, child.stderr
    document = json.loads((project / "data/benchmark/latency.json").read_text())
    device = document["session"]["device"]
    assert device["kind"] == "ssh" and device["hostname"] == platform.node()  # 127.0.0.1
    assert device["python"] == _device_python_version()  # the device's Python, not ours
    assert device["runtime"].startswith("ai-edge-litert ") and device["cores"] >= 1
    figures = document["models"]["float32"]["runtime"]
    assert figures["peak_memory_bytes"] > 0 and figures["init_ms"] > 0
    assert figures["first_invoke_ms"] > 0 and figures["threads"] == 1
    assert document["models"]["float32"]["latency"]["1"]["runs"] >= 2
    assert f"measured on {device['hostname']} (ssh:" in child.stdout
    # the device's temporary folder is gone; no key material anywhere
    assert _device_folders() == remote_folders
    secret = key.read_text().strip().splitlines()[1]  # a line of the private key's body
    for text in (child.stdout, child.stderr, (project / "data/benchmark/latency.json").read_text(),
                 (project / "params.yaml").read_text()):
        assert secret not in text and "PRIVATE KEY" not in text


def _refusal(project: Path, ssh: dict) -> str:
    child = _benchmark(project, ssh)
    assert child.returncode == 1, child.stdout + child.stderr
    lines = child.stderr.strip().splitlines()
    assert len(lines) == 1, child.stderr
    assert lines[0].startswith("error: benchmark on device ")
    return lines[0]


def test_an_unreachable_port_is_one_line(project: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    line = _refusal(project, _ssh(port=port))
    assert f"cannot reach {os.environ['LITEQUANT_SSH_TEST_TARGET']} port {port}" in line
    assert "check benchmark.ssh.target and benchmark.ssh.port" in line


def test_a_wrong_key_is_one_line(project: Path, tmp_path: Path) -> None:
    key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    line = _refusal(project, _ssh(key=str(key)))
    assert f"refused the key {key} (benchmark.ssh.key)" in line
    assert "authorized_keys" in line


def test_an_unknown_host_key_is_refused(project: Path, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    line = _refusal(project, _ssh(known_hosts=str(known_hosts)))
    assert f"is not in {known_hosts} (benchmark.ssh.known_hosts)" in line
    assert "never accepted blindly" in line
    assert known_hosts.read_text() == ""  # nothing was added


def test_a_device_python_without_numpy_is_one_line(project: Path) -> None:
    bare = os.environ["LITEQUANT_SSH_TEST_BARE_PYTHON"]
    line = _refusal(project, _ssh(python=bare))
    assert f"numpy is not installed for {bare}: {bare} -m pip install numpy ai-edge-litert" in line


def test_a_changed_host_key_is_refused(project: Path, tmp_path: Path) -> None:
    other = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    port = os.environ["LITEQUANT_SSH_TEST_PORT"]
    known_hosts = tmp_path / "known_hosts"  # the device's address with another machine's key
    entry = " ".join(Path(f"{other}.pub").read_text().split()[:2])
    known_hosts.write_text(f"[127.0.0.1]:{port} {entry}\n")
    line = _refusal(project, _ssh(known_hosts=str(known_hosts)))
    assert f"differs from the one in {known_hosts}" in line and "ssh-keygen -R" in line


def test_the_report_of_an_ssh_session_names_the_device(small_pipeline: Path,
                                                       tmp_path: Path) -> None:
    """The whole small pipeline re-benchmarked on the SSH device: the report's latency is
    labelled with the device, and its ratios are taken within that one session."""
    import shutil

    project = tmp_path / "project"
    shutil.copytree(small_pipeline, project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["benchmark"].update(threads=[1], warmup_runs=1, min_runs=2, min_seconds=0.1,
                               runtime_repeats=1, device="ssh", ssh=_ssh())
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for stage in ("benchmark", "report"):
        done = subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=project,
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        assert done.returncode == 0, done.stderr[-2000:]
    device = json.loads((project / "data/benchmark/latency.json").read_text())["session"]["device"]
    assert device["kind"] == "ssh" and device["python"] == _device_python_version()
    summary = (project / "reports/summary.md").read_text()
    assert f"{device['hostname']} (target device over SSH)" in summary
    rows = json.loads((project / "reports/variants.json").read_text())
    # float32 against the float32 of the same (SSH) session (no number when the session found
    # its core busy)
    assert rows["float32"].get("speedup_t1", 1.0) == 1.0
    assert rows["int8"]["memory_mib"] < rows["float32"]["memory_mib"]
