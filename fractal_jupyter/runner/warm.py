"""Warm task starts: a task's imports paid once per job, not once per call.

For the calls of a command `<python> <script.py>`, a starter process of that interpreter
(`warm_starter.py`, stdlib only, see there for the protocol) imports the script once as a
module and forks one child per call; the child runs the script as `__main__` with the call's
argv, log, working directory, environment and memory limit. Each call is still its own process
(own exit code, log, process group): the executors stop a call by its pid as they stop a
spawned one.

`WarmStarters` serves the calls of a job on the local backend (of a batch in a SLURM job): it
starts at most one starter per interpreter, lazily, and the tasks of one package (one venv's
Python) fork from the same starter, which imports each further script on top of what it holds.
A command runs warm when there is something to share: it has several calls, its interpreter
serves another task of the job, or starters are kept for later jobs. `on_note` says once per
command whether its calls run warm or why they are spawned. Any failure of a starter (an
import fails, the starter dies) makes the calls that it has not started fall back to spawning.

With `keep_seconds` (local backend), a starter is kept for later jobs: a process of its own
that listens on a Unix socket in a private folder, named after the interpreter and the
environment, and ends once idle for that long (see `warm_starter.py`). A job reaches it, or
starts it there; a rerun of a workflow then pays no imports at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .interface import JSON, TaskCall

STARTER_SCRIPT = Path(__file__).with_name("warm_starter.py")
# `python`, `python3`, `python3.12`: a program whose children can run a script in-process.
_PYTHON_NAME = re.compile(r"python(\d+(\.\d+)?)?")
# What `call.command_line` appends to a task's command: --args-json A --out-json B.
APPENDED_ARGUMENTS = 4
CLOSE_TIMEOUT_SECONDS = 10.0
# The starter's last argument: blank room in which its children write their own command lines
# (`warm_starter.show_command_line`), so that `ps` shows each call as if it were spawned.
COMMAND_LINE_ROOM = " " * 4096
ORPHAN_POLL_SECONDS = 0.1
KEPT_CONNECT_POLL_SECONDS = 0.01
KEY_LENGTH = 24
SOCKET_PATH_MAX = 107  # sun_path holds 108 bytes with the final NUL
# A kept starter takes its socket's name as soon as its interpreter runs, before any import.
KEPT_LISTEN_TIMEOUT_SECONDS = 30.0


class StarterFailed(Exception):
    """The starter cannot run the call (it did not import the script, or it died)."""


class StarterDied(Exception):
    """The starter died after forking the call's process: the call's outcome is unknown."""


class ScriptNotImported(Exception):
    """The starter is fine but could not import this call's script."""


def warm_script(argv: Sequence[str]) -> tuple[str, str] | str:
    """`(python, script)` for a command `<python> <script.py>`, else why it cannot run warm."""
    if len(argv) != 2 or not argv[1].endswith(".py"):
        return "the command is not `<python> <script.py>`"
    if _PYTHON_NAME.fullmatch(os.path.basename(argv[0])) is None:
        return f"{argv[0]} is not a Python interpreter"
    if not os.path.isfile(argv[1]):
        return f"{argv[1]} is not a file"
    return argv[0], argv[1]


@dataclass
class _Pending:
    script: str
    pid: int | None = None
    status: int | None = None
    error: str | None = None  # the starter could not import the script
    forked: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class KeptPlace:
    """Where the kept starter of one interpreter and environment listens and logs."""

    socket: Path
    log: Path
    keep_seconds: float


