"""Find and kill the sshd processes that serve one client's SSH connection (root only).

An SSH connection that drops in the middle of a job is simulated the way it happens: the
server side of that one connection dies (as when a login node reboots or a firewall resets
the connection), while the sshd listener stays up so that a new connection can be opened.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


def _tcp_connections() -> list[tuple[int, int, int, int]]:
    """(local port, remote port, state, socket inode) of the IPv4 TCP sockets on 127.0.0.1."""
    connections = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
        connections.append(
            (
                int(local.split(":")[1], 16),
                int(remote.split(":")[1], 16),
                int(state, 16),
                int(inode),
            )
        )
    return connections


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


def _holders(inode: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and inode in _socket_inodes(int(entry.name)):
            pids.append(int(entry.name))
    return pids


ESTABLISHED = 1


def client_ports(client_pid: int, server_port: int) -> list[int]:
    """The local ports of `client_pid`'s established connections to `server_port`."""
    inodes = _socket_inodes(client_pid)
    return [
        local
        for local, remote, state, inode in _tcp_connections()
        if inode in inodes and remote == server_port and state == ESTABLISHED
    ]


def sshd_serving(client_port: int, server_port: int) -> list[int]:
    """The sshd processes holding the server side of the connection from `client_port`."""
    pids: list[int] = []
    for local, remote, state, inode in _tcp_connections():
        if local == server_port and remote == client_port and state == ESTABLISHED:
            pids.extend(_holders(inode))
    return pids


def kill_connection(client_port: int, server_port: int) -> list[int]:
    """SIGKILL the sshd processes serving one connection; the pids killed."""
    pids = sshd_serving(client_port, server_port)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids
