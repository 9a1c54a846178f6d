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
A command runs warm when there is something to share: it has several calls, or its interpreter
serves another task of the job. `on_note` says once per command whether its calls run warm or
why they are spawned. Any failure of a starter (an import fails, the starter dies) makes the
calls that it has not started fall back to spawning.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import subprocess
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


class WarmStarter:
    """One starter process: `start` imports the script, `run` runs one call in a child."""

    def __init__(self, python: str, script: str, log_path: Path, env: dict[str, str]) -> None:
        self.python = python
        self.script = script
        self.log_path = log_path
        self.env = env
        self.import_seconds: dict[str, float] = {}  # script -> seconds its import took
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
                    [
                        self.python,
                        str(STARTER_SCRIPT),
                        self.script,
                        str(self.log_path),
                        COMMAND_LINE_ROOM,
                    ],
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
        self.import_seconds[self.script] = float(answer["seconds"])
        threading.Thread(target=self._read, args=(process.stdout,), daemon=True).start()

    def _read(self, replies: IO[bytes]) -> None:
        """The starter's answers, for the waiting calls; at its end, every call learns it."""
        assert self._process is not None
        why = ""
        try:
            for line in replies:
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
            self._process.kill()  # no call may wait for it any more
        code = self._process.wait()
        with self._lock:
            self.died = f"the starter ended (code {code}{why})"
            waiting = list(self._pending.values())
        for pending in waiting:
            pending.forked.set()
            pending.ended.set()

    def preload(self, scripts: list[str]) -> None:
        """Have the starter import these scripts (of later tasks) whenever it is idle."""
        process = self._process
        assert process is not None and process.stdin is not None
        with self._lock, contextlib.suppress(OSError):  # a dead starter: its calls say so
            process.stdin.write((json.dumps({"preload": scripts}) + "\n").encode())
            process.stdin.flush()

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
        process = self._process
        assert process is not None and process.stdin is not None
        pending = _Pending(script)
        with self._lock:
            if self.died is not None:
                raise StarterFailed(self.died)
            self._next_id += 1
            request_id = self._next_id
            self._pending[request_id] = pending
            request = {
                "id": request_id,
                "script": script,
                "argv": [script, *argv[2:]],
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
    ) -> None:
        self.enabled = enabled
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
        if not self._shares(call):
            return None  # nothing to share
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
        starter = WarmStarter(python, script, log_path, self.env)
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

    def _note_warm(self, call: TaskCall, starter: WarmStarter, script: str) -> None:
        if call.command in self.notes:
            return
        seconds = starter.import_seconds.get(script)
        imported = "" if seconds is None else f" in {seconds:.2f} s"
        if script == starter.script:
            how = f"{script} imported once{imported} by {starter.python}"
        else:
            how = (
                f"{script} imported once{imported} by the starter of {starter.python} that "
                f"had imported {starter.script}"
            )
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
