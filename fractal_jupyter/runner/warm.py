"""Warm task starts: a task's imports paid once per task of a job, not once per call.

For the calls of one task whose command is `<python> <script.py>`, a starter process of that
interpreter (`warm_starter.py`, stdlib only, see there for the protocol) imports the script
once as a module and forks one child per call; the child runs the script as `__main__` with
the call's argv, log, working directory, environment and memory limit. Each call is still its
own process (own exit code, log, process group): the executors stop a call by its pid as they
stop a spawned one.

`WarmStarters` serves the calls of one `run_calls` of an executor (one task's calls): it starts
at most one starter per command, lazily, and says once per command, through `on_note`, whether
its calls run warm or why they are spawned. Any failure of a starter (the import fails, the
starter dies) makes the calls that it has not started fall back to spawning.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
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
ORPHAN_POLL_SECONDS = 0.1


class StarterFailed(Exception):
    """The starter cannot run the call (it did not import the script, or it died)."""


class StarterDied(Exception):
    """The starter died after forking the call's process: the call's outcome is unknown."""


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
    pid: int | None = None
    status: int | None = None
    forked: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)


class WarmStarter:
    """One starter process: `start` imports the script, `run` runs one call in a child."""

    def __init__(self, python: str, script: str, log_path: Path, env: dict[str, str]) -> None:
        self.python = python
        self.script = script
        self.log_path = log_path
        self.env = env
        self.import_seconds = 0.0
        self.died: str | None = None  # why the starter is gone, once it is
        self._process: subprocess.Popen[bytes] | None = None
        self._pending: dict[int, _Pending] = {}
        self._next_id = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the starter and wait for the import; StarterFailed says why it failed."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            try:
                process = subprocess.Popen(
                    [self.python, str(STARTER_SCRIPT), self.script, str(self.log_path)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    start_new_session=True,
                    env=self.env,
                )
            except OSError as error:
                raise StarterFailed(f"the starter did not start: {error}") from None
        assert process.stdout is not None
        self._process = process
        line = process.stdout.readline()
        try:
            answer: JSON = json.loads(line) if line else {}
        except json.JSONDecodeError:
            answer = {}
        if not answer.get("ready"):
            self._end()
            reason = answer.get("error") or (
                f"the starter ended with code {process.returncode} while importing "
                f"(its log: {self.log_path})"
            )
            raise StarterFailed(reason)
        self.import_seconds = float(answer["seconds"])
        threading.Thread(target=self._read, args=(process.stdout,), daemon=True).start()

    def _read(self, replies: IO[bytes]) -> None:
        """The starter's answers, for the waiting calls; at its end, every call learns it."""
        assert self._process is not None
        why = ""
        try:
            for line in replies:
                message = json.loads(line)
                with self._lock:
                    pending = self._pending.get(message["id"])
                if pending is None:
                    continue
                if "pid" in message:
                    pending.pid = int(message["pid"])
                    pending.forked.set()
                else:
                    pending.status = int(message["status"])
                    pending.ended.set()
        except (OSError, ValueError, KeyError, TypeError) as error:
            why = f", after an answer not understood: {error}"
            self._process.kill()  # no call may wait for it any more
        code = self._process.wait()
        with self._lock:
            self.died = f"the starter ended (code {code}{why})"
            waiting = list(self._pending.values())
        for pending in waiting:
            pending.forked.set()
            pending.ended.set()

    def run(
        self,
        argv: list[str],
        log_path: Path,
        limit: int | None,
        started: Callable[[int], None],
    ) -> int:
        """Run one call in a child; its exit status as `Popen.returncode` gives it."""
        process = self._process
        assert process is not None and process.stdin is not None
        pending = _Pending()
        with self._lock:
            if self.died is not None:
                raise StarterFailed(self.died)
            self._next_id += 1
            request_id = self._next_id
            self._pending[request_id] = pending
            request = {
                "id": request_id,
                "argv": [self.script, *argv[2:]],
                "cwd": os.getcwd(),
                "env": self.env,
                "log": str(log_path),
                "limit": limit,
            }
            try:
                process.stdin.write((json.dumps(request) + "\n").encode())
                process.stdin.flush()
            except OSError as error:
                del self._pending[request_id]
                raise StarterFailed(f"the starter does not listen: {error}") from None
        try:
            pending.forked.wait()
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
        """No more calls: the starter ends once its children did (its log goes if empty)."""
        if self._process is not None and self._process.stdin is not None:
            with contextlib.suppress(OSError):
                self._process.stdin.close()
        self._end()
        with contextlib.suppress(OSError):
            if self.log_path.stat().st_size == 0:
                self.log_path.unlink()

    def _end(self) -> None:
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


