"""What the server can tell about its database at start-up without SQLAlchemy.

SQLAlchemy with its asyncio extension, our models and the services cost ~30 MiB of memory and
a fraction of a second. A server whose SQLite database is current and has nothing under way
for it (most starts on a JupyterHub) needs none of that until its first Fractal request.
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


def nothing_under_way(db_url: str, runner: str) -> bool:
    """True when the database is a SQLite file at the newest migration, with no submitted job
    of `runner` (`host:uid`, see runner/launcher.py) and no task collection or task group activity
    of its host under way: the server then has nothing to do before its first request.

    False whenever that cannot be told for sure (PostgreSQL, a missing, older or locked file,
    any error): the server then loads everything at start-up, as it always did.
    """
    path = sqlite_file(db_url)
    head = head_revision()
    if path is None or head is None or not path.is_file():
        return False
    host = runner.split(":", 1)[0]
    try:
        # Read-write (never create): a read-only connection does not see what a server
        # left in the write-ahead log.
        connection = sqlite3.connect(f"file:{quote(str(path.absolute()))}?mode=rw", uri=True)
        try:
            revisions = connection.execute("SELECT version_num FROM alembic_version").fetchall()
            job = connection.execute(
                "SELECT 1 FROM job WHERE status = ? AND runner = ? LIMIT 1", (SUBMITTED, runner)
            ).fetchone()
            collection = (
                connection.execute(
                    "SELECT 1 FROM collection_state WHERE runner LIKE ? LIMIT 1", (f"{host}:%",)
                ).fetchone()
                or connection.execute(
                    "SELECT 1 FROM task_group_activity WHERE runner LIKE ? LIMIT 1", (f"{host}:%",)
                ).fetchone()
            )
        finally:
            connection.close()
    except sqlite3.Error:
        return False
    return revisions == [(head,)] and job is None and collection is None
