"""The warm starter: `<task python> warm_starter.py <script.py> <starter log> <room>`.

It runs under the *task's* interpreter (a task venv's Python, without fractal_jupyter), so it
uses the standard library only and runs on any Python >= 3.9. It imports the task script once
as a module (under its package name when it lies in a package on `sys.path`, as the scripts of
collected packages do), then forks one child per call; each child sets its argv, working
directory, environment and address-space limit, sends its stdout and stderr to the call's log,
runs the script as `__main__` and exits with the script's exit code. The imported module stays
untouched in the starter: a child's module globals are those of a fresh run. A request may
name another script of the same interpreter: the starter imports it on top of what it holds
(the tasks of one package share most of their imports) before it forks that call.

The protocol is JSON lines, one object a line. The starter answers first with
`{"ready": true, "module": name, "seconds": s}` or `{"error": reason}` (and exits). Then it
reads requests `{"id": n, "script": path, "argv": [...], "cwd": ..., "env": {...}, "log":
path, "limit": bytes or null}` on its stdin. For a script it has not imported yet it first
writes `{"id": n, "module": name, "seconds": s}`, or `{"id": n, "error": reason}` (the call is
not forked, nor any later call of that script). A request `{"preload": [script, ...]}` names
the scripts of the job's later tasks: the starter imports them one by one whenever no request
waits (while the children work), and writes `{"preloaded": script, "module": name, "seconds":
s}` for each import that worked; a failed one is said to that script's first call. It writes
`{"id": n, "pid": pid}` once the child is forked and `{"id": n, "status": code}` when it
ended (`-signal` when a signal killed it, as in `subprocess`). When its stdin closes it
waits for its children and exits.

The starter log (the second argument) only names where the caller sends the starter's own
stderr: as an argument, it puts the job folder on the starter's command line, where the
runner looks for left-over task processes. The last argument is blank room: each child
writes its call's command line (`<python> <script> --args-json ...`) over the starter's, so
that it shows in `ps` and `/proc` as a spawned call would.

A kept starter, `<task python> warm_starter.py --listen <socket> <keep seconds> <script> <log>
<room>`, serves the same protocol on a Unix socket to the job processes of any number of jobs,
one connection each, and ends once it had neither a connection nor a child for `keep seconds`.
It takes the socket's name before its first import (a job process that connects meanwhile
waits in the backlog), and greets each connection with `{"ready": true, "module": ...,
"seconds": ..., "pid": pid, "served": n}`, n being how many it greeted before. Before a
greeting it looks whether a file behind what it imported changed (a module's file, or a
site-packages folder of `sys.path`: a package was installed or removed); if one did, it answers
`{"stale": reason}` instead, gives up its socket's name, and ends once its children did. It
also ends, once idle, when another starter took the name.

No threads here: a child gets a copy of the starter's memory but only the forking thread.
"""

from __future__ import annotations

import ast
import atexit
import contextlib
import errno
import gc
import importlib
import json
import os
import resource
import runpy
import select
import signal
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, NoReturn

READ_SIZE = 65536
# How long a kept starter whose first import failed still says why to those who connect.
REFUSAL_SECONDS = 1.0
PACKAGE_FOLDERS = ("site-packages", "dist-packages")
# Fields of /proc/<pid>/stat (counted from 1): where the command line lies in memory.
ARG_START_FIELD = 48
ARG_END_FIELD = 49


def has_main_block(source: str, filename: str) -> bool:
    """True if the script has a top-level `if __name__ == "__main__":` (importing it as a
    module then defines its functions without running the task)."""
    for node in ast.parse(source, filename).body:
        if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
            continue
        sides = [node.test.left, *node.test.comparators]
        names = [side for side in sides if isinstance(side, ast.Name) and side.id == "__name__"]
        mains = [
            side for side in sides if isinstance(side, ast.Constant) and side.value == "__main__"
        ]
        if names and mains and all(isinstance(op, ast.Eq) for op in node.test.ops):
            return True
    return False


def module_name(script: str) -> str:
    """The name to import `script` under: its dotted name in the packages of a `sys.path`
    entry (`<site-packages>/pkg/task.py` is `pkg.task`), else its file name."""
    for entry in sys.path[1:]:
        root = os.path.realpath(entry or ".")
        if not script.startswith(root + os.sep):
            continue
        parts = os.path.relpath(script, root)[: -len(".py")].split(os.sep)
        folders = [os.path.join(root, *parts[:end]) for end in range(1, len(parts))]
        if all(part.isidentifier() for part in parts) and all(
            os.path.isfile(os.path.join(folder, "__init__.py")) for folder in folders
        ):
            return ".".join(parts)
    return os.path.basename(script)[: -len(".py")]


