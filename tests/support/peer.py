"""fractal-server 2.6.4, run as a behavioural oracle.

fractal-jupyter serves fractal-server 2.6.4's v2 API. To check that an answer matches, tests (and
people) can send the same request to a real fractal-server 2.6.4: this module installs it in its
own venv and runs it on 127.0.0.1 with SQLite and the local runner.

    venv = ensure_peer_venv()
    with PeerServer(venv, tmp_path / "peer") as peer:
        token = peer.create_user("alice@example.org", "secret", "alice")
        with peer.client(token) as client:
            r = client.post("/api/v2/project/", json={"name": "p"})

`python -m tests.support.peer` starts one and prints its URL and an admin token.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

REPO = Path(__file__).resolve().parents[2]
DEFAULT_ROOT = REPO / ".peer"
FRACTAL_SERVER_REQUIREMENT = "fractal-server==2.6.4"

ADMIN_EMAIL = "admin@fractal.xy"
ADMIN_PASSWORD = "1234"
ADMIN_USERNAME = "admin"

START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0

# fractal-server reads `.fractal_server.env` with python-dotenv, which never overrides variables
# already in the environment: inherited ones must go, or they would silently win.
_SCRUBBED_PREFIXES = ("FRACTAL_", "JWT_", "SQLITE_", "DB_")
# The peer venv has its own interpreter and packages; the caller's must not leak into it.
_SCRUBBED_NAMES = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")


def ensure_peer_venv(root: Path = DEFAULT_ROOT, python: str = "python3") -> Path:
    """Return ``<root>/venv``, creating it and installing fractal-server 2.6.4 if needed.

    Safe to call from concurrent test processes: they serialise on a lock file in ``root``.
    An interrupted install is completed by the next call (``fractalctl`` appears last).
    """
    venv = root / "venv"
    fractalctl = venv / "bin" / "fractalctl"
    if fractalctl.exists():
        return venv
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not fractalctl.exists():
            if not (venv / "bin" / "python").exists():
                subprocess.run([python, "-m", "venv", str(venv)], check=True)
            subprocess.run(
                [
                    str(venv / "bin" / "python"),
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    FRACTAL_SERVER_REQUIREMENT,
                ],
                check=True,
                env=_scrubbed_environ(),
            )
    return venv


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _scrubbed_environ() -> dict[str, str]:
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(_SCRUBBED_PREFIXES) and key not in _SCRUBBED_NAMES
    }


def _env_line(key: str, value: str) -> str:
    # Single quotes make python-dotenv take the value literally.
    if "'" in value or "\n" in value:
        raise ValueError(f"cannot write {key}={value!r} to a dotenv file")
    return f"{key}='{value}'\n"


def _process_tree(root_pid: int) -> list[int]:
    """``root_pid`` and all its descendants, from the parent links in /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process has just exited
            continue
        # The command name (field 2) may contain spaces and parentheses: split after its ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree = [root_pid]
    for pid in tree:
        tree.extend(children.get(pid, []))
    return tree


class PeerError(RuntimeError):
    """The peer server could not be started or did not answer as expected."""


