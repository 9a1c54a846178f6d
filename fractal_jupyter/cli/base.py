"""What the `jupyter fractal` commands share: argparse command lines, exit codes, errors.

A command is a `JupyterApp` (so `jupyter fractal` finds it among its subcommands) whose
command line is parsed by argparse: `--help` documents the options and the exit codes, and a
usage error exits with 2. `run` returns the exit code; the errors of the client become one
clear line on stderr (and, with `--json`, `{"error": ..., "exit_code": ...}` on stdout).
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from typing import Any, ClassVar

from jupyter_core.application import JupyterApp
from pydantic import BaseModel

from .._version import __version__
from ..client import (
    FractalAPIError,
    FractalClient,
    FractalConnectionError,
    FractalUnavailable,
    ServerNotFound,
)

EXIT_OK = 0
EXIT_FAILURE = 1  # the job or collection failed, the server or database refused
EXIT_USAGE = 2  # a bad option or argument (argparse's own code)
EXIT_NO_SERVER = 3  # no running Jupyter server found, or it cannot be reached

EXIT_CODES = """exit codes:
  0  success
  1  failure: {failure}
  2  usage error: an unknown option or a bad argument"""
NO_SERVER_EXIT_CODE = "\n  3  no running Jupyter server found, or it cannot be reached"

HELP_WIDTH = 79


class CommandFailed(Exception):
    """The command cannot do what was asked: the message for the user and the exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def detail_text(detail: Any) -> str:
    """The server's `detail`: a sentence, or FastAPI-shaped problems one after the other."""
    if isinstance(detail, list):
        problems = []
        for problem in detail:
            if isinstance(problem, dict) and "msg" in problem:
                where = ".".join(str(part) for part in problem.get("loc", ()) if part != "body")
                problems.append(f"{where}: {problem['msg']}" if where else str(problem["msg"]))
            else:
                problems.append(str(problem))
        return "; ".join(problems)
    return str(detail)


def as_json(value: Any) -> Any:
    """JSON data of a model, a list of models or plain data."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [as_json(item) for item in value]
    return value


def print_json(value: Any) -> None:
    print(json.dumps(as_json(value), indent=2))


def new_parser(
    command: str,
    description: str,
    failure: str,
    *,
    needs_server: bool = True,
    json_option: bool = True,
) -> argparse.ArgumentParser:
    """The command line of `jupyter fractal <command>`, with `--json` and the exit codes."""
    failure = textwrap.fill(failure, HELP_WIDTH, subsequent_indent=" " * 5)
    epilog = EXIT_CODES.format(failure=failure) + (NO_SERVER_EXIT_CODE if needs_server else "")
    parser = argparse.ArgumentParser(
        prog=f"jupyter fractal {command}",
        description=textwrap.fill(description, HELP_WIDTH),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if json_option:
        parser.add_argument(
            "--json", action="store_true", help="print the result as JSON on stdout (one document)"
        )
    return parser


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """`--url` and `--token`: by default the running server is found from jupyter_server's
    runtime files (or JupyterHub's variables), as `FractalClient()` finds it."""
    group = parser.add_argument_group(
        "server",
        textwrap.fill(
            "Without --url, the running Jupyter server is found by itself: JupyterHub's "
            "variables, else jupyter_server's runtime files (jpserver-*.json); with several "
            "servers, the one whose root folder holds the current folder.",
            HELP_WIDTH,
        ),
    )
    group.add_argument("--url", help="the Jupyter server's URL with its base URL")
    group.add_argument("--token", help="a Jupyter or JupyterHub token, or a Fractal bearer token")


def alive_answer(client: FractalClient) -> dict[str, Any] | None:
    """`api/alive/`'s answer; None where no Fractal answers: Jupyter without the extension
    answers 404, or a redirect. A 503 (Fractal there, not serving) is raised."""
    try:
        alive = client.call("GET", "api/alive/")
    except FractalAPIError as error:
        if error.status != 404 or isinstance(error, FractalUnavailable):
            raise
        return None
    return alive if isinstance(alive, dict) and alive.get("alive") is True else None


def not_loaded(client: FractalClient) -> str:
    return (
        f"the Jupyter server at {client.url} does not serve Fractal: the fractal_jupyter "
        "extension is not loaded (`jupyter server extension list` shows it)"
    )


def connect(arguments: argparse.Namespace, check: bool = True) -> FractalClient:
    """A client of the server the command line names, or of the running one; with `check`,
    refused (exit 1) unless that server serves Fractal."""
    try:
        client = FractalClient(url=arguments.url, token=arguments.token)
    except ServerNotFound as error:
        message = str(error).replace("FractalClient(url=..., token=...)", "--url URL --token T")
        raise CommandFailed(message, EXIT_NO_SERVER) from error
    if check and alive_answer(client) is None:
        client.close()
        raise CommandFailed(not_loaded(client))
    return client


class CommandApp(JupyterApp):
    """A `jupyter fractal <command>` with an argparse command line (see the module doc)."""

    version = __version__
    command: ClassVar[str]
    parser: argparse.ArgumentParser
    arguments: argparse.Namespace

    def build_parser(self) -> argparse.ArgumentParser:
        """The command's options; every command (status, jobs, collect, db) defines its own.

        Not an `abc.abstractmethod`: JupyterApp's traitlets metaclass cannot be mixed with
        ABCMeta, so a command that forgot it fails here, at its first use."""
        raise NotImplementedError(f"{type(self).__name__} defines no options")

    def run(self) -> int:
        """Do the command and return its exit code; every command defines its own."""
        raise NotImplementedError(f"{type(self).__name__} defines no run()")

    def initialize(self, argv: Any = None) -> None:
        # argparse prints --help and exits 0, or prints a usage error and exits 2.
        self.parser = self.build_parser()
        self.arguments = self.parser.parse_args(list(argv or []))

    @property
    def json_output(self) -> bool:
        return bool(getattr(self.arguments, "json", False))

    def start(self) -> None:
        try:
            exit_code = self.run()
        except CommandFailed as error:
            exit_code = self.report(str(error), error.exit_code)
        except FractalConnectionError as error:
            exit_code = self.report(
                f"{error}. Is the Jupyter server still running?", EXIT_NO_SERVER
            )
        except FractalUnavailable as error:
            # The server's message says why and what to do (a setting, the database).
            exit_code = self.report(detail_text(error.detail), EXIT_FAILURE)
        except FractalAPIError as error:
            reason = detail_text(error.detail)
            exit_code = self.report(
                f"the server refused {error.method} {error.url} ({error.status}): {reason}",
                EXIT_FAILURE,
            )
        except KeyboardInterrupt:
            exit_code = 130
        self.exit(exit_code)

    def report(self, message: str, exit_code: int) -> int:
        print(f"jupyter fractal {self.command}: {message}", file=sys.stderr)
        if self.json_output:
            print_json({"error": message, "exit_code": exit_code})
        return exit_code
