"""`jupyter fractal collect PACKAGE`: collect a task package and show how it goes."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ..client import FractalClient
from ..schemas.task_collection import CollectionStateRead
from .base import (
    EXIT_FAILURE,
    EXIT_OK,
    CommandApp,
    add_server_options,
    connect,
    new_parser,
    print_json,
)

ENDED = ("OK", "fail")


def package_argument(package: str) -> str:
    """A wheel given by a relative path is sent as its absolute path, as the route wants."""
    if package.endswith(".whl") and Path(package).exists():
        return str(Path(package).resolve())
    return package


def pins(given: list[str]) -> dict[str, str] | None:
    if not given:
        return None
    pinned = {}
    for pin in given:
        name, equals, version = pin.partition("=")
        if not equals or not name.strip() or not version.strip():
            raise argparse.ArgumentTypeError(f"--pin {pin!r}: write it as NAME=VERSION")
        pinned[name.strip()] = version.strip()
    return pinned


def pin(text: str) -> str:
    pins([text])
    return text


class CollectionProgress:
    """Prints a collection's status changes and its log as they come."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.status: str | None = None
        self.log = ""
        self.started = time.monotonic()

    def show(self, data: dict[str, Any]) -> None:
        if self.quiet:
            return
        status = str(data.get("status"))
        if status != self.status:
            elapsed = time.monotonic() - self.started
            print(f"[{elapsed:5.1f} s] {status}", flush=True)
            self.status = status
        log = str(data.get("log") or "")
        # A log that does not continue the shown one is shown whole.
        new = log[len(self.log) :] if log.startswith(self.log) else log
        if new:
            sys.stdout.write("".join(f"    {line}\n" for line in new.splitlines()))
            sys.stdout.flush()
        self.log = log


def collect(
    client: FractalClient,
    arguments: argparse.Namespace,
    progress: CollectionProgress,
) -> CollectionStateRead:
    state = client.collect_tasks_pip(
        package_argument(arguments.package),
        package_version=arguments.package_version,
        package_extras=arguments.extras,
        python_version=arguments.python_version,
        pinned_package_versions=pins(arguments.pin),
    )
    if not progress.quiet:
        print(f"Collecting {state.data.get('package')} (task collection {state.id})", flush=True)
    while True:
        state = client.get_collection_state(state.id, verbose=True)
        progress.show(state.data)
        if state.data.get("status") in ENDED:
            return state
        time.sleep(arguments.interval)


class CollectApp(CommandApp):
    name = "jupyter-fractal-collect"
    command = "collect"
    description = "Collect a task package (PyPI name or local wheel) and follow the collection."

    def build_parser(self) -> argparse.ArgumentParser:
        parser = new_parser(
            self.command,
            "Collect a task package into the running server (POST api/v2/task/collect/pip/): "
            "a package on PyPI by its name, or a local wheel by its path. Shows the "
            "collection's status and log as they come, then one line: how it ended.",
            "the collection failed (the last line says why), or the server refused the request",
        )
        parser.add_argument("package", help="a package name (fractal-tasks-core) or a .whl path")
        parser.add_argument("--package-version", help="the version to install (not for a wheel)")
        parser.add_argument("--extras", help="extras to install, comma-separated")
        parser.add_argument(
            "--python-version", help="Python of the task venv, e.g. 3.11 (default: the server's)"
        )
        parser.add_argument(
            "--pin",
            action="append",
            default=[],
            type=pin,
            metavar="NAME=VERSION",
            help="pin a dependency to a version (repeat for more)",
        )
        parser.add_argument(
            "--interval",
            type=float,
            default=0.5,
            help="seconds between two looks at the collection (default: 0.5)",
        )
        add_server_options(parser)
        return parser

    def run(self) -> int:
        progress = CollectionProgress(quiet=self.json_output)
        with connect(self.arguments) as client:
            state = collect(client, self.arguments, progress)
        data = state.data
        ok = data.get("status") == "OK"
        if self.json_output:
            print_json(state)
        elif ok:
            names = ", ".join(str(task.get("name")) for task in data.get("task_list", []))
            print(f"OK: {data.get('package')}: {data.get('info')}: {names}")
        else:
            print(f"FAILED: collection of {data.get('package')}: {data.get('info')}")
        return EXIT_OK if ok else EXIT_FAILURE
