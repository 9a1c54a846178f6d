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
import sys
import time
import traceback
from typing import Any

READ_SIZE = 65536
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


class Starter:
    def __init__(self, requests: int, replies: int) -> None:
        self.imported: dict[str, str | None] = {}  # script -> None, or why it failed
        self.preloads: list[str] = []  # scripts to import while no request waits
        self.requests = requests
        self.replies = replies
        self.children: dict[int, int] = {}  # pid -> request id
        self.wake_read, self.wake_write = os.pipe()
        for fd in (self.wake_read, self.wake_write):
            os.set_blocking(fd, False)

    def send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message) + "\n").encode()
        while data:
            data = data[os.write(self.replies, data) :]

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
        self.imported[script] = None
        return {"module": name, "seconds": round(time.perf_counter() - began, 3)}

    def preload(self, script: str) -> None:
        """Import a script of a later task ahead of its calls (its outcome is said then)."""
        if os.path.realpath(script) not in self.imported:
            loaded = self.load(os.path.realpath(script))
            if "module" in loaded:
                self.send({"preloaded": script, **loaded})

    def fork(self, request: dict[str, Any]) -> None:
        script = os.path.realpath(request["script"])
        if script not in self.imported:
            loaded = self.load(script)
            self.send({"id": request["id"], **loaded})
            if "error" in loaded:
                return
        elif self.imported[script] is not None:
            self.send({"id": request["id"], "error": self.imported[script]})
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
                for fd in (in_group, self.requests, self.replies, self.wake_read, self.wake_write):
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
        self.children[pid] = request["id"]
        self.send({"id": request["id"], "pid": pid})

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.children:
                code = os.waitstatus_to_exitcode(status)
                self.send({"id": self.children.pop(pid), "status": code})

    def serve(self) -> None:
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.set_wakeup_fd(self.wake_write)
        pending = b""
        reading = True
        while reading or self.children:
            watched = [self.wake_read, *([self.requests] if reading else [])]
            idle = 0 if reading and self.preloads else None  # a preload when nothing waits
            ready, _, _ = select.select(watched, [], [], idle)
            if not ready and self.preloads:
                self.preload(self.preloads.pop(0))
            if self.wake_read in ready:
                try:
                    while os.read(self.wake_read, READ_SIZE):
                        pass
                except OSError as error:
                    if error.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                        raise
            if self.requests in ready:
                data = os.read(self.requests, READ_SIZE)
                reading = bool(data)
                pending += data
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    message = json.loads(line)
                    if "preload" in message:
                        self.preloads.extend(message["preload"])
                    else:
                        self.fork(message)
            self.reap()


def main(script: str) -> int:
    show_command_line([sys.executable, *sys.argv[:-1]])  # without the blank room
    gc.disable()  # no holes left in the pages that the children share (see `fork`)
    script = os.path.realpath(script)
    # The protocol gets private copies of stdin and stdout; what the task prints while it is
    # imported goes to stderr (the starter log), and it reads nothing.
    requests, replies = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    starter = Starter(requests, replies)
    loaded = starter.load(script)
    if "error" in loaded:
        starter.send(loaded)
        return 1
    starter.send({"ready": True, **loaded})
    starter.serve()
    # Its children have ended and nothing is left to do: skip the interpreter's teardown of
    # what the tasks imported (0.4-0.5 s for fractal-tasks-core), which the job's end waits for.
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
