"""Checking the FractalJupyter configuration before anything is served or written.

traitlets applies configuration value by value and stops at the first bad one, and
jupyter_server only warns when an extension fails to link: the extension would then run on
whatever was applied before the error, often the defaults. So the values are checked here,
source by source, before they are applied, and the settings that need the outside world
(the database, the SLURM commands, the SSH login node) are checked before the extension
serves. Every problem names the setting, its value, where the value came from and what is
accepted.

Where a value comes from follows what `ExtensionApp._link_jupyter_server_extension` does:
the extension's own files (`jupyter_config`, then `jupyter_fractal_config`), then the server's
configuration (`jupyter_config`, `jupyter_server_config`, then the command line), the later
one winning. A config file in a folder of higher priority overriding one of lower priority is
Jupyter's layering, not a conflict; a value given twice on the command line with different
values (a scalar setting) is a conflict, which traitlets refuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import os
import shutil
import socket
import time
import urllib.parse
from collections.abc import Coroutine, Iterator, Mapping
from copy import deepcopy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from traitlets import TraitError, TraitType
from traitlets.config import Config
from traitlets.config.loader import DeferredConfig, LazyConfigValue

from .runner.settings import Backend

if TYPE_CHECKING:
    from jupyter_server.serverapp import ServerApp

    from .app import FractalJupyter

SECTION = "FractalJupyter"
DEFAULT_SOURCE = "default"
COMMAND_LINE = "command line"
SERVER_CONFIG = "the server's configuration"
SLURM_COMMANDS = ("sbatch", "squeue", "scancel")
# One attempt of a start-up check that needs the outside world.
CHECK_ATTEMPT_SECONDS = 3.0
FIRST_RETRY_SECONDS = 0.25
LONGEST_RETRY_SECONDS = 5.0
ASYNC_DRIVERS = {"sqlite": ("aiosqlite",), "postgresql": ("asyncpg", "psycopg")}
ACCEPTED_DB_URL = (
    "an SQLAlchemy URL with an async driver: sqlite+aiosqlite:///<path of the file> or "
    "postgresql+asyncpg://user:password@host/dbname"
)


class ConfigurationError(Exception):
    """The configuration cannot be applied; `problems` says why, one line per setting."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems

    @property
    def message(self) -> str:
        return (
            "Fractal is not serving: its configuration is wrong. "
            + " ".join(self.problems)
            + " Fix it and restart the server; `jupyter fractal config check` shows every "
            "setting and where it comes from."
        )


@dataclass(frozen=True)
class Layer:
    """The FractalJupyter values of one configuration source, in the order they apply."""

    source: str
    values: Mapping[str, Any]


def shown_value(name: str, value: Any) -> Any:
    """A value as logs and `config check` show it: secrets masked, passwords out of URLs."""
    from .services.admin import sanitized_settings

    return sanitized_settings({name: value})[name]


def _section(config: Config) -> Mapping[str, Any]:
    if SECTION in config:
        section: Mapping[str, Any] = config[SECTION]
        return section
    return {}


def _file_layers(names: list[str], paths: list[str]) -> Iterator[Layer]:
    from .app import FractalJupyter

    for name in names:
        try:
            loaded = list(
                FractalJupyter._load_config_files(name, path=paths, raise_config_file_errors=True)
            )
        except Exception as error:
            problem = f"A configuration file {name}.py or .json in {paths} fails to load: {error}."
            raise ConfigurationError([problem]) from error
        for config, filename in loaded:
            yield Layer(filename, _section(config))


def configuration_layers(app: FractalJupyter, serverapp: ServerApp) -> list[Layer]:
    """Every source of FractalJupyter values, in the order the extension applies them."""
    paths = list(serverapp.config_file_paths)
    own = list(_file_layers(["jupyter_config", app.config_file_name], paths))
    server = list(_file_layers(["jupyter_config", serverapp.config_file_name], paths))
    if serverapp.config_file:
        folder, filename = os.path.split(serverapp.config_file)
        server.extend(_file_layers([os.path.splitext(filename)[0]], [folder]))
    server.append(Layer(COMMAND_LINE, _section(serverapp.cli_config)))
    # Values the server was given by other means (a Config object from code, as in tests).
    explained = {name for layer in server for name in layer.values}
    given = _section(serverapp.config)
    other = {name: value for name, value in given.items() if name not in explained}
    return [Layer(SERVER_CONFIG, other), *own, *server]


def setting_sources(layers: list[Layer]) -> dict[str, str]:
    """Where each configured setting's value comes from (the last source that sets it)."""
    sources: dict[str, str] = {}
    for layer in layers:
        for name in layer.values:
            sources[name] = layer.source
    return sources


def _accepted(trait: TraitType[Any, Any]) -> str:
    values = getattr(trait, "values", None)
    if values is not None:
        return "one of " + ", ".join(repr(value) for value in values)
    return str(trait.info())


