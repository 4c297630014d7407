"""Where a benchmark session runs: this machine, or a target device over SSH.

Both run the same standalone file, :mod:`litequant.measure.device_runner` (standard library,
numpy and a LiteRT runtime only): here with this process's Python in a child process, there with
``benchmark.ssh.python``. For a device, one ``ssh`` connection carries everything: its standard
input is a tar stream of the runner, the manifest, the models and their input tensors, which a
few lines of the device's Python unpack into a new temporary directory, run, and remove again
(whatever the outcome); the result comes back as one line of JSON on its standard output.

``ssh`` runs non-interactively and never trusts a host it does not know: ``BatchMode=yes`` (no
password or passphrase prompt can hang a run), ``StrictHostKeyChecking=yes`` (an unknown or
changed host key stops the run; nothing is added to a ``known_hosts`` file), password and
keyboard-interactive authentication off, ``ConnectTimeout``. The key is passed as a path
(``-i``) and is never read, printed or written by this module; what ``ssh`` prints on failure
is reduced to one line naming the fix (:func:`ssh_failure`).
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import stat
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from litequant.core.errors import PipelineError, relative_path_hint
from litequant.core.params import BenchmarkParams, SshParams
from litequant.measure.device_runner import ERROR_PREFIX, RESULT_PREFIX

#: The runner file copied to the device.
RUNNER = Path(__file__).with_name("device_runner.py")

#: What the device's Python runs (``python -c``, as :func:`bootstrap_line`): unpack the tar
#: stream of standard input into a new temporary directory, run the runner there, remove the
#: directory.
BOOTSTRAP = """\
import os, shutil, subprocess, sys, tarfile, tempfile
folder = tempfile.mkdtemp(prefix="litequant-benchmark-")
code = 1
try:
    options = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as archive:
        archive.extractall(folder, **options)
    code = subprocess.call([sys.executable, os.path.join(folder, "device_runner.py"),
                            os.path.join(folder, "manifest.json")], stdin=subprocess.DEVNULL)
finally:
    shutil.rmtree(folder, ignore_errors=True)