def import_script(script: str) -> str:
    """Import the script as a module; its name, or ImportError with the reason."""
    with open(script, "rb") as source:
        if not has_main_block(source.read().decode("utf-8", "replace"), script):
            raise ImportError(
                'the script has no `if __name__ == "__main__":` block (importing it would '
                "run the task)"
            )
    name = module_name(script)
    module = importlib.import_module(name)
    found = os.path.realpath(getattr(module, "__file__", None) or "")
    if found != script:
        raise ImportError(f"`import {name}` finds {found or 'a module without a file'}")
    return name


def exit_code(code: Any) -> int:
    """What the interpreter makes of `sys.exit(code)`."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def show_command_line(argv: list[str]) -> None:
    """Show `argv` as this process's command line (`/proc/<pid>/cmdline`, `ps`): a call looks
    as it would when spawned. It overwrites the memory that the kernel reads the command line
    from, within the room that the starter's own command line holds (its last argument is
    blank room); on other systems, or without ctypes, nothing changes."""
    try:
        import ctypes

        with open("/proc/self/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[ARG_START_FIELD - 3]), int(fields[ARG_END_FIELD - 3])
    except (ImportError, OSError, ValueError, IndexError):
        return
    if end - start < 2:
        return
    text = b"\0".join(os.fsencode(arg) for arg in argv)[: end - start - 1]
    ctypes.memmove(start, text.ljust(end - start, b"\0"), end - start)


def run_child(request: dict[str, Any], script: str) -> int:
    """In the forked child (in a new session already): become the call's process and run
    the script as `__main__`."""
    show_command_line([sys.executable, *request["argv"]])
    sys.path[0] = os.path.dirname(script)
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    if request.get("limit"):
        resource.setrlimit(resource.RLIMIT_AS, (request["limit"], request["limit"]))
    sys.argv = list(request["argv"])
    try:
        runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as error:
        code = exit_code(error.code)
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    atexit._run_exitfuncs()  # what a fresh interpreter does on its way out (logging...)
    return code


@dataclass(eq=False)
class Connection:
    """A caller: the fds that its requests come on and its answers go to (one socket, or the
    starter's stdin and stdout)."""

    requests: int
    replies: int
    pending: bytes = b""
    reading: bool = True
    open: bool = True


def file_times(paths: list[str]) -> dict[str, int]:
    """The modification time of each file or folder (-1 for one that is gone)."""
    times = {}
    for path in paths:
        try:
            times[path] = os.stat(path).st_mtime_ns
        except OSError:
            times[path] = -1
    return times


class Starter:
    def __init__(self, listener: socket.socket | None = None, keep_seconds: float = 0) -> None:
        self.imported: dict[str, str | None] = {}  # script -> None, or why it failed
        self.preloads: list[tuple[Connection, str]] = []  # imports to make while idle
        self.connections: dict[int, Connection] = {}  # requests fd -> caller
        self.children: dict[int, tuple[Connection, int]] = {}  # pid -> caller, request id
        self.listener = listener
        self.keep_seconds = keep_seconds
        self.own_path = ""  # the listener's socket path while it is ours (`own_inode`)
        self.own_inode = -1
        self.served = 0
        self.greeting: dict[str, Any] = {}
        self.seen: dict[str, int] = {}  # file -> its time when it was imported (`stale`)
        self.wake_read, self.wake_write = os.pipe()
        for fd in (self.wake_read, self.wake_write):
            os.set_blocking(fd, False)

    def add(self, connection: Connection) -> None:
        self.connections[connection.requests] = connection

    def send(self, connection: Connection, message: dict[str, Any]) -> None:
        if not connection.open:
            return
        data = (json.dumps(message) + "\n").encode()
        try:
            while data:
                data = data[os.write(connection.replies, data) :]
        except OSError:  # the caller is gone: the ends of its children are no one's news
            self.drop(connection)

    def drop(self, connection: Connection) -> None:
        connection.open = connection.reading = False
        self.connections.pop(connection.requests, None)
        for fd in {connection.requests, connection.replies}:
            with contextlib.suppress(OSError):
                os.close(fd)

    def remember_files(self) -> None:
        """Note the times of the files behind what is imported now, for `stale`: every
        module's file, and the folders where packages are installed (an installed or removed
        package changes them). Not the other folders of `sys.path`: a project's folder
        changes with every file written there, and its modules are checked one by one."""
        paths = [path for path in sys.path[1:] if os.path.basename(path) in PACKAGE_FOLDERS]
        for module in list(sys.modules.values()):
            path = getattr(module, "__file__", None)
            if isinstance(path, str):
                paths.append(path)
        self.seen.update(file_times([path for path in paths if path not in self.seen]))

    def stale(self) -> str | None:
        """Why what this starter imported may not be what a fresh interpreter imports."""
        for path, mtime in file_times(list(self.seen)).items():
            if mtime != self.seen[path]:
                return f"{path} changed since the starter imported it"
        return None

    def load(self, script: str) -> dict[str, Any]:
        """Import the script (once): its module and import time, or why it failed."""
        # As for `python <script>`: the script's folder first (not this file's, which is ours).
        sys.path[0] = os.path.dirname(script)
        sys.argv = [script]
        began = time.perf_counter()
        try:
            name = import_script(script)
        except BaseException as error:
            traceback.print_exc()
            reason = "".join(traceback.format_exception_only(type(error), error)).strip()
            self.imported[script] = f"importing {script} failed: {reason}"
            return {"error": self.imported[script]}
        finally:
            if self.listener is not None:
                self.remember_files()
        self.imported[script] = None
        return {"module": name, "seconds": round(time.perf_counter() - began, 3)}

    def preload(self, connection: Connection, script: str) -> None:
        """Import a script of a later task ahead of its calls (its outcome is said then)."""
        if os.path.realpath(script) not in self.imported:
            loaded = self.load(os.path.realpath(script))
            if "module" in loaded:
                self.send(connection, {"preloaded": script, **loaded})

    def own_fds(self) -> set[int]:
        """The starter's own file descriptors, which a child closes."""
        fds = {self.wake_read, self.wake_write}
        for connection in self.connections.values():
            fds |= {connection.requests, connection.replies}
        if self.listener is not None:
            fds.add(self.listener.fileno())
        return fds

    def fork(self, connection: Connection, request: dict[str, Any]) -> None:
        script = os.path.realpath(request["script"])
        if script not in self.imported:
            loaded = self.load(script)
            self.send(connection, {"id": request["id"], **loaded})
            if "error" in loaded:
                return
        elif self.imported[script] is not None:
            self.send(connection, {"id": request["id"], "error": self.imported[script]})
            return
        sys.stdout.flush()
        sys.stderr.flush()
        # What the imports made is left out of every child's garbage collections, which would
        # otherwise write to (and so copy) the pages it shares with the starter (the `gc`
        # documentation's advice for fork without exec, with `gc.disable()` in `main`).
        gc.freeze()
        # The pid goes out once the child leads its own process group (killpg reaches it).
        in_group, child_in_group = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                gc.enable()  # as in a fresh interpreter
                os.setsid()
                os.close(child_in_group)
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                for fd in self.own_fds() | {in_group}:
                    os.close(fd)
                code = run_child(request, script)
            except BaseException:
                traceback.print_exc()
            finally:
                for stream in (sys.stdout, sys.stderr):
                    with contextlib.suppress(Exception):
                        stream.flush()
                os._exit(code)
        os.close(child_in_group)
        os.read(in_group, 1)  # end of file: the child closed its end after setsid
        os.close(in_group)
        self.children[pid] = (connection, request["id"])
        self.send(connection, {"id": request["id"], "pid": pid})

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.children:
                connection, request_id = self.children.pop(pid)
                code = os.waitstatus_to_exitcode(status)
                self.send(connection, {"id": request_id, "status": code})

    def read(self, connection: Connection) -> None:
        try:
            data = os.read(connection.requests, READ_SIZE)
        except OSError:
            data = b""
        connection.reading = bool(data)
        connection.pending += data
        *lines, connection.pending = connection.pending.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            message = json.loads(line)
            if "preload" in message:
                self.preloads.extend((connection, script) for script in message["preload"])
            else:
                self.fork(connection, message)

    # -- a kept starter's socket --

    def listen(self, path: str) -> None:
        """Take the socket's name, from any earlier starter (a dead one leaves it behind)."""
        assert self.listener is not None
        bound = f"{path}.{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(bound)
        self.listener.bind(bound)
        self.listener.listen(64)
        os.rename(bound, path)
        self.own_path, self.own_inode = path, os.stat(path).st_ino

    def owns_path(self) -> bool:
        try:
            return bool(self.own_path) and os.stat(self.own_path).st_ino == self.own_inode
        except OSError:
            return False

    def stop_listening(self) -> None:
        """No new caller finds this starter (those already in its backlog are served)."""
        if self.owns_path():
            with contextlib.suppress(OSError):
                os.unlink(self.own_path)
        self.own_path = ""

    def caller_waiting(self) -> bool:
        return self.listener is not None and bool(select.select([self.listener], [], [], 0)[0])

    def accept(self) -> None:
        assert self.listener is not None
        try:
            caller, _ = self.listener.accept()
        except OSError:
            return
        caller.setblocking(True)
        fd = caller.detach()
        connection = Connection(fd, fd)
        self.add(connection)
        why = self.stale()
        if why is not None:
            self.stop_listening()  # first: the caller starts a starter under the same name
            self.send(connection, {"stale": why})
            self.drop(connection)
            return
        self.send(connection, {**self.greeting, "served": self.served})
        self.served += 1

    def refuse(self, seconds: float) -> None:
        """The first import failed: the callers of the next seconds learn why (the job
        process that started this one connects once it can, maybe after the failure)."""
        assert self.listener is not None
        deadline = time.monotonic() + seconds
        while select.select([self.listener], [], [], max(0.0, deadline - time.monotonic()))[0]:
            self.accept()
            for connection in list(self.connections.values()):
                self.drop(connection)
        self.stop_listening()

    def idle_timeout(self, idle_since: float) -> float | None:
        """How long `serve` may wait for news: None for ever, <= 0 when it is to end."""
        if self.connections or self.children:
            return None
        if not self.owns_path():
            return 0.0
        return idle_since + self.keep_seconds - time.monotonic()

    def serve(self) -> None:
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.set_wakeup_fd(self.wake_write)
        idle_since = time.monotonic()
        busy = False
        while True:
            timeout = self.idle_timeout(idle_since)
            if timeout is not None and timeout <= 0:
                self.stop_listening()
                if not self.caller_waiting():
                    return
                self.accept()  # it came just in time: it is served, then the starter ends
                continue
            watched = [self.wake_read]
            watched += [c.requests for c in self.connections.values() if c.reading]
            if self.listener is not None and self.owns_path():
                watched.append(self.listener.fileno())
            if self.preloads:
                timeout = 0  # a preload when nothing waits
            ready, _, _ = select.select(watched, [], [], timeout)
            if not ready and self.preloads:
                self.preload(*self.preloads.pop(0))
            if self.wake_read in ready:
                try:
                    while os.read(self.wake_read, READ_SIZE):
                        pass
                except OSError as error:
                    if error.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                        raise
            for connection in list(self.connections.values()):
                if connection.requests in ready:
                    self.read(connection)
            if self.listener is not None and self.listener.fileno() in ready:
                self.accept()
            self.reap()
            for connection in list(self.connections.values()):
                if not connection.reading and all(
                    caller is not connection for caller, _ in self.children.values()
                ):
                    self.drop(connection)  # it said all it had to, and heard all its news
            self.preloads = [(c, script) for c, script in self.preloads if c.open]
            if busy and not (self.connections or self.children):
                idle_since = time.monotonic()
            busy = bool(self.connections or self.children)


def end_without_teardown(code: int) -> NoReturn:
    """Exit without the interpreter's teardown of what the tasks imported (0.4-0.5 s for
    fractal-tasks-core, which the job's end would wait for): nothing is left to do."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def become_starter() -> None:
    """What the task prints while it is imported goes to stderr (the starter log), and it
    reads nothing; the starter's own protocol is on other file descriptors."""
    show_command_line([sys.executable, *sys.argv[:-1]])  # without the blank room
    gc.disable()  # no holes left in the pages that the children share (see `fork`)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)


def main(script: str) -> int:
    script = os.path.realpath(script)
    requests, replies = os.dup(0), os.dup(1)  # the protocol's private copies
    become_starter()
    starter = Starter()
    caller = Connection(requests, replies)
    starter.add(caller)
    loaded = starter.load(script)
    if "error" in loaded:
        starter.send(caller, loaded)
        return 1
    starter.send(caller, {"ready": True, **loaded})
    starter.serve()
    end_without_teardown(0)


def keep(socket_path: str, keep_seconds: float, script: str) -> int:
    """A kept starter: it serves job processes on the socket until idle for `keep_seconds`."""
    script = os.path.realpath(script)
    os.chdir(os.path.dirname(socket_path))  # not the folder of the job that started it
    become_starter()
    starter = Starter(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), keep_seconds)
    starter.listen(socket_path)
    loaded = starter.load(script)
    if "error" in loaded:
        starter.greeting = loaded
        starter.refuse(REFUSAL_SECONDS)
        return 1
    starter.greeting = {"ready": True, **loaded, "pid": os.getpid()}
    starter.serve()
    end_without_teardown(0)


if __name__ == "__main__":
    if sys.argv[1] == "--listen":
        sys.exit(keep(sys.argv[2], float(sys.argv[3]), sys.argv[4]))
    sys.exit(main(sys.argv[1]))