def invalid_settings(app_class: type[FractalJupyter], layers: list[Layer]) -> list[str]:
    """The values that FractalJupyter would refuse, each with its source and what is accepted.

    They are applied, source by source, to a throw-away instance, as traitlets will apply
    them; an unknown name is refused too (traitlets only warns, and a misspelt setting
    silently keeps its default).
    """
    probe = app_class()
    own = app_class.class_own_traits(config=True)
    known = app_class.class_traits(config=True)
    problems = []
    for layer in layers:
        for name, given in layer.values.items():
            where = f"({layer.source})"
            if name not in known:
                close = difflib.get_close_matches(name, list(own), n=1)
                hint = f" Did you mean {SECTION}.{close[0]}?" if close else ""
                problems.append(f"{SECTION}.{name} {where} is not a setting.{hint}")
                continue
            if name not in own:
                continue  # the ExtensionApp's own settings (log_level, ...) are Jupyter's
            trait = own[name]
            value = given
            try:
                if isinstance(given, LazyConfigValue):
                    value = given.get_value(getattr(probe, name))
                elif isinstance(given, DeferredConfig):
                    value = given.get_value(trait)
                setattr(probe, name, deepcopy(value))
            except ValueError:  # a scalar given more than once on the command line
                values = ", ".join(repr(shown_value(name, item)) for item in given)
                problems.append(
                    f"{SECTION}.{name} is given {len(given)} times {where}: {values}; "
                    "it accepts one value."
                )
            except TraitError:
                problems.append(
                    f"{SECTION}.{name} = {shown_value(name, value)!r} {where} is not valid: "
                    f"it accepts {_accepted(trait)}."
                )
    return problems


def _nearest_existing(path: str) -> str:
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def _writable_folder_problem(name: str, folder: str, value: str) -> str | None:
    existing = _nearest_existing(os.path.abspath(folder))
    if not os.path.isdir(existing):
        return f"{SECTION}.{name} = {value!r}: {existing} is not a folder."
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{SECTION}.{name} = {value!r}: {existing} is not writable by this user."
    return None


def db_url_problem(db_url: str) -> str | None:
    """Why `db_url` cannot be opened, found without connecting or writing anything."""
    from .db.probe import postgres_dsn, sqlite_file

    sqlite_path = sqlite_file(db_url)
    if sqlite_path is not None and db_url.startswith("sqlite+aiosqlite:"):
        # The usual URLs are checked without SQLAlchemy (11 MiB that an idle server never needs).
        return _writable_folder_problem("db_url", os.path.dirname(sqlite_path), db_url)
    if postgres_dsn(db_url) is not None and _plain_network_url(db_url):
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(db_url)
    except ArgumentError:
        return f"{SECTION}.db_url = {db_url!r} is not valid: it accepts {ACCEPTED_DB_URL}."
    shown = url.render_as_string(hide_password=True)
    backend, driver = url.get_backend_name(), url.get_driver_name()
    # A URL without a driver (`postgresql://`) means SQLAlchemy's default one, which depends on
    # its version and may be synchronous or not installed: the driver must be named.
    if "+" not in url.drivername or driver not in ASYNC_DRIVERS.get(backend, ()):
        return f"{SECTION}.db_url = {shown!r} is not valid: it accepts {ACCEPTED_DB_URL}."
    if backend == "sqlite" and url.database and url.database != ":memory:":
        return _writable_folder_problem("db_url", os.path.dirname(url.database), shown)
    return None


def _plain_network_url(db_url: str) -> bool:
    """A URL with a host and, if any, a numeric port (anything else is SQLAlchemy's to judge)."""
    parts = urllib.parse.urlsplit(db_url)
    try:
        parts.port  # noqa: B018 (it raises ValueError for a port that is not a number)
    except ValueError:
        return False
    return bool(parts.hostname)


def _readable_file_problem(name: str, path: str) -> str | None:
    if not path:
        return f"{SECTION}.{name} is empty: it accepts the path of a readable file."
    expanded = os.path.expanduser(path)
    try:
        with open(expanded, "rb") as file:
            file.read(1)
    except OSError as error:
        return (
            f"{SECTION}.{name} = {path!r} is not a readable file ({error.strerror}): "
            "it accepts the path of a file this user can read."
        )
    return None


