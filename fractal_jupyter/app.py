"""The `fractal` Jupyter server extension app: configuration, handlers, start and stop."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from traitlets import Float, Integer, Set, Unicode, default

from ._version import __version__
from .db.engine import Database
from .handlers.routes import tornado_handlers
from .services.job import RunnerSettings
from .state import FractalState


class FractalJupyter(ExtensionApp):
    """Fractal's v2 API inside a Jupyter server, under `<base_url>fractal/`."""

    name = "fractal"
    description = "Run Fractal bioimage-analysis workflows from Jupyter."
    version = __version__
    extension_url = "/fractal/api/alive/"
    load_other_extensions = True

    data_dir = Unicode(
        help="Folder for fractal_jupyter's own files (the SQLite database by default). "
        "Default: <Jupyter data dir>/fractal.",
    ).tag(config=True)

    db_url = Unicode(
        help="SQLAlchemy URL of the database, with an async driver: "
        "sqlite+aiosqlite:///<path> (the default, <data_dir>/fractal.db) or "
        "postgresql+asyncpg://user:password@host/dbname for a database shared by many servers.",
    ).tag(config=True)

    admin_users = Set(
        Unicode(),
        help="Usernames that are Fractal administrators (fractal-server's superusers).",
    ).tag(config=True)

    default_username = Unicode(
        help="Who the caller is when Jupyter's identity is anonymous (a plain Jupyter server "
        "with a token or password). Default: the OS user running the server. Under JupyterHub "
        "the hub user is the caller and this is not used.",
    ).tag(config=True)

    working_dir = Unicode(
        help="Folder where every job gets its own folder (task arguments, outputs, logs). "
        "Default: <data_dir>/jobs.",
    ).tag(config=True)

    local_max_workers = Integer(
        help="How many task processes a job runs at once on the local backend. A task's "
        "meta.parallel_tasks_per_job narrows it. Default: the number of CPUs.",
    ).tag(config=True)

    submit_rate_limit_seconds = Float(
        2.0,
        help="Refuse (429) a second submission of the same workflow on the same dataset "
        "within this many seconds, as fractal-server does. 0 disables the check.",
    ).tag(config=True)

    job_poll_interval = Float(
        0.5, help="Seconds between two looks at the running jobs' event files."
    ).tag(config=True)

    @default("working_dir")
    def _working_dir_default(self) -> str:
        return os.path.join(self.data_dir, "jobs")

    @default("local_max_workers")
    def _local_max_workers_default(self) -> int:
        return os.cpu_count() or 1

    @default("data_dir")
    def _data_dir_default(self) -> str:
        return os.path.join(jupyter_data_dir(), "fractal")

    @default("db_url")
    def _db_url_default(self) -> str:
        return "sqlite+aiosqlite:///" + os.path.join(self.data_dir, "fractal.db")

    @default("default_username")
    def _default_username_default(self) -> str:
        return getpass.getuser()

    def initialize_settings(self) -> None:
        state = FractalState(
            database=Database(self.db_url),
            admin_users=frozenset(self.admin_users),
            default_username=self.default_username,
            log=self.log,
            runner=RunnerSettings(
                working_dir=Path(self.working_dir),
                max_workers=self.local_max_workers,
                submit_rate_limit_seconds=self.submit_rate_limit_seconds,
            ),
            job_poll_interval=self.job_poll_interval,
        )
        self.settings["fractal"] = state
        self.log.info(
            "fractal_jupyter %s: database %s", __version__, state.database.url.render_as_string()
        )

    def initialize_handlers(self) -> None:
        self.handlers.extend(tornado_handlers())

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        state: FractalState = self.settings["fractal"]
        try:
            await state.ensure_ready()
        except Exception:
            self.log.exception("fractal_jupyter could not prepare its database")
            raise

    async def stop_extension(self) -> None:
        state: FractalState | None = self.settings.get("fractal")
        if state is not None:
            await state.stop_watching_jobs()
            await state.database.dispose()


main = launch_new_instance = FractalJupyter.launch_instance
