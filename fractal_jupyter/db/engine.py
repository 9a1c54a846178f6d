"""The async engine, sessions, and schema migrations run at start-up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
READ_ONLY = "fractal_read_only"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# PostgreSQL advisory lock key held while migrating (any constant unlikely to clash)
MIGRATION_LOCK_KEY = 0x46524A55  # "FRJU"


def _set_sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin, so that
    # transactions and SAVEPOINTs behave as documented (SQLAlchemy's recipe for pysqlite).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _begin_sqlite_transaction(connection: Connection) -> None:
    # A read session runs each statement in its own implicit transaction: no BEGIN and
    # ROLLBACK round trips on the hot read path. Its statements stay atomic one by one.
    if not connection.get_execution_options().get(READ_ONLY):
        connection.exec_driver_sql("BEGIN")


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def _upgrade_to_head(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


class Database:
    """One engine per extension; sessions for requests.

    SQLite allows one writer at a time and answers "database is locked" to a second one that
    started its transaction as a reader. All writers of our database live in this process, so
    write sessions queue on an asyncio lock instead of racing for the file lock.
    """

    def __init__(self, url: str, echo: bool = False) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite and self.url.database and self.url.database != ":memory:":
            Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        self.engine: AsyncEngine = create_async_engine(self.url, echo=echo)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _set_sqlite_pragmas)
            event.listen(self.engine.sync_engine, "begin", _begin_sqlite_transaction)
        self._sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        self._read_sessionmaker = async_sessionmaker(
            self.engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )
        self._write_lock = asyncio.Lock()

    async def upgrade(self) -> None:
        """Bring the schema to the newest migration (creates it on an empty database).

        Servers sharing a PostgreSQL database often start together (a hub spawning its
        users' servers): one migrates while the others wait on a transaction-scoped advisory
        lock, then find the schema current. Without it, concurrent `CREATE TABLE`s fail.
        """
        async with self._write_lock, self.engine.begin() as connection:
            if self.url.get_backend_name() == "postgresql":
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
            await connection.run_sync(_upgrade_to_head)

    @asynccontextmanager
    async def session(self, write: bool = False) -> AsyncIterator[AsyncSession]:
        """A session; with `write`, a transaction that commits on success, else rolls back."""
        if write and self.is_sqlite:
            async with self._write_lock, self._sessionmaker() as session, session.begin():
                yield session
        elif write:
            async with self._sessionmaker() as session, session.begin():
                yield session
        else:
            async with self._read_sessionmaker() as session:
                yield session

    async def dispose(self) -> None:
        await self.engine.dispose()
