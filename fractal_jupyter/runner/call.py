"""One task call: a process `<command> --args-json A --out-json B`, its log, its output."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from ..commands import split_command
from .batching import BatchingError, parse_mem
from .interface import JSON, TaskCall, TaskFailed
from .warm import StarterDied, WarmStarters

LOG_TAIL_BYTES = 4_000


def log_tail(path: Path, limit: int = LOG_TAIL_BYTES) -> str:
    """The end of a log file (where the traceback is)."""
    try:
        with path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            size = log.tell()
            log.seek(max(0, size - limit))
            text = log.read().decode(errors="replace")
    except OSError:
        return ""
    return text if size <= limit else "[...]\n" + text


def call_paths(job_dir: Path, call: TaskCall) -> tuple[Path, Path, Path]:
    folder = job_dir / call.folder
    return (
        folder / f"{call.prefix}.args.json",
        folder / f"{call.prefix}.metadiff.json",
        folder / f"{call.prefix}.log",
    )


def command_line(call: TaskCall, args_path: Path, out_path: Path) -> list[str]:
    try:
        argv = split_command(call.command)
    except ValueError as error:
        raise TaskFailed(call, f"invalid command {call.command!r}: {error}") from None
    if shutil.which(argv[0]) is None:
        raise TaskFailed(call, f"command {call.command!r} is not valid: {argv[:1]} not found")
    return [*argv, "--args-json", str(args_path), "--out-json", str(out_path)]


def read_output(call: TaskCall, out_path: Path, log_path: Path) -> JSON | None:
    """The task's output: None when it wrote nothing, `{}` or `null`."""
    try:
        text = out_path.read_text()
    except FileNotFoundError:
        return None
    if not text.strip():
        return None
    try:
        output = json.loads(text)
    except json.JSONDecodeError as error:
        raise TaskFailed(
            call, f"the task wrote malformed JSON to {out_path.name}: {error}", log_tail(log_path)
        ) from None
    if output is None or output == {}:
        return None
    if not isinstance(output, dict):
        raise TaskFailed(
            call,
            f"the task wrote {type(output).__name__} to {out_path.name}, not a JSON object",
            log_tail(log_path),
        )
    return output


# What points a Python at the server's own packages: a task runs with its own interpreter.
_SERVER_PYTHON_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")


def task_environment() -> dict[str, str]:
    """The job process's environment without what would make a task import the server's
    packages ahead of those of its own venv (a task package pins its own numpy, zarr...)."""
    return {
        name: value for name, value in os.environ.items() if name not in _SERVER_PYTHON_VARIABLES
    }


MEMORY_LIMIT_KEY = "address_space_limit"


def memory_limit(call: TaskCall) -> int | None:
    """The call's `meta.address_space_limit` (MB, or `<n>M`/`<n>G`/`<n>T`) in bytes: the
    RLIMIT_AS of its process on every backend, warm or spawned (None: no limit)."""
    value = call.meta.get(MEMORY_LIMIT_KEY)
    if value is None:
        return None
    try:
        megabytes = parse_mem(value)
    except BatchingError as error:
        raise TaskFailed(call, f"meta.{MEMORY_LIMIT_KEY}: {error}") from None
    if megabytes <= 0:
        raise TaskFailed(call, f"meta.{MEMORY_LIMIT_KEY} must be positive, not {value!r}")
    return megabytes * 1024 * 1024


def spawn(
    argv: list[str], log_path: Path, limit: int | None, started: Callable[[int], None]
) -> int:
    """A new process for the call; its exit status as `Popen.returncode` gives it."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop kills the task's children too
            env=task_environment(),
        )
    if limit is not None:
        # Set from here, not in a preexec_fn (unsafe with threads): the interpreter that the
        # process has just exec'd is still starting up when the limit is in place.
        with contextlib.suppress(ProcessLookupError):  # it already ended
            resource.prlimit(process.pid, resource.RLIMIT_AS, (limit, limit))
    started(process.pid)
    return process.wait()


def run_call(
    job_dir: Path,
    call: TaskCall,
    started: Callable[[int], None] = lambda pid: None,
    starters: WarmStarters | None = None,
) -> JSON | None:
    """Run one call to its end, warm when `starters` can, else in a new process; `started`
    learns the pid of the call's process (its own process group, so that it can be stopped)."""
    args_path, out_path, log_path = call_paths(job_dir, call)
    args_path.parent.mkdir(parents=True, exist_ok=True)
    args_path.write_text(json.dumps(call.args, indent=2))
    argv = command_line(call, args_path, out_path)
    limit = memory_limit(call)
    returncode = None
    if starters is not None:
        try:
            returncode = starters.run(call, argv, log_path, limit, started)
        except StarterDied as error:
            raise TaskFailed(call, str(error), log_tail(log_path)) from None
    if returncode is None:
        returncode = spawn(argv, log_path, limit, started)
    if returncode < 0:
        name = signal.Signals(-returncode).name
        raise TaskFailed(call, f"the task process was killed by {name}", log_tail(log_path))
    if returncode > 0:
        raise TaskFailed(call, f"the task exited with code {returncode}", log_tail(log_path))
    return read_output(call, out_path, log_path)
