"""The `slurm_ssh` transport: commands on a login node and files over SFTP, with paramiko.

One `SSHTransport` holds one SSH connection, shared by every thread of the job process: a lock
serialises the operations (2.6.4's FractalSSH does the same), so a poll of `squeue` waits for
an upload in progress instead of opening a second connection.

Faults are bounded in time and in number:
- every operation has a timeout (connecting, each command, each SFTP request), so a dead or
  silent peer gives an error, never a hang;
- a connection that drops (sshd restarted, network cut, the per-connection sshd killed) is
  reopened on the next operation; an operation that failed because of the drop is tried again
  on a new connection, at most `retries` times with a growing pause, unless it is a command
  that may already have taken effect (see `run`);
- a fault that another attempt cannot fix (authentication refused, unknown host key, no key
  file) fails at once;
- every failure is a `TransportError` whose message names the connection, what was being
  done and why it failed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import select
import shlex
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import paramiko

from .transport import CommandResult, TransportError

T = TypeVar("T")
LOG = logging.getLogger(__name__)

# Commands that must not be sent twice: if the connection drops while one of them runs, it may
# have taken effect on the cluster (a SLURM job submitted), so the error is reported instead.
NOT_REPEATABLE = frozenset({"sbatch"})
# Errors of the connection itself (as opposed to a failed command or a missing file).
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    paramiko.SSHException,
    EOFError,
    ConnectionError,
    socket.timeout,
    socket.error,
)
COPY_CHUNK = 1 << 20
SYSTEM_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"
# close() waits this long for an operation of another thread, then closes under its feet.
CLOSE_WAIT = 5.0


class SSHConnectionLost(TransportError):
    """The connection dropped while a command that must not be repeated was running."""


class SSHTimeout(TransportError):
    """An operation did not end within its timeout."""


class SSHRefused(TransportError):
    """A fault that trying again cannot fix: no key, key refused, unknown or changed host key.

    `permanent` tells a caller that retries on TransportError to give up at once.
    """

    permanent = True


@dataclass(frozen=True)
class SSHSettings:
    """Where and how to connect; everything the job process needs (JSON-serialisable)."""

    host: str
    user: str
    key_path: str
    port: int = 22
    # A known_hosts file that pins the host key; empty: the user's ~/.ssh/known_hosts and the
    # system's. An unknown host key is always refused (never added silently).
    known_hosts: str = ""
    connect_timeout: float = 10.0
    # The default timeout of one command or one file transfer.
    timeout: float = 120.0
    # How many times an operation is tried again on a new connection after a drop: enough for
    # a connection that broke (the next one works); a longer outage is the caller's to wait
    # out (the SLURM executor retries until `slurm_unreachable_timeout`).
    retries: int = 2
    # The pause before the first new attempt; doubled at each further attempt.
    retry_wait: float = 0.5
    # Seconds between SSH keepalive messages: a connection that died silently is noticed.
    keepalive: int = 15

    @property
    def label(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SSHSettings:
        known = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in data.items() if key in known})


class SSHTransport:
    """The `Transport` of `runner/transport.py` over one shared, self-healing SSH connection."""

    def __init__(
        self,
        settings: SSHSettings,
        *,
        log: logging.Logger | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        # Where faults and reconnections are told (the job's log, for a job).
        self.log = log or LOG
        self._sleep = sleep
        self._lock = threading.RLock()
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._closed = False
        # How many connections were opened (the first one included): tests and logs read it.
        self.connections = 0

    # --- connection -------------------------------------------------------------------------

    def _where(self) -> str:
        return f"ssh {self.settings.label}"

    def _connect(self) -> paramiko.SSHClient:
        settings = self.settings
        key_path = os.path.expanduser(settings.key_path)
        try:
            with open(key_path, "rb"):
                pass
        except OSError as error:
            raise SSHRefused(
                f"{self._where()}: cannot read the private key {key_path}: {error.strerror}"
            ) from error
        client = paramiko.SSHClient()
        try:
            if settings.known_hosts:
                client.load_host_keys(os.path.expanduser(settings.known_hosts))
            else:
                client.load_system_host_keys()
                if os.path.isfile(SYSTEM_KNOWN_HOSTS):
                    client.load_host_keys(SYSTEM_KNOWN_HOSTS)
        except OSError as error:
            raise SSHRefused(
                f"{self._where()}: cannot read the known_hosts file: {error}"
            ) from error
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                settings.host,
                port=settings.port,
                username=settings.user,
                key_filename=key_path,
                allow_agent=False,
                look_for_keys=False,
                timeout=settings.connect_timeout,
                banner_timeout=settings.connect_timeout,
                auth_timeout=settings.connect_timeout,
                channel_timeout=settings.connect_timeout,
            )
        except paramiko.BadHostKeyException as error:
            client.close()
            raise SSHRefused(
                f"{self._where()}: the host key does not match the known one ({error})"
            ) from error
        except paramiko.AuthenticationException as error:
            client.close()
            raise SSHRefused(
                f"{self._where()}: authentication with the key {key_path} failed: {error}"
            ) from error
        except paramiko.SSHException as error:
            client.close()
            if "not found in known_hosts" in str(error):
                raise SSHRefused(
                    f"{self._where()}: the host key is unknown ({error}); add it to "
                    f"{settings.known_hosts or '~/.ssh/known_hosts'} (ssh-keyscan -p "
                    f"{settings.port} {settings.host})"
                ) from error
            raise
        except BaseException:
            client.close()
            raise
        transport = client.get_transport()
        if transport is not None and settings.keepalive > 0:
            transport.set_keepalive(settings.keepalive)
        self.connections += 1
        if self.connections > 1:
            self.log.warning("%s: connected again (connection %d)", self._where(), self.connections)
        return client

    def _ensure(self) -> paramiko.SSHClient:
        if self._closed:
            raise TransportError(f"{self._where()}: the transport is closed")
        client = self._client
        transport = client.get_transport() if client is not None else None
        if client is None or transport is None or not transport.is_active():
            self._drop()
            client = self._client = self._connect()
        return client

    def _sftp_client(self) -> paramiko.SFTPClient:
        client = self._ensure()
        if self._sftp is None or self._sftp.sock.closed:
            self._sftp = client.open_sftp()
        self._sftp.get_channel().settimeout(self.settings.timeout)  # type: ignore[union-attr]
        return self._sftp

    def _drop(self) -> None:
        """Forget the connection (after a fault): the next operation opens a new one."""
        sftp, client = self._sftp, self._client
        self._sftp = self._client = None
        if sftp is not None:
            with contextlib.suppress(Exception):
                sftp.close()
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    @contextlib.contextmanager
    def _locked(self, what: str) -> Iterator[None]:
        # Another thread holds the connection for at most one operation with its retries.
        limit = (self.settings.timeout + self.settings.connect_timeout) * (
            self.settings.retries + 1
        )
        if not self._lock.acquire(timeout=limit):
            raise SSHTimeout(f"{self._where()}: {what}: the connection stayed busy for {limit} s")
        try:
            yield
        finally:
            self._lock.release()

    def _attempts(self, what: str, operation: Callable[[], T]) -> T:
        """Run `operation` under the lock; after a connection fault, reconnect and try again."""
        settings = self.settings
        with self._locked(what):
            last: BaseException | None = None
            for attempt in range(settings.retries + 1):
                if attempt:
                    self._sleep(settings.retry_wait * 2 ** (attempt - 1))
                try:
                    return operation()
                except (TransportError, FileNotFoundError, PermissionError):
                    raise
                except CONNECTION_ERRORS as error:
                    if self._file_error(error):
                        raise
                    self._drop()
                    last = error
                    if attempt < settings.retries:
                        self.log.warning(
                            "%s: %s: %s: %s; trying again on a new connection (%d of %d)",
                            self._where(),
                            what,
                            type(error).__name__,
                            error,
                            attempt + 1,
                            settings.retries,
                        )
            tries = attempt + 1
            raise TransportError(
                f"{self._where()}: {what} failed after {tries} attempt"
                f"{'s' if tries > 1 else ''}: {type(last).__name__}: {last}"
            ) from last

    def _file_error(self, error: BaseException) -> bool:
        """An OSError of SFTP on a live connection (a refused write...): not a connection fault."""
        if not isinstance(error, OSError) or isinstance(error, ConnectionError | TimeoutError):
            return False
        transport = self._client.get_transport() if self._client is not None else None
        return transport is not None and transport.is_active()

    def connect(self) -> None:
        """Open the connection now (otherwise the first operation does)."""
        self._attempts("connecting", self._ensure)

    def close(self) -> None:
        """Close the connection; an operation still running in another thread fails at once."""
        acquired = self._lock.acquire(timeout=CLOSE_WAIT)
        try:
            self._closed = True
            self._drop()
        finally:
            if acquired:
                self._lock.release()

    def __enter__(self) -> SSHTransport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- commands ---------------------------------------------------------------------------

    def run(
        self,
        argv: list[str],
        *,
        timeout: float | None = None,
        repeatable: bool | None = None,
    ) -> CommandResult:
        """Run a command on the remote host (through the login shell, argv quoted).

        A connection fault before the command was sent is always retried. One after it was
        sent is retried only when the command can be repeated safely: not `sbatch` (which may
        have submitted its job), unless `repeatable=True` says otherwise.
        """
        if not argv:
            raise ValueError("empty command")
        if repeatable is None:
            repeatable = posixpath.basename(argv[0]) not in NOT_REPEATABLE
        limit = self.settings.timeout if timeout is None else timeout
        command = shlex.join(argv)
        what = f"running {shlex.join(argv)[:200]}"
        sent: list[bool] = []

        def attempt() -> CommandResult:
            sent.clear()
            try:
                return self._exec(command, limit, sent)
            except CONNECTION_ERRORS as error:
                if sent and not repeatable:
                    self._drop()
                    raise SSHConnectionLost(
                        f"{self._where()}: the connection was lost while {argv[0]} ran "
                        f"({type(error).__name__}: {error}); it may or may not have taken "
                        "effect, so it is not sent again"
                    ) from error
                raise

        return self._attempts(what, attempt)

    def _exec(self, command: str, limit: float, sent: list[bool]) -> CommandResult:
        transport = self._ensure().get_transport()
        if transport is None:
            raise paramiko.SSHException("no transport")
        channel = transport.open_session(timeout=self.settings.connect_timeout)
        try:
            channel.exec_command(command)
            sent.append(True)
            channel.shutdown_write()
            return self._collect(channel, command, limit)
        finally:
            channel.close()

    def _collect(self, channel: paramiko.Channel, command: str, limit: float) -> CommandResult:
        deadline = time.monotonic() + limit
        stdout, stderr = bytearray(), bytearray()
        transport = channel.get_transport()
        while True:
            while channel.recv_ready():
                stdout += channel.recv(COPY_CHUNK)
            while channel.recv_stderr_ready():
                stderr += channel.recv_stderr(COPY_CHUNK)
            if not transport.is_active() and channel.exit_status == -1:
                raise paramiko.SSHException("the connection closed before the command ended")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                # The peer may be gone without a word: start afresh next time.
                self._drop()
                raise SSHTimeout(f"{self._where()}: {command[:200]} did not end within {limit:g} s")
            pending = channel.recv_ready() or channel.recv_stderr_ready()
            if (channel.eof_received or channel.closed) and not pending:
                # All the output is in; the exit status comes with the end of the streams or
                # just after it (a command killed by a signal has none: -1 at the close).
                if channel.status_event.wait(min(remaining, 0.5)):
                    break
            else:
                select.select([channel], [], [], min(remaining, 0.5))
        return CommandResult(
            channel.recv_exit_status(),
            stdout.decode(errors="replace"),
            stderr.decode(errors="replace"),
        )

    # --- files ------------------------------------------------------------------------------

    def put(self, local: Path, remote: str) -> None:
        """Upload a file, or a folder with everything in it (remote folders are created)."""
        local = Path(local)
        if not local.exists():
            raise FileNotFoundError(str(local))
        self._attempts(f"uploading {local} to {remote}", lambda: self._put(local, remote))

    def _put(self, local: Path, remote: str) -> None:
        sftp = self._sftp_client()
        if not local.is_dir():
            sftp.put(str(local), remote)
            return
        self._mkdirs(sftp, remote)
        for folder, subfolders, files in os.walk(local):
            relative = Path(folder).relative_to(local).as_posix()
            target = remote if relative == "." else posixpath.join(remote, relative)
            for name in sorted(subfolders):
                self._mkdir(sftp, posixpath.join(target, name))
            for name in sorted(files):
                sftp.put(os.path.join(folder, name), posixpath.join(target, name))

    def get(self, remote: str, local: Path) -> None:
        """Download a file, or a folder with everything in it; FileNotFoundError if absent."""
        local = Path(local)
        self._attempts(f"downloading {remote} to {local}", lambda: self._get(remote, local))

    def _get(self, remote: str, local: Path) -> None:
        sftp = self._sftp_client()
        try:
            attributes = sftp.stat(remote)
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.settings.host}:{remote}") from None
        if not stat.S_ISDIR(attributes.st_mode or 0):
            sftp.get(remote, str(local))
            return
        pending = [(remote, local)]
        while pending:
            source, target = pending.pop()
            target.mkdir(parents=True, exist_ok=True)
            for entry in sftp.listdir_attr(source):
                child = posixpath.join(source, entry.filename)
                if stat.S_ISDIR(entry.st_mode or 0):
                    pending.append((child, target / entry.filename))
                else:
                    sftp.get(child, str(target / entry.filename))

    def read_text(self, remote: str) -> str:
        """A small remote file's content; FileNotFoundError if absent."""

        def read() -> str:
            with self._sftp_client().open(remote, "r") as handle:
                return handle.read().decode(errors="replace")

        return self._attempts(f"reading {remote}", read)

    def write_text(self, remote: str, text: str) -> None:
        def write() -> None:
            with self._sftp_client().open(remote, "w") as handle:
                handle.write(text.encode())

        self._attempts(f"writing {remote}", write)

    def makedirs(self, remote: str) -> None:
        self._attempts(f"creating {remote}", lambda: self._mkdirs(self._sftp_client(), remote))

    def _mkdirs(self, sftp: paramiko.SFTPClient, remote: str) -> None:
        missing: list[str] = []
        path = posixpath.normpath(remote)
        while path not in ("", "/", "."):
            try:
                if stat.S_ISDIR(sftp.stat(path).st_mode or 0):
                    break
                raise TransportError(f"{self._where()}: {path} exists and is not a folder")
            except FileNotFoundError:
                missing.append(path)
                path = posixpath.dirname(path)
        for folder in reversed(missing):
            self._mkdir(sftp, folder)

    @staticmethod
    def _mkdir(sftp: paramiko.SFTPClient, remote: str) -> None:
        try:
            sftp.mkdir(remote)
        except OSError:
            # Created meanwhile (another job), or really impossible: stat says which.
            if not stat.S_ISDIR(sftp.stat(remote).st_mode or 0):
                raise

    def exists(self, remote: str) -> bool:
        def probe() -> bool:
            try:
                self._sftp_client().stat(remote)
            except FileNotFoundError:
                return False
            return True

        return self._attempts(f"looking for {remote}", probe)

    def remove(self, remote: str) -> None:
        """Remove a remote file or folder tree (no error if absent)."""
        result = self.run(["rm", "-rf", "--", remote])
        if result.returncode != 0:
            raise TransportError(f"{self._where()}: rm -rf {remote}: {result.describe()}")
