"""SSHTransport against the real sshd of scripts/slurm-cluster.sh (127.0.0.1, a key, a user).

The faults are real too: the sshd process serving our connection is killed (the connection
drops), a port where nothing listens, a peer that accepts TCP and never speaks, a wrong key,
an unknown host key.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from fractal_jupyter.runner.ssh import (
    SSHConnectionLost,
    SSHRefused,
    SSHSettings,
    SSHTimeout,
    SSHTransport,
)
from fractal_jupyter.runner.transport import TransportError
from tests.support.cluster import ClusterInfo
from tests.support.sshd import client_ports, kill_connection


@pytest.fixture
def settings(slurm_cluster: ClusterInfo) -> SSHSettings:
    return SSHSettings(
        host=slurm_cluster.ssh_host,
        port=slurm_cluster.ssh_port,
        user=slurm_cluster.user,
        key_path=slurm_cluster.ssh_key,
        known_hosts=slurm_cluster.known_hosts,
        timeout=30.0,
        retries=2,
        retry_wait=0.1,
    )


@pytest.fixture
def transport(settings: SSHSettings) -> Iterator[SSHTransport]:
    with SSHTransport(settings) as opened:
        yield opened


@pytest.fixture
def remote_dir(transport: SSHTransport) -> Iterator[str]:
    home = transport.run(["pwd"]).stdout.strip()
    folder = f"{home}/ssh-transport-test-{os.getpid()}-{time.monotonic_ns()}"
    yield folder
    transport.remove(folder)


def our_connection(transport: SSHTransport) -> int:
    """The local port of the transport's connection."""
    assert transport._client is not None
    sock = transport._client.get_transport().sock  # type: ignore[union-attr]
    port: int = sock.getsockname()[1]  # type: ignore[union-attr]
    assert port in client_ports(os.getpid(), transport.settings.port)
    return port


def test_commands_run_as_the_user_with_exact_arguments(
    transport: SSHTransport, slurm_cluster: ClusterInfo
) -> None:
    result = transport.run(["printf", "%s|", "two words", "$HOME", "it's", ""])
    assert (result.returncode, result.stdout, result.stderr) == (0, "two words|$HOME|it's||", "")
    assert transport.run(["whoami"]).stdout.strip() == slurm_cluster.user
    failed = transport.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (failed.returncode, failed.stdout, failed.stderr) == (3, "out\n", "err\n")
    missing = transport.run(["no-such-command-here"])
    assert missing.returncode == 127 and "not found" in missing.stderr
    # SLURM's client is there for the user, over the same connection.
    assert transport.run(["squeue", "-h", "-u", slurm_cluster.user]).returncode == 0
    assert transport.connections == 1


def test_folders_go_up_and_come_back(
    transport: SSHTransport, remote_dir: str, tmp_path: Path
) -> None:
    source = tmp_path / "batch"
    (source / "calls" / "deep").mkdir(parents=True)
    (source / "input.pickle").write_bytes(bytes(range(256)) * 4000)
    (source / "calls" / "0_par_0000001.args.json").write_text('{"zarr_url": "/a"}')
    (source / "calls" / "deep" / "empty").write_bytes(b"")
    transport.makedirs(f"{remote_dir}/a/b")
    assert transport.exists(f"{remote_dir}/a/b")
    assert not transport.exists(f"{remote_dir}/nothing")
    transport.put(source, f"{remote_dir}/a/b/batch")
    listing = transport.run(["find", f"{remote_dir}/a/b/batch", "-type", "f"]).stdout.split()
    assert sorted(path.split("/batch/")[1] for path in listing) == [
        "calls/0_par_0000001.args.json",
        "calls/deep/empty",
        "input.pickle",
    ]
    # A single file, and results written remotely, downloaded as a folder.
    transport.put(source / "input.pickle", f"{remote_dir}/single.pickle")
    size = transport.run(["stat", "-c", "%s", f"{remote_dir}/single.pickle"]).stdout.strip()
    assert size == str(256 * 4000)
    transport.run(["sh", "-c", f"echo done > {remote_dir}/a/b/batch/calls/result.json"])
    back = tmp_path / "back"
    transport.get(f"{remote_dir}/a/b/batch", back)
    assert (back / "input.pickle").read_bytes() == (source / "input.pickle").read_bytes()
    assert (back / "calls" / "result.json").read_text() == "done\n"
    assert (back / "calls" / "deep" / "empty").read_bytes() == b""
    transport.get(f"{remote_dir}/single.pickle", tmp_path / "single")
    assert (tmp_path / "single").stat().st_size == 256 * 4000
    with pytest.raises(FileNotFoundError, match="nothing"):
        transport.get(f"{remote_dir}/nothing", tmp_path / "nothing")
    with pytest.raises(FileNotFoundError):
        transport.put(tmp_path / "absent", f"{remote_dir}/absent")
    assert transport.connections == 1


def test_threads_share_one_connection(transport: SSHTransport, remote_dir: str) -> None:
    transport.makedirs(remote_dir)
    results: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            outputs = []
            for round_ in range(4):
                outputs.append(transport.run(["echo", f"{index}-{round_}"]).stdout.strip())
                transport.write_text(f"{remote_dir}/t{index}", f"{index}-{round_}")
                outputs.append(transport.read_text(f"{remote_dir}/t{index}"))
            results[index] = outputs
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(index,)) for index in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    for index in range(6):
        assert results[index] == [f"{index}-{r}" for r in range(4) for _ in range(2)]
    assert transport.connections == 1


def test_a_dropped_connection_is_opened_again(transport: SSHTransport) -> None:
    assert transport.run(["echo", "before"]).stdout == "before\n"
    killed = kill_connection(our_connection(transport), transport.settings.port)
    assert killed, "no sshd process served our connection"
    assert transport.run(["echo", "after"]).stdout == "after\n"
    assert transport.connections == 2
    assert transport.exists("/")
    assert transport.connections == 2


def test_a_drop_during_a_command_repeats_it_only_when_that_is_safe(
    transport: SSHTransport, remote_dir: str
) -> None:
    killed: list[list[int]] = []

    def drop_soon() -> None:
        time.sleep(0.8)
        killed.append(kill_connection(port, transport.settings.port))

    transport.connect()
    port = our_connection(transport)
    threading.Thread(target=drop_soon).start()
    started = time.monotonic()
    # Repeatable: run again on a new connection, and its answer comes back.
    result = transport.run(["sh", "-c", "sleep 2; echo slept"])
    assert result.stdout == "slept\n"
    assert transport.connections == 2 and killed[-1]
    assert time.monotonic() - started < 15

    port = our_connection(transport)
    threading.Thread(target=drop_soon).start()
    with pytest.raises(SSHConnectionLost, match="may or may not have taken effect"):
        transport.run(["sh", "-c", "sleep 2; echo once"], repeatable=False)
    assert len(killed) == 2 and killed[-1]

    # sbatch is never sent twice by default: a stand-in that takes its time.
    sbatch = f"{remote_dir}/sbatch"
    transport.makedirs(remote_dir)
    transport.write_text(sbatch, "#!/bin/sh\nsleep 2\necho submitted >> $(dirname $0)/log\n")
    transport.run(["chmod", "+x", sbatch])
    port = our_connection(transport)
    threading.Thread(target=drop_soon).start()
    with pytest.raises(SSHConnectionLost, match=r"while .*sbatch ran"):
        transport.run([sbatch])
    assert len(killed) == 3 and killed[-1]
    time.sleep(2)
    # It ran once (its sshd was killed, so it may not have got to the end), never twice.
    log = transport.run(["cat", f"{remote_dir}/log"]).stdout
    assert log in ("", "submitted\n")
    # The next operation works again.
    assert transport.run(["echo", "ok"]).stdout == "ok\n"


def test_a_command_that_does_not_end_times_out(transport: SSHTransport) -> None:
    started = time.monotonic()
    with pytest.raises(SSHTimeout, match="did not end within 1 s"):
        transport.run(["sleep", "30"], timeout=1)
    assert time.monotonic() - started < 5
    assert transport.run(["echo", "next"]).stdout == "next\n"


def test_no_server_gives_a_clear_error_after_bounded_retries(settings: SSHSettings) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    transport = SSHTransport(replace(settings, port=free, retries=2, retry_wait=0.05))
    started = time.monotonic()
    with pytest.raises(TransportError, match=rf"127.0.0.1:{free}: running echo.*3 attempts"):
        transport.run(["echo", "x"])
    assert time.monotonic() - started < 5


def test_a_silent_peer_gives_a_timeout_not_a_hang(settings: SSHSettings) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    try:
        transport = SSHTransport(
            replace(settings, port=port, connect_timeout=0.5, retries=1, retry_wait=0.05)
        )
        started = time.monotonic()
        with pytest.raises(TransportError, match="2 attempts"):
            transport.exists("/")
        assert time.monotonic() - started < 6
    finally:
        listener.close()


def test_refusals_that_another_try_cannot_fix_fail_at_once(
    settings: SSHSettings, tmp_path: Path
) -> None:
    other_key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other_key], check=True)
    started = time.monotonic()
    with pytest.raises(SSHRefused, match=r"authentication with the key .*other_key failed"):
        SSHTransport(replace(settings, key_path=str(other_key))).run(["true"])
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(SSHRefused, match=r"host key is unknown.*ssh-keyscan"):
        SSHTransport(replace(settings, known_hosts=str(empty))).run(["true"])
    with pytest.raises(SSHRefused, match=r"cannot read the private key .*missing: No such"):
        SSHTransport(replace(settings, key_path=str(tmp_path / "missing"))).run(["true"])
    assert time.monotonic() - started < 5
    with pytest.raises(SSHRefused) as refused:
        SSHTransport(replace(settings, key_path=str(other_key))).exists("/")
    assert refused.value.permanent  # a caller that retries gives up at once
    closed = SSHTransport(settings)
    closed.close()
    with pytest.raises(TransportError, match="closed"):
        closed.run(["true"])


def test_close_from_another_thread_ends_a_running_command(transport: SSHTransport) -> None:
    transport.connect()
    closer = threading.Timer(0.5, transport.close)
    closer.start()
    started = time.monotonic()
    with pytest.raises(TransportError, match="closed"):
        transport.run(["sleep", "30"])
    assert time.monotonic() - started < 10
    closer.join()


def test_settings_travel_as_json(settings: SSHSettings) -> None:
    assert SSHSettings.from_json({**settings.to_json(), "unknown": 1}) == settings