def settings_problems(app: FractalJupyter) -> list[str]:
    """What is wrong with the applied values, found without the network and without writing."""
    problems = [
        problem
        for problem in (
            db_url_problem(app.db_url),
            _writable_folder_problem("data_dir", app.data_dir, app.data_dir),
        )
        if problem
    ]
    backend = f"{SECTION}.runner_backend = {app.runner_backend!r}"
    kind = Backend(app.runner_backend)
    if kind.on_slurm and not kind.over_ssh:
        missing = [command for command in SLURM_COMMANDS if shutil.which(command) is None]
        if missing:
            problems.append(
                f"{backend} needs {', '.join(missing)} on this server's PATH, which has none "
                f"(PATH={os.environ.get('PATH', '')}); it accepts 'slurm' only on a host with "
                "the SLURM client, else 'slurm_ssh' or 'local'."
            )
    if app.job_process_placement == "slurm" and kind is not Backend.SLURM:
        problems.append(
            f"{SECTION}.job_process_placement = 'slurm' needs {SECTION}.runner_backend = "
            f"'slurm' (sbatch on this host), not {app.runner_backend!r}: it accepts 'server' "
            "or 'auto' there."
        )
    if kind.over_ssh:
        if not app.slurm_ssh_host:
            problems.append(
                f"{backend} needs {SECTION}.slurm_ssh_host, which is empty: it accepts the "
                "login node's host name."
            )
        if not app.slurm_ssh_remote_dir:
            problems.append(
                f"{backend} needs {SECTION}.slurm_ssh_remote_dir, which is empty: it accepts "
                "a folder on the cluster."
            )
        key_problem = _readable_file_problem("slurm_ssh_key_path", app.slurm_ssh_key_path)
        if key_problem:
            problems.append(key_problem)
    return problems


async def _database_problem(db_url: str, timeout: float) -> str | None:
    from .db.probe import postgres_dsn

    dsn = postgres_dsn(db_url)
    try:
        async with asyncio.timeout(timeout):
            if dsn is not None:
                # asyncpg alone: SQLAlchemy would stay loaded in a server that may wait for
                # its first Fractal request (db/probe.py).
                await _connect_with_asyncpg(dsn)
            else:
                await _connect_with_sqlalchemy(db_url)
    except Exception as error:
        from sqlalchemy.engine import make_url

        shown = make_url(db_url).render_as_string(hide_password=True)
        reason = str(error).strip() or type(error).__name__
        return f"{SECTION}.db_url = {shown!r}: the database cannot be reached: {reason}."
    return None


async def _connect_with_asyncpg(dsn: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(dsn, statement_cache_size=0)
    try:
        await connection.fetchval("SELECT 1")
    finally:
        await connection.close()


async def _connect_with_sqlalchemy(db_url: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(db_url)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


async def _ssh_host_problem(host: str, port: int, timeout: float) -> str | None:
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    except (OSError, TimeoutError, socket.gaierror) as error:
        reason = str(error) or type(error).__name__
        return (
            f"{SECTION}.slurm_ssh_host = {host!r} (port {port}): the login node cannot be "
            f"reached: {reason}."
        )
    return None


async def outside_problems(app: FractalJupyter, timeout: float) -> list[str]:
    """One attempt at the checks that need the outside world, each within `timeout` s.

    SQLite needs no such check: the folder check covers it, and a connection would create
    the file.
    """
    checks: list[Coroutine[Any, Any, str | None]] = [login_node_problem(app, timeout)]
    if not app.db_url.startswith("sqlite"):
        checks.append(_database_problem(app.db_url, timeout))
    return [problem for problem in await asyncio.gather(*checks) if problem]


async def login_node_problem(app: FractalJupyter, timeout: float) -> str | None:
    """Why the `slurm_ssh` backend's login node cannot be reached (None: it can, or no SSH)."""
    if not Backend(app.runner_backend).over_ssh or not app.slurm_ssh_host:
        return None
    return await _ssh_host_problem(app.slurm_ssh_host, app.slurm_ssh_port, timeout)


def check_outside_world(app: FractalJupyter, budget: float, log: Any = None) -> list[str]:
    """The outside-world checks, retried with backoff until they pass or `budget` s passed.

    A database that is restarting answers again within seconds; a wrong host never does.
    Runs its own event loop in a thread, so it can be called while the server's loop exists
    but does not run yet (when extensions load).
    """
    from concurrent.futures import ThreadPoolExecutor

    if app.db_url.startswith("sqlite") and not Backend(app.runner_backend).over_ssh:
        return []  # nothing outside to reach: no thread, no event loop
    deadline = time.monotonic() + budget
    delay = FIRST_RETRY_SECONDS
    while True:
        left = deadline - time.monotonic()
        timeout = max(0.1, min(CHECK_ATTEMPT_SECONDS, left))
        with ThreadPoolExecutor(1) as thread:
            problems = thread.submit(asyncio.run, outside_problems(app, timeout)).result()
        if not problems or time.monotonic() + delay >= deadline:
            return problems
        if log is not None:
            log.warning("fractal_jupyter: retrying in %.2f s: %s", delay, " ".join(problems))
        time.sleep(delay)
        delay = min(delay * 2, LONGEST_RETRY_SECONDS)