class WarmStarter:
    """One starter: `start` gets it to import the script, `run` runs one call in a child.

    Without `kept`, the starter is a child of this process for this job (its stdin and stdout
    carry the protocol). With it, the starter is a kept one (see `warm_starter.py`): this
    connects to the one that listens at `kept.socket`, or starts it there.
    """

    def __init__(
        self,
        python: str,
        script: str,
        log_path: Path,
        env: dict[str, str],
        kept: KeptPlace | None = None,
    ) -> None:
        self.python = python
        self.script = script
        self.log_path = log_path
        self.env = env
        self.kept = kept
        self.pid: int | None = None
        self.served = 0  # the jobs that a kept starter served before this one
        self.replaced: str | None = None  # why the kept starter found was replaced
        self.import_seconds: dict[str, float] = {}  # script -> seconds its import took
        self.died: str | None = None  # why the starter is gone, once it is
        self._process: subprocess.Popen[bytes] | None = None  # the starter, if started here
        self._socket: socket.socket | None = None
        self._replies: IO[bytes] | None = None
        self._requests: IO[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._pending: dict[int, _Pending] = {}
        self._next_id = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the starter (or reach a kept one) and wait for its import; StarterFailed
        says why it failed."""
        answer = self._start_piped() if self.kept is None else self._start_kept(self.kept)
        if not answer.get("ready"):
            self._end()
            raise StarterFailed(
                answer.get("error")
                or f"the starter ended while importing {self.script} (its log: {self.log_path})"
            )
        self.pid = int(answer.get("pid") or 0) or self.pid
        self.served = int(answer.get("served", 0))
        if not self.served:
            self.import_seconds[self.script] = float(answer["seconds"])
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _launch(self, *listen: str, piped: bool) -> subprocess.Popen[bytes]:
        """Start the starter process (its stderr to `log_path`): the protocol on its stdin and
        stdout when `piped`, else on the socket that `listen` names."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        stdio = subprocess.PIPE if piped else subprocess.DEVNULL
        command = [self.python, str(STARTER_SCRIPT), *listen, self.script, str(self.log_path)]
        try:
            with self.log_path.open("wb") as log:
                process = subprocess.Popen(
                    [*command, COMMAND_LINE_ROOM],
                    stdin=stdio,
                    stdout=stdio,
                    stderr=log,
                    start_new_session=True,
                    env=self.env,
                )
        except OSError as error:
            raise StarterFailed(f"the starter did not start: {error}") from None
        self._process, self.pid = process, process.pid
        return process

    def _start_piped(self) -> JSON:
        process = self._launch(piped=True)
        self._replies, self._requests = process.stdout, process.stdin
        return self._answer()

    def _start_kept(self, kept: KeptPlace) -> JSON:
        """Greeted by the kept starter: the one found at the socket, else a new one (also in
        place of one that found its imports stale, or that is ending)."""
        self._socket = self._connect(kept.socket)
        if self._socket is not None:
            answer = self._answer()
            if answer.get("ready"):
                return answer
            if "stale" in answer:
                self.replaced = str(answer["stale"])
            self._close_connection()
        self.log_path = kept.log
        process = self._launch("--listen", str(kept.socket), f"{kept.keep_seconds:g}", piped=False)
        # It outlives this job; while this process lives, it is reaped once it ends.
        threading.Thread(target=process.wait, daemon=True).start()
        deadline = time.monotonic() + KEPT_LISTEN_TIMEOUT_SECONDS
        while self._socket is None:
            if process.poll() is not None or time.monotonic() > deadline:
                return {}
            time.sleep(KEPT_CONNECT_POLL_SECONDS)
            self._socket = self._connect(kept.socket)
        return self._answer()

    def _connect(self, path: Path) -> socket.socket | None:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.connect(str(path))
        except OSError:  # none listens there (no file, or one that a dead starter left)
            connection.close()
            return None
        self._replies = connection.makefile("rb")
        self._requests = connection.makefile("wb")
        return connection

    def _answer(self) -> JSON:
        """The starter's first answer ({} if it ended without one)."""
        assert self._replies is not None
        line = self._replies.readline()
        try:
            answer = json.loads(line) if line else {}
        except json.JSONDecodeError:
            answer = {}
        return answer if isinstance(answer, dict) else {}

    def _read(self) -> None:
        """The starter's answers, for the waiting calls; at its end, every call learns it."""
        assert self._replies is not None
        why = ""
        try:
            for line in self._replies:
                message = json.loads(line)
                if "preloaded" in message:
                    self.import_seconds[message["preloaded"]] = float(message["seconds"])
                    continue
                with self._lock:
                    pending = self._pending.get(message["id"])
                if pending is None:
                    continue
                if "module" in message:
                    self.import_seconds[pending.script] = float(message["seconds"])
                elif "error" in message:
                    pending.error = str(message["error"])
                    pending.forked.set()
                    pending.ended.set()
                elif "pid" in message:
                    pending.pid = int(message["pid"])
                    pending.forked.set()
                else:
                    pending.status = int(message["status"])
                    pending.ended.set()
        except (OSError, ValueError, KeyError, TypeError) as error:
            why = f", after an answer not understood: {error}"
            self._hang_up()  # no call may wait for it any more
        if self.kept is not None:
            ended = f"the kept starter (pid {self.pid}) ended its connection{why}"
        else:
            assert self._process is not None
            ended = f"the starter ended (code {self._process.wait()}{why})"
        with self._lock:
            self.died = ended
            waiting = list(self._pending.values())
        for pending in waiting:
            pending.forked.set()
            pending.ended.set()

    def _hang_up(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
        elif self._process is not None:
            self._process.kill()

    def _close_connection(self) -> None:
        for stream in (self._replies, self._requests, self._socket):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._socket = self._replies = self._requests = None

    def _send(self, message: JSON) -> None:
        assert self._requests is not None
        self._requests.write((json.dumps(message) + "\n").encode())
        self._requests.flush()

    def preload(self, scripts: list[str]) -> None:
        """Have the starter import these scripts (of later tasks) whenever it is idle."""
        with self._lock, contextlib.suppress(OSError):  # a dead starter: its calls say so
            self._send({"preload": scripts})

    def run(
        self,
        script: str,
        argv: list[str],
        log_path: Path,
        limit: int | None,
        started: Callable[[int], None],
    ) -> int:
        """Run one call of `script` in a child; its exit status as `Popen.returncode` gives
        it. ScriptNotImported when the starter cannot import the script."""
        pending = _Pending(script)
        with self._lock:
            if self.died is not None:
                raise StarterFailed(self.died)
            self._next_id += 1
            request_id = self._next_id
            self._pending[request_id] = pending
            try:
                self._send(
                    {
                        "id": request_id,
                        "script": script,
                        "argv": [script, *argv[2:]],
                        "cwd": os.getcwd(),
                        "env": self.env,
                        "log": str(log_path),
                        "limit": limit,
                    }
                )
            except OSError as error:
                del self._pending[request_id]
                raise StarterFailed(f"the starter does not listen: {error}") from None
        try:
            pending.forked.wait()
            if pending.error is not None:
                raise ScriptNotImported(pending.error)
            if pending.pid is None:
                raise StarterFailed(self.died or "the starter ended")
            started(pending.pid)
            pending.ended.wait()
            if pending.status is None:
                self._wait_for_orphan(pending.pid)
                raise StarterDied(
                    f"{self.died or 'the starter ended'} while the call's process ran: its "
                    "outcome is unknown"
                )
            return pending.status
        finally:
            with self._lock:
                self._pending.pop(request_id, None)

    @staticmethod
    def _wait_for_orphan(pid: int) -> None:
        """A child whose starter died is no one's to wait for: wait until it is gone."""
        while Path(f"/proc/{pid}").exists():
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                return
            if state == "Z":
                return
            time.sleep(ORPHAN_POLL_SECONDS)

    def close(self) -> None:
        """No more calls: a job's starter ends once its children did (its log goes if
        empty); a kept one forgets this job and stays."""
        if self.kept is not None:
            if self._socket is not None:
                with contextlib.suppress(OSError):
                    self._socket.shutdown(socket.SHUT_WR)
            if self._reader is not None:
                self._reader.join(CLOSE_TIMEOUT_SECONDS)
            self._close_connection()
            return
        if self._requests is not None:
            with contextlib.suppress(OSError):
                self._requests.close()
        self._end()
        with contextlib.suppress(OSError):
            if self.log_path.stat().st_size == 0:
                self.log_path.unlink()

    def _end(self) -> None:
        if self.kept is not None:
            self._close_connection()
            return
        process = self._process
        if process is None:
            return
        try:
            process.wait(timeout=CLOSE_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def default_keep_dir() -> Path:
    """Where kept starters listen: the user's runtime folder, else a folder of theirs in /tmp."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "fractal-jupyter-warm"
    return Path(tempfile.gettempdir()) / f"fractal-jupyter-warm-{os.getuid()}"


def private_folder(path: Path) -> Path:
    """The folder, made if missing, when only this user can enter it (their kept starters
    fork calls for whoever connects); OSError says why it is not."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700, parents=True)
    status = path.lstat()
    if not stat.S_ISDIR(status.st_mode):
        raise NotADirectoryError(f"{path} is not a folder")
    if status.st_uid != os.getuid() or status.st_mode & 0o077:
        raise PermissionError(f"{path} is not this user's alone (it must be mode 700)")
    return path


def warm_target(command: str) -> tuple[str, str] | None:
    """`(python, script)` of a command that can run warm, else None."""
    try:
        target = warm_script(shlex.split(command))
    except ValueError:
        return None
    return None if isinstance(target, str) else target


class WarmStarters:
    """The starters of a job's calls (a SLURM batch's): one per interpreter with calls to share."""

    def __init__(
        self,
        calls: Sequence[TaskCall] = (),
        *,
        enabled: bool,
        log_dir: Path,
        env: dict[str, str],
        on_note: Callable[[str], None],
        planned_commands: Iterable[str] = (),
        keep_seconds: float = 0.0,
        keep_dir: Path | None = None,
    ) -> None:
        self.enabled = enabled
        self.keep_seconds = keep_seconds
        self.keep_dir = keep_dir
        self.log_dir = log_dir
        self.env = env
        self.on_note = on_note
        self.counts: Counter[str] = Counter()  # command -> its calls so far
        # python -> the job's commands that it runs (a single call shares its starter with
        # them), and their scripts in the workflow's order (its starter imports them ahead)
        self.commands_of: dict[str, set[str]] = {}
        self.scripts_of: dict[str, list[str]] = {}
        for command in dict.fromkeys(planned_commands):
            target = warm_target(command)
            if target is not None:
                self.commands_of.setdefault(target[0], set()).add(command)
                self.scripts_of.setdefault(target[0], []).append(target[1])
        self.notes: dict[str, str] = {}  # command -> how its calls start
        self._starters: dict[str, WarmStarter | None] = {}  # python -> its starter
        self._failures: dict[str, str] = {}  # python -> why it has no starter
        self.keep_refused: str | None = None  # why starters are not kept, if they are not
        self._started: list[WarmStarter] = []
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self.expect(calls)

    def expect(self, calls: Sequence[TaskCall]) -> None:
        """The calls of the next task."""
        with self._lock:
            self.counts.update(call.command for call in calls)

    def _note(self, call: TaskCall, text: str) -> None:
        with self._lock:
            if call.command in self.notes:
                return
            self.notes[call.command] = text
        self.on_note(text)

    def _spawn(self, call: TaskCall, reason: str) -> None:
        self._note(call, f"{call.task_name}: one new process per call ({reason})")

    def _shares(self, call: TaskCall) -> bool:
        """True if a starter would serve more than this one call."""
        if self.counts[call.command] >= 2:
            return True
        target = warm_target(call.command)
        return target is not None and bool(self.commands_of.get(target[0], set()) - {call.command})

    def _starter(self, call: TaskCall, argv: list[str]) -> tuple[WarmStarter, str] | None:
        """The started starter for the call's interpreter and the call's script, or None (its
        calls are spawned)."""
        if not self._shares(call) and self.keep_seconds <= 0:
            return None  # nothing to share (a kept starter shares with later jobs)
        if not self.enabled:
            self._spawn(call, "warm starts are off: FractalJupyter.warm_start")
            return None
        if call.meta.get("warm_start") is False:
            self._spawn(call, "the task's meta sets warm_start to false")
            return None
        target = warm_script(argv[:-APPENDED_ARGUMENTS])
        if isinstance(target, str):
            self._spawn(call, target)
            return None
        python, script = target
        with self._lock:
            lock = self._locks.setdefault(python, threading.Lock())
        with lock:  # the first call starts the starter, the others wait for its import
            if python not in self._starters:
                self._starters[python] = self._start(call, python, script)
            starter = self._starters[python]
        if starter is None:
            self._spawn(call, f"the warm start failed: {self._failures[python]}")
            return None
        return starter, script

    def _start(self, call: TaskCall, python: str, script: str) -> WarmStarter | None:
        # Not `.log`: the `.log` files of a task folder are those of its calls.
        log_path = self.log_dir / call.folder / f"{call.prefix}.warm-starter.txt"
        starter = WarmStarter(python, script, log_path, self.env, self._kept_place(python))
        with self._lock:
            self._started.append(starter)
        try:
            starter.start()
        except StarterFailed as error:
            self._failures[python] = str(error)
            return None
        later = [other for other in self.scripts_of.get(python, []) if other != script]
        if later:
            starter.preload(later)
        return starter

    def _kept_place(self, python: str) -> KeptPlace | None:
        """Where the kept starter of this interpreter (and environment) is, when starters are
        kept (else, or when no private folder is at hand, None: a starter for this job)."""
        if self.keep_seconds <= 0:
            return None
        try:
            folder = private_folder(self.keep_dir or default_keep_dir())
        except OSError as error:
            self._refuse_keeping(f"no private folder for them: {error}")
            return None
        # Not the resolved path: the Pythons of two venvs are links to the same interpreter.
        key = hashlib.sha256(json.dumps([python, sorted(self.env.items())]).encode())
        name = key.hexdigest()[:KEY_LENGTH]
        place = KeptPlace(folder / f"{name}.sock", folder / f"{name}.log", self.keep_seconds)
        if len(os.fsencode(place.socket)) > SOCKET_PATH_MAX:
            self._refuse_keeping(f"the path of their sockets would be too long: {place.socket}")
            return None
        return place

    def _refuse_keeping(self, why: str) -> None:
        with self._lock:
            if self.keep_refused is not None:
                return
            self.keep_refused = why
        self.on_note(f"warm starters are not kept after this job: {why}")

    def _note_warm(self, call: TaskCall, starter: WarmStarter, script: str) -> None:
        if call.command in self.notes:
            return
        seconds = starter.import_seconds.get(script)
        imported = "" if seconds is None else f" once in {seconds:.2f} s"
        if starter.served:
            how = (
                f"{script} imported{imported} by the starter of {starter.python} kept from an "
                f"earlier job (pid {starter.pid}, {starter.served} jobs before this one)"
            )
        elif script == starter.script:
            how = f"{script} imported{imported} by {starter.python}"
        else:
            how = (
                f"{script} imported{imported} by the starter of {starter.python} that "
                f"had imported {starter.script}"
            )
        if starter.replaced is not None:
            how += f" (a new starter: {starter.replaced})"
        if starter.kept is not None:
            how += f"; the starter stays {starter.kept.keep_seconds:g} s after its last call"
        self._note(call, f"{call.task_name}: warm start, {how}, a process forked per call")

    def run(
        self,
        call: TaskCall,
        argv: list[str],
        log_path: Path,
        limit: int | None,
        started: Callable[[int], None],
    ) -> int | None:
        """The call's exit status if it ran warm; None if it is to be spawned."""
        found = self._starter(call, argv)
        if found is None:
            return None
        starter, script = found

        def forked(pid: int) -> None:
            self._note_warm(call, starter, script)
            started(pid)

        try:
            return starter.run(script, argv, log_path, limit, forked)
        except ScriptNotImported as error:
            self._spawn(call, f"the warm start failed: {error}")
            return None
        except StarterFailed as error:
            if self._forget(starter, str(error)):
                self.on_note(
                    f"{call.task_name}: the warm starter failed ({error}); the calls it had "
                    "not started get a new process each"
                )
            return None

    def _forget(self, starter: WarmStarter, why: str) -> bool:
        """Stop using a failed starter; True for the first call that found it failed."""
        with self._lock:
            if self._starters.get(starter.python) is not starter:
                return False
            self._starters[starter.python] = None
            self._failures[starter.python] = why
            return True

    def close(self) -> None:
        with self._lock:
            starters = list(self._started)
        for starter in starters:
            starter.close()

    def __enter__(self) -> WarmStarters:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
