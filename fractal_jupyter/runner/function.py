"""Run a notebook function as a Fractal task.

    <python> -m fractal_jupyter.runner.function <function file> --args-json A --out-json B

`FractalClient.register_function` writes the function file: a first line `FRACTAL-FUNCTION 1`,
a line of JSON (the header: which Python pickled it, which runner arguments the function takes,
which part of a task it is), then the function pickled with cloudpickle. This module loads it,
calls the function with the task's arguments and writes what it returns as the task's output.

It imports only the standard library and cloudpickle (pydantic too when it is there, to validate
and convert the arguments as the function's type hints say), so that it runs in any interpreter
that can unpickle the function. What stops it from running (another Python version than the one
that pickled, a module the function needs and this interpreter lacks, a return value that is not a
task output) ends the process with exit status 2 and one message saying what to do; an exception
raised by the function itself ends it with its traceback, like any task's.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

MAGIC = b"FRACTAL-FUNCTION 1\n"
# A function task's command is `<python> -m RUNNER_MODULE <function file>` (client/functions.py).
RUNNER_MODULE = "fractal_jupyter.runner.function"

# What each part of a task may return (fractal-server's TaskOutput and InitTaskOutput).
TASK_OUTPUT_KEYS = frozenset({"image_list_updates", "image_list_removals", "filters"})
INIT_OUTPUT_KEYS = frozenset({"parallelization_list"})
PARTS = ("parallel", "non_parallel", "init", "compute")


class FunctionError(Exception):
    """The function cannot be run here, or what it returned is not a task output."""


def python_version() -> str:
    return "{}.{}.{}".format(*sys.version_info[:3])


def write_function_file(path: Path, header: dict[str, Any], payload: bytes) -> None:
    """Write a function file once: an existing file is never replaced (jobs may be using it)."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with open(partial, "wb") as stream:
        stream.write(MAGIC)
        stream.write(json.dumps(header, sort_keys=True).encode() + b"\n")
        stream.write(payload)
    os.replace(partial, path)


def function_file_of(argv: Sequence[str]) -> str | None:
    """The function file that a task command (split into words) runs, if it runs one."""
    if len(argv) == 4 and argv[1:3] == ["-m", RUNNER_MODULE]:
        return argv[3]
    return None


def read_function_file(path: Path) -> tuple[dict[str, Any], bytes]:
    try:
        with open(path, "rb") as stream:
            magic = stream.readline()
            header_line = stream.readline()
            payload = stream.read()
    except OSError as error:
        raise FunctionError(f"cannot read the function file {path}: {error}") from None
    if magic != MAGIC:
        raise FunctionError(f"{path} is not a function file written by register_function")
    try:
        header: dict[str, Any] = json.loads(header_line)
    except ValueError:
        raise FunctionError(f"{path} has a broken header") from None
    return header, payload


def load_function(path: Path) -> tuple[dict[str, Any], Callable[..., Any]]:
    """The header and the function of a function file, or a FunctionError saying why not."""
    header, payload = read_function_file(path)
    name = header.get("name", "the function")
    pickled_by = str(header.get("python", "?"))
    if pickled_by.split(".")[:2] != [str(part) for part in sys.version_info[:2]]:
        raise FunctionError(
            f"{name} was pickled by Python {pickled_by} ({header.get('python_executable')}), "
            f"but this task runs {sys.executable}, Python {python_version()}: a pickled "
            "function only loads in the same minor version. Register it again with "
            "python=<an interpreter of that version on the machines that run the task>."
        )
    try:
        import cloudpickle  # type: ignore[import-untyped]
    except ImportError:
        raise FunctionError(
            f"{sys.executable} cannot import cloudpickle, which loads {name}: install it there "
            "or register the function with python=<an interpreter that has it>"
        ) from None
    try:
        function = cloudpickle.loads(payload)
    except ModuleNotFoundError as error:
        raise FunctionError(
            f"{name} needs the module {error.name!r}, which {sys.executable} cannot import: "
            "install it in that environment, or register the function with "
            "python=<an interpreter that has it>"
        ) from None
    except Exception as error:
        raise FunctionError(f"{name} cannot be unpickled here: {error!r}") from None
    if not callable(function):
        raise FunctionError(f"{path} holds {type(function).__name__}, not a function")
    return header, function


def check_output(result: Any, part: str) -> dict[str, Any] | None:
    """What the function returned as the JSON of a task output, or a FunctionError."""
    if result is None:
        return None
    allowed = INIT_OUTPUT_KEYS if part == "init" else TASK_OUTPUT_KEYS
    expected = (
        "None or a dict with the key parallelization_list (a list of "
        '{"zarr_url": ..., "init_args": {...}})'
        if part == "init"
        else "None or a dict with some of the keys image_list_updates (a list of "
        '{"zarr_url": ..., "attributes": {...}, "types": {...}}), image_list_removals '
        '(a list of zarr_urls) and filters ({"attributes": {...}, "types": {...}})'
    )
    if not isinstance(result, dict):
        raise FunctionError(
            f"the function returned {type(result).__name__}; a task returns {expected}"
        )
    unknown = sorted(str(key) for key in result if key not in allowed)
    if unknown:
        raise FunctionError(
            f"the function returned the key(s) {', '.join(unknown)}; a task returns {expected}"
        )
    try:
        json.dumps(result)
    except (TypeError, ValueError) as error:
        raise FunctionError(
            f"what the function returned is not JSON ({error}): use plain Python values "
            "(e.g. float(x) for a numpy number)"
        ) from None
    return result


def _arguments(header: dict[str, Any], args_path: Path) -> dict[str, Any]:
    arguments: dict[str, Any] = json.loads(args_path.read_text())
    # The runner passes every standard argument of the task's kind; the function may not
    # declare all of them (e.g. `zarr_dir` of a non-parallel task).
    for name in header.get("dropped_arguments", []):
        arguments.pop(name, None)
    return arguments


def _validated(function: Callable[..., Any]) -> Callable[..., Any]:
    """The function with its arguments validated and converted as its type hints say, when
    pydantic is there (the arguments were checked against the schema already)."""
    try:
        from pydantic import validate_call
    except ImportError:
        return function
    try:
        return validate_call(function)
    except Exception:  # a hint pydantic cannot use here: call the function as it is
        return function


def run(function_file: Path, args_path: Path, out_path: Path) -> None:
    header, function = load_function(function_file)
    part = str(header.get("part", "parallel"))
    arguments = _arguments(header, args_path)
    result = _validated(function)(**arguments)
    output = check_output(result, part)
    if output is not None:
        out_path.write_text(json.dumps(output))


def _parse(argv: Sequence[str]) -> tuple[Path, Path, Path]:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m fractal_jupyter.runner.function",
        description="Run a function registered with FractalClient.register_function.",
    )
    parser.add_argument("function_file", type=Path)
    parser.add_argument("--args-json", required=True, type=Path)
    parser.add_argument("--out-json", required=True, type=Path)
    options = parser.parse_args(argv)
    return options.function_file, options.args_json, options.out_json


def main(argv: Sequence[str] | None = None) -> int:
    function_file, args_path, out_path = _parse(sys.argv[1:] if argv is None else argv)
    try:
        run(function_file, args_path, out_path)
    except FunctionError as error:
        print(f"fractal function: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
