"""`jupyter fractal db upgrade`: run the schema migrations on the configured database.

For administrators of a database shared by many servers (PostgreSQL), who migrate once after
installing the new fractal-jupyter: servers on a shared database only check its schema
(`FractalJupyter.migrate_on_start` is False there) and answer 503 until it fits them. A
server on its own SQLite file migrates it when it starts. The database is the one the server
would use: `FractalJupyter.db_url` from the same configuration files and options
(`--FractalJupyter.db_url=...`, or `--db-url`), with the server's connection settings.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from ..configuration import db_url_problem
from ..db.engine import ConnectionSettings, Database, SchemaMismatch, alembic_config
from ..db.row_security import ADMIN_ROLE, USER_ROLE
from .base import EXIT_OK, CommandApp, CommandFailed, new_parser, print_json


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def upgrade(
    db_url: str, connections: ConnectionSettings | None = None, *, row_security: bool = False
) -> tuple[str | None, str | None]:
    """Migrate the database to the newest revision (and install row-level security, when
    asked): its revisions before and after."""
    database = Database(db_url, connections=connections)
    try:
        async with database.engine.connect() as connection:
            before = await connection.run_sync(_revision)
        await database.upgrade(row_security=row_security)
        async with database.engine.connect() as connection:
            after = await connection.run_sync(_revision)
    finally:
        await database.dispose()
    return before, after


def is_server_option(option: str) -> bool:
    """`--Class.trait=value` or `--Class.trait`: a setting, as the server takes them."""
    name = option[2:].split("=", 1)[0]
    return option.startswith("--") and "." in name


class DbUpgradeApp(CommandApp):
    name = "jupyter-fractal-db-upgrade"
    command = "db upgrade"
    description = "Run the database migrations on FractalJupyter.db_url."
    server_argv: list[str]

    def build_parser(self) -> argparse.ArgumentParser:
        parser = new_parser(
            self.command,
            "Bring the database of FractalJupyter.db_url to the newest schema revision "
            "(creating the schema on an empty database) and print the revision before and "
            "after; a current database is left as it is. The database is found as the "
            "server finds it: give the options you give the server "
            "(--FractalJupyter.db_url=..., --FractalJupyter.data_dir=...); the URL needs an "
            "async driver: sqlite+aiosqlite:///<path> or postgresql+asyncpg://...",
            "the configuration is wrong (e.g. a db_url without an async driver), or the "
            "database cannot be reached or migrated",
            needs_server=False,
        )
        parser.add_argument(
            "--db-url", help="the database's URL (the same as --FractalJupyter.db_url=...)"
        )
        parser.add_argument(
            "--row-security",
            action="store_true",
            help="PostgreSQL only: also install row-level security (a database role per user, "
            f"administrators by membership of {ADMIN_ROLE}; docs/deploy-jupyterhub.md, 2c), "
            "which later upgrades keep up to date by themselves. Run it as the role that owns "
            "the tables, with CREATEROLE the first time (it creates the roles "
            f"{USER_ROLE} and {ADMIN_ROLE})",
        )
        return parser

    def initialize(self, argv: Any = None) -> None:
        self.parser = self.build_parser()
        self.arguments, unknown = self.parser.parse_known_args(list(argv or []))
        wrong = [option for option in unknown if not is_server_option(option)]
        if wrong:
            self.parser.error(f"unrecognized arguments: {' '.join(wrong)}")
        self.server_argv = unknown
        if self.arguments.db_url is not None:
            self.server_argv.append(f"--FractalJupyter.db_url={self.arguments.db_url}")

    def run(self) -> int:
        from ..config_command import configured_as_server
        from ..configuration import shown_value

        fractal, _ = configured_as_server(self.server_argv, self.log)
        if fractal.configuration_error is not None:
            raise CommandFailed(" ".join(fractal.configuration_error.problems))
        problem = db_url_problem(fractal.db_url)
        if problem:
            raise CommandFailed(problem)
        row_security = bool(self.arguments.row_security)
        if row_security and not fractal.db_url.startswith("postgresql"):
            raise CommandFailed(
                "--row-security needs a PostgreSQL database; a SQLite file is one user's, "
                "protected by its file mode"
            )
        shown = str(shown_value("db_url", fractal.db_url))
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        try:
            before, after = asyncio.run(
                upgrade(fractal.db_url, fractal.connection_settings(), row_security=row_security)
            )
        except SchemaMismatch as error:
            raise CommandFailed(
                f"the database {shown} was migrated by a newer fractal-jupyter than this one "
                f"(which knows revisions up to {head}); nothing was done. Install that newer "
                f"version here and on the servers. ({error})"
            ) from error
        except Exception as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise CommandFailed(
                f"the database {shown} could not be migrated: {type(error).__name__}: {reason}"
            ) from error
        result = {
            "db_url": shown,
            "revision_before": before,
            "revision_after": after,
            "head": head,
            "upgraded": before != after,
            "row_security_installed": row_security,
        }
        if self.json_output:
            print_json(result)
            return EXIT_OK
        if before == after:
            rest = "" if row_security else "; nothing to do"
            print(f"Database {shown}: already at the newest revision {after}{rest}.")
        else:
            print(f"Database {shown}: upgraded from revision {before or '(empty)'} to {after}.")
        if row_security:
            print(
                f"Row-level security installed: give each user a login role of their hub name "
                f"in {USER_ROLE}, and administrators {ADMIN_ROLE}."
            )
        return EXIT_OK


class DbApp(CommandApp):
    name = "jupyter-fractal-db"
    command = "db"
    description = "The Fractal database: `jupyter fractal db upgrade`."
    subcommands = {  # noqa: RUF012 (traitlets reads it from the class)
        "upgrade": (DbUpgradeApp, DbUpgradeApp.description),
    }

    def build_parser(self) -> argparse.ArgumentParser:
        parser = new_parser(
            self.command,
            self.description,
            "see the action's --help",
            needs_server=False,
            json_option=False,
        )
        parser.add_argument("action", choices=["upgrade"], help="upgrade: run the migrations")
        return parser

    def initialize(self, argv: Any = None) -> None:
        argv = list(argv or [])
        if argv and argv[0] in self.subcommands:
            self.initialize_subcommand(argv[0], argv[1:])
            return
        super().initialize(argv)  # --help, or a usage error

    def run(self) -> int:
        assert self.subapp is not None
        self.subapp.start()
        return EXIT_OK