class PeerServer:
    """A fractal-server 2.6.4 process, with its own SQLite database, under ``workdir``.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`. Its output goes to
    ``workdir/server.log``. Restarting on the same ``workdir`` keeps the database.
    """

    def __init__(self, venv: Path, workdir: Path, port: int | None = None) -> None:
        self.venv = venv.absolute()
        self.workdir = workdir.absolute()
        self.port = port if port is not None else free_port()
        self.log_path = self.workdir / "server.log"
        # Per instance, not per start: tokens stay valid across stop() and start().
        self._jwt_secret = secrets.token_hex(32)
        self._process: subprocess.Popen[bytes] | None = None
        self._http: httpx.Client | None = None
        self._admin_token: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise PeerError("the peer server is not running")
        return self._process.pid

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Self:
        """Create the database if needed, start the server and wait until it answers."""
        if self._process is not None:
            raise PeerError("the peer server is already running")
        fractalctl = self.venv / "bin" / "fractalctl"
        if not fractalctl.exists():
            raise PeerError(f"{fractalctl} not found: call ensure_peer_venv() first")
        # Otherwise the server would fail to bind, but only after another server on that port had
        # answered the readiness probe.
        if not _port_is_free(self.port):
            raise PeerError(f"port {self.port} on 127.0.0.1 is already in use")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_env_file()
        env = _scrubbed_environ()

        set_db = subprocess.run(
            [str(fractalctl), "set-db"],
            check=False,
            cwd=self.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        if set_db.returncode != 0:
            raise PeerError(f"fractalctl set-db failed:\n{set_db.stdout}{set_db.stderr}")

        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [str(fractalctl), "start", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so stop() gets the children too
            )
        # The peer is on loopback: proxy settings from the environment must not apply.
        self._http = httpx.Client(base_url=self.url, timeout=30.0, trust_env=False)
        try:
            self._wait_until_alive()
            self._ensure_admin_username()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Terminate the server's process group; kill it if still there after 10 s."""
        if self._http is not None:
            self._http.close()
            self._http = None
        self._admin_token = None
        process, self._process = self._process, None
        if process is None:
            return
        pgid = process.pid  # start_new_session made it the group leader
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while _exit_status(pgid) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        # Also sweeps children that outlived a leader which exited on SIGTERM. The leader is not
        # reaped yet, so the group id cannot have been reused by an unrelated process.
        _signal_group(pgid, signal.SIGKILL)
        process.wait()

    def client(self, token: str | None = None) -> httpx.Client:
        """A new HTTP client for the peer, authenticated with ``token`` if given.

        The caller closes it (or uses it in a ``with`` block).
        """
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0, trust_env=False)

    def login(self, email: str, password: str) -> str:
        """The bearer token of a user."""
        response = self._request(
            "POST", "/auth/token/login/", data={"username": email, "password": password}
        )
        token: str = response.json()["access_token"]
        return token

    @property
    def admin_token(self) -> str:
        """A token of the default admin (a superuser), cached until the server stops."""
        if self._admin_token is None:
            self._admin_token = self.login(ADMIN_EMAIL, ADMIN_PASSWORD)
        return self._admin_token

    def create_user(self, email: str, password: str, username: str) -> str:
        """Register a verified, non-superuser user and return its token."""
        created = self._request(
            "POST",
            "/auth/register/",
            token=self.admin_token,
            json={"email": email, "password": password, "username": username},
        )
        user_id = created.json()["id"]
        # Registration ignores is_verified; unverified users cannot create tasks or submit jobs.
        self._request(
            "PATCH", f"/auth/users/{user_id}/", token=self.admin_token, json={"is_verified": True}
        )
        return self.login(email, password)

    def rss_bytes(self) -> int:
        """Resident memory of the server process and all its descendants, in bytes."""
        page_size = os.sysconf("SC_PAGE_SIZE")
        total = 0
        for pid in _process_tree(self.pid):
            try:
                resident_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
            except OSError:
                continue
            total += resident_pages * page_size
        return total

    def _write_env_file(self) -> None:
        settings = {
            "DB_ENGINE": "sqlite",
            "SQLITE_PATH": str(self.workdir / "db.sqlite"),
            "JWT_SECRET_KEY": self._jwt_secret,
            "JWT_EXPIRE_SECONDS": "86400",
            "FRACTAL_TASKS_DIR": str(self.workdir / "tasks"),
            "FRACTAL_RUNNER_WORKING_BASE_DIR": str(self.workdir / "artifacts"),
            "FRACTAL_RUNNER_BACKEND": "local",
            "FRACTAL_DEFAULT_ADMIN_EMAIL": ADMIN_EMAIL,
            "FRACTAL_DEFAULT_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "FRACTAL_DEFAULT_ADMIN_USERNAME": ADMIN_USERNAME,
        }
        text = "".join(_env_line(key, value) for key, value in settings.items())
        (self.workdir / ".fractal_server.env").write_text(text)

    def _wait_until_alive(self) -> None:
        assert self._process is not None and self._http is not None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            status = _exit_status(self._process.pid)
            if status is not None:
                raise PeerError(f"fractal-server ended (status {status}):\n{self._log_tail()}")
            try:
                if self._http.get("/api/alive/").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise PeerError(
                    f"fractal-server did not answer within {START_TIMEOUT:.0f} s:\n"
                    f"{self._log_tail()}"
                )
            time.sleep(0.1)

    def _ensure_admin_username(self) -> None:
        # Task creation needs a username; an admin created with other settings may lack one.
        me = self._request("GET", "/auth/current-user/", token=self.admin_token).json()
        if me.get("username") != ADMIN_USERNAME:
            self._request(
                "PATCH",
                f"/auth/users/{me['id']}/",
                token=self.admin_token,
                json={"username": ADMIN_USERNAME},
            )

    def _request(
        self, method: str, path: str, *, token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        if self._http is None:
            raise PeerError("the peer server is not running")
        headers = {"Authorization": f"Bearer {token}"} if token is not None else None
        response = self._http.request(method, path, headers=headers, **kwargs)
        if response.is_error:
            raise PeerError(f"{method} {path}: {response.status_code} {response.text}")
        return response

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _exit_status(pid: int) -> int | None:
    """The exit status of our child ``pid`` if it has ended, else None.

    Unlike ``Popen.poll()``, this does not reap the child (WNOWAIT), so its PID stays reserved.
    """
    result = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    return None if result is None else result.si_status


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.peer",
        description="Run fractal-server 2.6.4 until Ctrl-C, for manual comparisons.",
    )
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="default: a temporary directory, removed after"
    )
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="where the venv lives")
    args = parser.parse_args(argv)

    # SIGTERM ends the wait like Ctrl-C does, so the server is stopped either way. SIGINT is set
    # too because a shell starting us in the background (`... &`) makes us inherit it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    venv = ensure_peer_venv(args.root)
    with contextlib.ExitStack() as stack:
        workdir: Path = args.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="fractal-peer-"))
        )
        with PeerServer(venv, workdir, args.port) as peer:
            print(f"URL:         {peer.url}")
            print(f"admin token: {peer.admin_token}")
            print(f"log:         {peer.log_path}")
            print("Ctrl-C to stop.", flush=True)
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                print("stopping", file=sys.stderr)


if __name__ == "__main__":
    main()