sys.exit(code)
"""


def bootstrap_line() -> str:
    """:data:`BOOTSTRAP` as one line of plain characters (base64), so that any login shell of the
    device (sh, bash, csh, fish) passes it to Python unchanged."""
    encoded = base64.b64encode(BOOTSTRAP.encode()).decode()
    return f"import base64; exec(base64.b64decode('{encoded}'))"


def run_session(models: dict[str, tuple[Path, Path | None]], settings: BenchmarkParams,
                rounds: int) -> dict[str, Any]:
    """Run the runner's session (:func:`litequant.measure.device_runner.run`) on
    ``settings.device`` for ``models`` (name → ``(.tflite, input .npy or None)``).

    Returns the runner's record with ``session.device.kind`` set (``local`` or ``ssh``).
    """
    manifest = {"threads": list(settings.threads), "warmup_runs": settings.warmup_runs,
                "min_runs": settings.min_runs, "min_seconds": settings.min_seconds,
                "rounds": rounds, "runtime_repeats": settings.runtime_repeats}
    with tempfile.TemporaryDirectory(prefix="litequant-benchmark-") as folder:
        if settings.device == "local":
            manifest["models"] = {
                name: {"model": str(Path(model).resolve()),
                       "input": str(Path(data).resolve()) if data else None}
                for name, (model, data) in models.items()}
            path = Path(folder) / "manifest.json"
            path.write_text(json.dumps(manifest))
            child = subprocess.run([sys.executable, str(RUNNER), str(path)],
                                   stdin=subprocess.DEVNULL, capture_output=True, text=True)
            document = _parse(child, "this machine", lambda: None)
        else:
            document = _run_over_ssh(models, manifest, settings.ssh, Path(folder))
    device = document["session"]["device"]
    document["session"]["device"] = {"kind": settings.device, **device}
    return document


def _run_over_ssh(models: dict[str, tuple[Path, Path | None]], manifest: dict[str, Any],
                  ssh: SshParams, folder: Path) -> dict[str, Any]:
    check_ssh_files(ssh)
    manifest["models"] = {name: {"model": f"models/{name}.tflite",
                                 "input": f"inputs/{name}.npy" if data else None}
                          for name, (_, data) in models.items()}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    bundle = folder / "bundle.tar"
    with tarfile.open(bundle, "w", dereference=True) as archive:  # DVC may link its outputs
        archive.add(RUNNER, "device_runner.py")
        archive.add(folder / "manifest.json", "manifest.json")
        for name, (model, data) in models.items():
            archive.add(model, f"models/{name}.tflite")
            if data:
                archive.add(data, f"inputs/{name}.npy")
    remote = f"{shlex.quote(ssh.python)} -c {shlex.quote(bootstrap_line())}"
    try:
        with bundle.open("rb") as stdin:
            child = subprocess.run([*ssh_command(ssh), remote], stdin=stdin,
                                   capture_output=True, text=True)
    except FileNotFoundError:
        raise PipelineError("benchmark.device is 'ssh' but no ssh client is installed here: "
                            "install OpenSSH's client (apt-get install openssh-client)") from None
    return _parse(child, ssh.target or "", lambda: ssh_failure(child, ssh))


def ssh_command(ssh: SshParams) -> list[str]:
    """``ssh`` with the options of a non-interactive, host-key-checked connection to
    ``ssh.target`` (the remote command is appended by the caller)."""
    command = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
               "-o", "PasswordAuthentication=no", "-o", "KbdInteractiveAuthentication=no",
               "-o", "UpdateHostKeys=no", "-o", f"ConnectTimeout={ssh.connect_timeout}",
               "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4",
               "-o", "LogLevel=ERROR", "-p", str(ssh.port)]
    if ssh.key is not None:
        command += ["-i", _ssh_path(ssh.key), "-o", "IdentitiesOnly=yes"]
    if ssh.known_hosts is not None:
        command += ["-o", f'UserKnownHostsFile="{_ssh_path(ssh.known_hosts)}"',
                    "-o", "GlobalKnownHostsFile=/dev/null"]
    return [*command, "--", str(ssh.target)]


def _ssh_path(path: str) -> str:
    """A params path as ssh reads it: ``~`` expanded here, ``%`` escaped (ssh expands ``%``
    tokens in key and known_hosts paths)."""
    return os.path.expanduser(path).replace("%", "%%")


def check_ssh_files(ssh: SshParams) -> None:
    """The key and known_hosts files exist, and the key is private to its owner (``ssh`` ignores
    a key others can read); a :class:`PipelineError` naming the fix otherwise."""
    if ssh.key is not None:
        key = Path(ssh.key).expanduser()
        if not key.is_file():
            raise PipelineError(f"benchmark.ssh.key: {key} is not a file: give the path of the "
                                f"private key the device accepts{relative_path_hint(key)}")
        if key.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise PipelineError(f"benchmark.ssh.key: {key} is readable by other users, so ssh "
                                f"will not use it: chmod 600 {key}")
    known_hosts = None if ssh.known_hosts is None else Path(ssh.known_hosts).expanduser()
    if known_hosts is not None and not known_hosts.is_file():
        raise PipelineError(f"benchmark.ssh.known_hosts: {known_hosts} is not a file: give a "
                            "known_hosts file holding the device's host key (or null for "
                            f"~/.ssh/known_hosts){relative_path_hint(known_hosts)}")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def ssh_failure(child: subprocess.CompletedProcess, ssh: SshParams) -> str | None:
    """One line naming the fix when ``ssh`` itself (or the device's shell) failed, else None."""
    text = child.stderr or ""
    where = f"{ssh.target} port {ssh.port}"
    known_hosts = ssh.known_hosts or "~/.ssh/known_hosts"
    host = str(ssh.target).rsplit("@", 1)[-1]
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text:
        return (f"the host key of {where} differs from the one in {known_hosts} (benchmark.ssh."
                "known_hosts): if the device was reinstalled, check its new key's fingerprint and "
                f"replace its line (ssh-keygen -R '[{host}]:{ssh.port}' -f {known_hosts})")
    if "Host key verification failed" in text or "host key is known" in text:
        return (f"the host key of {where} is not in {known_hosts} (benchmark.ssh.known_hosts): "
                f"add it after checking its fingerprint on the device (ssh-keyscan -p {ssh.port} "
                f"{host} >> {known_hosts}); host keys are never accepted blindly")
    if "Permission denied" in text or "Too many authentication failures" in text:
        key = ssh.key or "ssh's default keys"
        return (f"{where} refused the key {key} (benchmark.ssh.key): add its public key to the "
                f"device user's ~/.ssh/authorized_keys, or set benchmark.ssh.key to a key it "
                "accepts")
    unreachable = ("Connection refused", "timed out", "No route to host", "Could not resolve",
                   "Network is unreachable", "Connection reset", "Connection closed",
                   "kex_exchange_identification", "Name or service not known")
    if any(reason in text for reason in unreachable):
        return (f"cannot reach {where} ({_last_line(text)}): check benchmark.ssh.target and "
                "benchmark.ssh.port and that the device is on and runs an SSH server")
    if child.returncode == 127 or "not found" in _last_line(text):
        return (f"{ssh.python} not found on {ssh.target}: install Python 3 with numpy and "
                "ai-edge-litert (or tflite-runtime) there, or set benchmark.ssh.python to its "
                "path")
    if child.returncode == 255:
        return f"ssh to {where} failed ({_last_line(text) or 'no message'})"
    return None


def _parse(child: subprocess.CompletedProcess, where: str, transport_failure: Any
           ) -> dict[str, Any]:
    """The runner's JSON result, or a one-line :class:`PipelineError`: the runner's own message,
    the transport's (:func:`ssh_failure`), or the last line of what it printed."""
    device = where if where == "this machine" else f"device {where}"
    if child.returncode == 0:
        for line in reversed(child.stdout.splitlines()):
            if line.startswith(RESULT_PREFIX):
                return json.loads(line[len(RESULT_PREFIX):])
    for line in (child.stderr or "").splitlines():
        if line.startswith(ERROR_PREFIX):
            raise PipelineError(f"benchmark on {device}: {line[len(ERROR_PREFIX):].strip()}")
    failure = transport_failure()
    if failure:
        raise PipelineError(f"benchmark on {device}: {failure}")
    raise PipelineError(f"benchmark on {device}: the runner failed with exit code "
                        f"{child.returncode} ({_last_line(child.stderr or '') or 'no message'})")

