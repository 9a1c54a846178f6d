"""How long a server with fractal_jupyter takes to start, until `fractal/api/alive/` answers.

    .venv/bin/python bench/startup.py --repeat 10 [--before DIR]

Times `jupyter server` with the extension enabled (as inside `jupyter lab`) and `jupyter
fractal`, each on a fresh SQLite database, from the process start to the first 200 of
`fractal/api/alive/`; and a CLI command that starts no server, `jupyter fractal --version`,
from its start to its end. With `--before DIR` (a copy of an older `fractal_jupyter` package, e.g.
`git archive <rev> fractal_jupyter | tar -x -C DIR`), the same runs with that package first on
PYTHONPATH, interleaved with ours so that the machine's drift hits both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    VENV_BIN,
    OurServer,
    latency_dict,
    progress,
    report_header,
    stop_on_signals,
    summarize,
)

COMMANDS = ("server", "fractal")
VERSION = "fractal --version"


class TimedServer(OurServer):
    """`jupyter <command>` with the extension, optionally with an older package first."""

    def __init__(self, command: str, package_root: Path | None) -> None:
        super().__init__()
        self.command = command
        self.package_root = package_root

    def _command(self) -> list[str]:
        command = super()._command()
        command[1] = self.command
        if self.command == "fractal":
            command.remove("--ServerApp.jpserver_extensions=fractal_jupyter=True")
        return command

    def _environment(self) -> dict[str, str]:
        environment = super()._environment()
        if self.package_root is not None:
            environment["PYTHONPATH"] = str(self.package_root)
        return environment


def start_seconds(command: str, package_root: Path | None) -> float:
    server = TimedServer(command, package_root)
    started = time.monotonic()
    try:
        server.start()
        return time.monotonic() - started
    finally:
        server.stop()


def command_seconds(package_root: Path | None) -> float:
    """`jupyter fractal --version`: the imports every CLI command makes before its work."""
    environment = dict(os.environ)
    if package_root is not None:
        environment["PYTHONPATH"] = str(package_root)
    started = time.monotonic()
    subprocess.run(
        [str(VENV_BIN / "jupyter"), "fractal", "--version"],
        env=environment,
        stdout=subprocess.DEVNULL,
        check=True,
    )
    return time.monotonic() - started


def link_seconds(repeat: int) -> dict[str, list[float]]:
    """In this process: linking the extension to a configured ServerApp, with the checks
    (ours) and as ExtensionApp links it (unchecked), the part of the start this change adds."""
    from jupyter_server.extension.application import ExtensionApp
    from jupyter_server.serverapp import ServerApp

    from fractal_jupyter import FractalJupyter

    argv = ["--FractalJupyter.runner_backend=local", "--FractalJupyter.admin_users=admin"]
    timings: dict[str, list[float]] = {"checked": [], "unchecked": []}
    for _ in range(repeat):
        for name, link in (
            ("checked", FractalJupyter._link_jupyter_server_extension),
            ("unchecked", ExtensionApp._link_jupyter_server_extension),
        ):
            serverapp = ServerApp()
            serverapp.parse_command_line(argv)
            serverapp.load_config_file()
            app = FractalJupyter()
            started = time.perf_counter()
            link(app, serverapp)
            timings[name].append(time.perf_counter() - started)
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--before", type=Path, help="folder holding an older fractal_jupyter")
    args = parser.parse_args(argv)
    stop_on_signals()
    variants: dict[str, Path | None] = {"ours": None}
    if args.before is not None:
        variants["before"] = args.before.resolve()
    seconds: dict[str, list[float]] = {
        f"{name} {command}": [] for name in variants for command in (*COMMANDS, VERSION)
    }
    for round_number in range(1, args.repeat + 1):
        for command in (*COMMANDS, VERSION):
            for name, root in variants.items():
                if command == VERSION:
                    elapsed = command_seconds(root)
                else:
                    elapsed = start_seconds(command, root)
                seconds[f"{name} {command}"].append(elapsed)
                progress(f"round {round_number}: {name} jupyter {command}: {elapsed:.2f} s")
    report = report_header("bench/startup.py", argv or sys.argv[1:], peer="")
    report["load_average"] = os.getloadavg()
    report["jupyter"] = str(VENV_BIN / "jupyter")
    report["start_seconds"] = {
        key: latency_dict(summarize(values)) for key, values in seconds.items()
    }
    report["link_seconds"] = {
        name: latency_dict(summarize(values)) for name, values in link_seconds(50).items()
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
