"""What the server can tell about its database at start-up without SQLAlchemy.

SQLAlchemy with its asyncio extension, our models and the services cost ~30 MiB of memory and
a fraction of a second. A server whose database is current and has nothing under way for it
(most starts on a JupyterHub) needs none of that until its first Fractal request. A SQLite
file is read with the standard library's sqlite3; PostgreSQL with asyncpg alone (the
driver the server would load anyway, ~3 MiB in a Jupyter server).
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from urllib.parse import quote

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# `revision = "0005"` and `down_revision = "0004"` (or None) in a migration script.
REVISION_LINE = re.compile(r"^(down_revision|revision)\s*=\s*(?:['\"]([^'\"]+)['\"]|None)", re.M)
# A submitted job's status (db/models.py Job.status), the one the job watcher follows.
SUBMITTED = "submitted"


def known_revisions() -> tuple[frozenset[str], str | None]:
    """Every migration this package has, and the newest one, read from the scripts'
    `revision` lines without importing alembic (which with its dependencies costs a tenth of
    a second and 10 MiB at start-up). The newest is None when the scripts do not form a
    single line of migrations (alembic then decides)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (MIGRATIONS_DIR / "versions").glob("*.py"):
        for name, value in REVISION_LINE.findall(script.read_text()):
            if value:
                (revisions if name == "revision" else parents).add(value)
    heads = revisions - parents
    return frozenset(revisions), heads.pop() if len(heads) == 1 else None


def head_revision() -> str | None:
    """The newest migration (see `known_revisions`)."""
    return known_revisions()[1]


def sqlite_file(db_url: str) -> Path | None:
    """The file of a plain `sqlite[+driver]:///<path>` URL; None for any other database, an
    in-memory one, or a URL with options or escapes (SQLAlchemy's parsing then decides)."""
    scheme, separator, path = db_url.partition(":///")
    if not separator or scheme.split("+", 1)[0] != "sqlite":
        return None
    if not path or path == ":memory:" or any(mark in path for mark in "?%#"):
        return None
    return Path(path)


def postgres_dsn(db_url: str) -> str | None:
    """asyncpg's DSN for a plain `postgresql+asyncpg://...` URL; None for any other database
    or a URL with options (SQLAlchemy's parsing then decides)."""
    scheme, separator, rest = db_url.partition("://")
    if not separator or scheme != "postgresql+asyncpg" or "?" in rest:
        return None
    return f"postgresql://{rest}"


def _probe_queries(placeholder: str) -> tuple[str, str, str, str]:
    """The probe's statements: the schema's revision, a submitted job of a user, a task
    collection and a task group activity of a host. `placeholder` makes the n-th bound
    parameter of the driver (`?`, `$1`)."""
    first, second = (placeholder.format(n) for n in (1, 2))
    return (
        "SELECT version_num FROM alembic_version",
        f"SELECT 1 FROM job WHERE status = {first} AND runner LIKE {second} LIMIT 1",
        f"SELECT 1 FROM collection_state WHERE runner LIKE {first} LIMIT 1",
        f"SELECT 1 FROM task_group_activity WHERE runner LIKE {first} LIMIT 1",
    )


def _runner_patterns(runner: str) -> tuple[str, str]:
    """LIKE patterns for the runners of the user of `runner` (`host:uid`) on any host, and
    for every runner of its host."""
    host, uid = runner.rsplit(":", 1)
    return f"%:{uid}", f"{host}:%"


def nothing_under_way(db_url: str, runner: str) -> bool:
    """True when the database is a SQLite file at the newest migration, with no submitted job
    of the user of `runner` (`host:uid`, see runner/launcher.py) on any host, and no task
    collection or task group activity of its host under way: the server then has nothing to
    do before its first request.

    False whenever that cannot be told for sure (not a SQLite file, a missing, older or locked
    file, any error): the server then loads everything at start-up, as it always did.
    """
    path = sqlite_file(db_url)
    head = head_revision()
    if path is None or head is None or not path.is_file():
        return False
    user_runners, host_runners = _runner_patterns(runner)
    revision_query, job_query, collection_query, activity_query = _probe_queries("?")
    try:
        # Read-write (never create): a read-only connection does not see what a server
        # left in the write-ahead log.
        connection = sqlite3.connect(f"file:{quote(str(path.absolute()))}?mode=rw", uri=True)
        try:
            revisions = connection.execute(revision_query).fetchall()
            job = connection.execute(job_query, (SUBMITTED, user_runners)).fetchone()
            collection = (
                connection.execute(collection_query, (host_runners,)).fetchone()
                or connection.execute(activity_query, (host_runners,)).fetchone()
            )
        finally:
            connection.close()
    except sqlite3.Error:
        return False
    return revisions == [(head,)] and job is None and collection is None


async def postgres_nothing_under_way(
    db_url: str, runner: str, timeout: float, application_name: str
) -> bool:
    """`nothing_under_way` for a PostgreSQL database, through one short asyncpg connection.

    False whenever that cannot be told for sure (another driver, a URL with options, the
    database unreachable, any error): the server then loads everything at start-up, which
    reports the problem as it always did.
    """
    dsn = postgres_dsn(db_url)
    head = head_revision()
    if dsn is None or head is None:
        return False
    import asyncpg

    user_runners, host_runners = _runner_patterns(runner)
    revision_query, job_query, collection_query, activity_query = _probe_queries("${}")
    try:
        connection = await asyncpg.connect(
            dsn,
            timeout=timeout,
            # No named prepared statements: they break behind PgBouncer's transaction pooling.
            statement_cache_size=0,
            server_settings={"application_name": application_name},
        )
        try:
            revisions = [tuple(row) for row in await connection.fetch(revision_query)]
            job = await connection.fetchval(job_query, SUBMITTED, user_runners)
            collection = await connection.fetchval(
                collection_query, host_runners
            ) or await connection.fetchval(activity_query, host_runners)
        finally:
            await connection.close(timeout=timeout)
    except Exception:  # which one does not matter: everything loads and reports it
        return False
    return revisions == [(head,)] and job is None and collection is None
