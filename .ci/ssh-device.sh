# Sourced by .ci/run (bash, as root): a target device for the benchmark's SSH test
# (tests/test_ssh_device.py), on this machine. Starts an OpenSSH server on 127.0.0.1 (a free port
# from 2222, a host key generated for this run) that lets in one second user, litequant-ci, with a
# temporary key only (no password, no other user); writes a known_hosts file with the generated
# host key; gives that user a Python with numpy and ai-edge-litert it can run (the CI Python may
# live under /root, which other users cannot enter); exports what the test reads:
#   LITEQUANT_SSH_TEST_TARGET (litequant-ci@127.0.0.1), LITEQUANT_SSH_TEST_PORT,
#   LITEQUANT_SSH_TEST_KEY (the private key's path), LITEQUANT_SSH_TEST_KNOWN_HOSTS,
#   LITEQUANT_SSH_TEST_PYTHON (the device's Python), LITEQUANT_SSH_TEST_BARE_PYTHON (one without
#   numpy: the "missing runtime" case).
# Not root, or no way to get sshd: nothing is exported and the test says it is skipped.

ssh_device() {
    local user=litequant-ci dir=/opt/litequant-ci sshd=/usr/sbin/sshd python port site syspy
    if [ "$(id -u)" != 0 ]; then
        echo "ssh device test: not root, not set up (tests/test_ssh_device.py will be skipped)"
        return 0
    fi
    if [ ! -x "$sshd" ]; then
        { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server \
            || { apt-get update -qq \
                 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server; }; } \
            >/dev/null 2>&1 \
            || { echo "ssh device test: openssh-server could not be installed"; return 0; }
    fi
    if [ -f "$dir/sshd.pid" ]; then kill "$(cat "$dir/sshd.pid")" 2>/dev/null || true; fi
    rm -rf "$dir" && install -d -m 755 "$dir" && mkdir -p /run/sshd
    id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$user"
    usermod -p '*' "$user"  # no password at all; useradd's '!' (locked) makes sshd refuse keys too
    ssh-keygen -q -t ed25519 -N '' -C litequant-ci-host -f "$dir/host_key"
    ssh-keygen -q -t ed25519 -N '' -C litequant-ci-client -f "$dir/client_key"
    local home; home=$(getent passwd "$user" | cut -d: -f6)
    install -d -m 700 -o "$user" -g "$user" "$home/.ssh"
    install -m 600 -o "$user" -g "$user" "$dir/client_key.pub" "$home/.ssh/authorized_keys"

    # the device's Python: the CI interpreter when the user can run it, else a venv of the
    # system Python with this Python's numpy and ai_edge_litert copied in (same minor version),
    # else one with both installed by pip
    python=$(python -c 'import sys; print(sys.executable)')
    if ! su -s /bin/sh -c "'$python' -c 'import numpy, ai_edge_litert.interpreter'" "$user" \
            >/dev/null 2>&1; then
        syspy=/usr/bin/python3
        "$syspy" -m venv --without-pip "$dir/venv"
        site=$("$dir/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
        if [ "$("$syspy" -c 'import sys; print(sys.version_info[:2])')" = \
             "$(python -c 'import sys; print(sys.version_info[:2])')" ]; then
            local source; source=$(python -c 'import numpy, os; print(os.path.dirname(os.path.dirname(numpy.__file__)))')
            cp -al "$source/numpy" "$source/ai_edge_litert" "$site/" 2>/dev/null \
                || cp -a "$source/numpy" "$source/ai_edge_litert" "$site/"  # hard links if we can
            # their metadata (the version the device record shows), where pip left it
            cp -a "$source"/numpy-*.dist-info "$source"/ai_edge_litert-*.dist-info "$site/" \
                2>/dev/null || true
            if [ -d "$source/numpy.libs" ]; then cp -a "$source/numpy.libs" "$site/"; fi
        else
            rm -rf "$dir/venv" && "$syspy" -m venv "$dir/venv"
            "$dir/venv/bin/python" -m pip install --quiet numpy ai-edge-litert
        fi
        python="$dir/venv/bin/python"
    fi
    /usr/bin/python3 -m venv --without-pip "$dir/bare"

    port=$(python - <<'EOF'
import socket
for port in range(2222, 2300):
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        print(port)
        break
EOF
)
    cat > "$dir/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $dir/host_key
PidFile $dir/sshd.pid
AllowUsers $user
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UsePAM no
StrictModes yes
EOF
    "$sshd" -f "$dir/sshd_config" -E "$dir/sshd.log"
    echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$dir/host_key.pub")" > "$dir/known_hosts"
    export LITEQUANT_SSH_TEST_TARGET="$user@127.0.0.1" LITEQUANT_SSH_TEST_PORT="$port" \
        LITEQUANT_SSH_TEST_KEY="$dir/client_key" LITEQUANT_SSH_TEST_KNOWN_HOSTS="$dir/known_hosts" \
        LITEQUANT_SSH_TEST_PYTHON="$python" LITEQUANT_SSH_TEST_BARE_PYTHON="$dir/bare/bin/python"
    echo "ssh device test: sshd on 127.0.0.1:$port for $user, device Python $python"
}

ssh_device