class WarmStarters:
    """The starters of one executor's `run_calls`: one per command that has several calls."""

    def __init__(
        self,
        calls: Sequence[TaskCall],
        *,
        enabled: bool,
        log_dir: Path,
        env: dict[str, str],
        on_note: Callable[[str], None],
    ) -> None:
        self.enabled = enabled
        self.log_dir = log_dir
        self.env = env
        self.on_note = on_note
        self.counts = Counter(call.command for call in calls)
        self.notes: dict[str, str] = {}  # command -> how its calls start
        self._starters: dict[str, WarmStarter | None] = {}
        self._started: list[WarmStarter] = []
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def _note(self, call: TaskCall, text: str) -> None:
        with self._lock:
            if call.command in self.notes:
                return
            self.notes[call.command] = text
        self.on_note(text)

    def _spawn(self, call: TaskCall, reason: str) -> None:
        self._note(call, f"{call.task_name}: one new process per call ({reason})")

    def _starter(self, call: TaskCall, argv: list[str]) -> WarmStarter | None:
        """The started starter for the call's command, or None (its calls are spawned)."""
        if self.counts[call.command] < 2:
            return None  # nothing to share
        if not self.enabled:
            self._spawn(call, "warm starts are off: FractalJupyter.warm_start")
            return None
        if call.meta.get("warm_start") is False:
            self._spawn(call, "the task's meta sets warm_start to false")
            return None
        with self._lock:
            lock = self._locks.setdefault(call.command, threading.Lock())
        with lock:  # the first call starts the starter, the others wait for its import
            if call.command in self._starters:
                return self._starters[call.command]
            target = warm_script(argv[:-APPENDED_ARGUMENTS])
            starter: WarmStarter | None = None
            if isinstance(target, str):
                self._spawn(call, target)
            else:
                python, script = target
                # Not `.log`: the `.log` files of a task folder are those of its calls.
                log_path = self.log_dir / call.folder / f"{call.prefix}.warm-starter.txt"
                starter = WarmStarter(python, script, log_path, self.env)
                with self._lock:
                    self._started.append(starter)
                try:
                    starter.start()
                except StarterFailed as error:
                    self._spawn(call, f"the warm start failed: {error}")
                    starter = None
                else:
                    self._note(
                        call,
                        f"{call.task_name}: warm start, {script} imported once in "
                        f"{starter.import_seconds:.2f} s by {python}, a process forked per call",
                    )
            self._starters[call.command] = starter
            return starter

    def run(
        self,
        call: TaskCall,
        argv: list[str],
        log_path: Path,
        limit: int | None,
        started: Callable[[int], None],
    ) -> int | None:
        """The call's exit status if it ran warm; None if it is to be spawned."""
        starter = self._starter(call, argv)
        if starter is None:
            return None
        try:
            return starter.run(argv, log_path, limit, started)
        except StarterFailed as error:
            if self._forget(call, starter):
                self.on_note(
                    f"{call.task_name}: the warm starter failed ({error}); the calls it had "
                    "not started get a new process each"
                )
            return None

    def _forget(self, call: TaskCall, starter: WarmStarter) -> bool:
        """Stop using a failed starter; True for the first call that found it failed."""
        with self._lock:
            if self._starters.get(call.command) is not starter:
                return False
            self._starters[call.command] = None
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
