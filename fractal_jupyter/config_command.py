"""`jupyter fractal config check`: the configuration as the server would load it, checked.

It takes the same command line as `jupyter fractal` / `jupyter lab` (e.g.
`--FractalJupyter.db_url=...`), loads the same configuration files the same way (a ServerApp
parses the command line and its files, then the extension links to it, as in a real start),
prints every FractalJupyter setting with its value and where it came from, runs the start-up
checks (the database, the SLURM commands, the SSH login node) and exits with 1 on any problem.
"""

from __future__ import annotations

from copy import deepcopy
from typing import TYPE_CHECKING, Any

from jupyter_core.application import JupyterApp
from traitlets.config import Config

from ._version import __version__
from .configuration import (
    DEFAULT_SOURCE,
    check_outside_world,
    configuration_layers,
    setting_sources,
    shown_value,
)

if TYPE_CHECKING:
    from jupyter_server.serverapp import ServerApp

    from .app import FractalJupyter


def configured_as_server(argv: list[str], log: Any) -> tuple[FractalJupyter, ServerApp]:
    """The extension configured from `argv` and the configuration files as a server start
    would configure it (its `configuration_error` says what could not be applied)."""
    from jupyter_server.serverapp import ServerApp

    from .app import FractalJupyter

    serverapp = ServerApp(log=log)
    # What JupyterApp.initialize does for the server (without migrating old IPython files).
    serverapp.parse_command_line(argv)
    command_line = deepcopy(serverapp.config)
    serverapp.load_config_file()
    serverapp.update_config(command_line)
    fractal = FractalJupyter(log=log)
    fractal._link_jupyter_server_extension(serverapp)
    return fractal, serverapp


class ConfigCheckApp(JupyterApp):
    name = "jupyter-fractal-config-check"
    version = __version__
    description = """Check the FractalJupyter configuration as the server would load it.

    Prints every setting with its value and where it comes from (default, a config file,
    the command line), runs the start-up checks and exits non-zero on any problem.
    Give it the options you give the server.
    """
    examples = """jupyter fractal config check
jupyter fractal config check --FractalJupyter.runner_backend=slurm
"""

    server_argv: list[str]

    def initialize(self, argv: Any = None) -> None:
        # The command line is the server's: a ServerApp parses it in `start`.
        self.server_argv = list(argv or [])
        if {"-h", "--help", "--help-all"} & set(self.server_argv):
            print(self.description)
            self.print_examples()
            print("Any other option is taken as the server's (`jupyter server --help-all`).")
            self.exit(0)

    def start(self) -> None:
        from .app import FractalJupyter

        fractal, serverapp = configured_as_server(self.server_argv, self.log)
        error = fractal.configuration_error
        layers = configuration_layers(fractal, serverapp)
        sources = setting_sources(layers)
        given: dict[str, Any] = {}
        for layer in layers:
            given.update(layer.values)
        print("FractalJupyter settings (value, where it comes from):")
        for name in sorted(FractalJupyter.class_own_traits(config=True)):
            # A configuration that was not applied is shown as it was given.
            value = given[name] if error is not None and name in given else getattr(fractal, name)
            source = sources.get(name, DEFAULT_SOURCE)
            print(f"  {name} = {shown_value(name, _plain(value))!r}  [{source}]")
        problems = list(error.problems) if error is not None else []
        if not problems:
            problems = check_outside_world(fractal, fractal.startup_timeout)
        if problems:
            print(f"\n{len(problems)} problem(s); Fractal would not serve on this configuration:")
            for problem in problems:
                print(f"  - {problem}")
            self.exit(1)
        print("\nOK: the configuration applies and the start-up checks pass.")


def _plain(value: Any) -> Any:
    """Config values from the command line are traitlets' deferred strings and lists."""
    if isinstance(value, Config):
        return dict(value)
    if isinstance(value, list):
        return [str(item) if isinstance(item, str) else item for item in value]
    return str(value) if isinstance(value, str) else value


class ConfigApp(JupyterApp):
    name = "jupyter-fractal-config"
    version = __version__
    description = "The FractalJupyter configuration: `jupyter fractal config check`."
    subcommands = {  # noqa: RUF012 (traitlets reads it from the class)
        "check": (
            ConfigCheckApp,
            "Print every FractalJupyter setting and where it comes from, run the start-up "
            "checks, exit non-zero on any problem.",
        )
    }

    def start(self) -> None:
        if self.subapp is None:
            self.print_help()
            self.exit(1)
        else:
            self.subapp.start()
