"""`Database.read`: one read transaction, on the SQLite read threads or the async engine."""

import asyncio
import sqlite3
import threading

from sqlalchemy import Connection, text

from fractal_jupyter.db.engine import Database


def test_read_runs_in_one_snapshot_on_a_read_thread(tmp_path):
    path = tmp_path / "fractal.db"

    def count_twice(connection: Connection) -> tuple[str, int, int]:
        before = connection.scalar(text("SELECT count(*) FROM project"))
        # Another writer commits between the two statements of the read.
        with sqlite3.connect(path) as other:
            other.execute("INSERT INTO project (name, timestamp_created) VALUES ('q', '')")
        after = connection.scalar(text("SELECT count(*) FROM project"))
        return threading.current_thread().name, before, after

    async def scenario() -> tuple[tuple[str, int, int], int]:
        database = Database(f"sqlite+aiosqlite:///{path}")
        try:
            await database.upgrade()
            async with database.session(write=True) as session:
                await session.execute(
                    text("INSERT INTO project (name, timestamp_created) VALUES ('p', '')")
                )
            seen = await database.read(count_twice)
            total = await database.read(lambda c: c.scalar(text("SELECT count(*) FROM project")))
            return seen, total
        finally:
            await database.dispose()

    (thread, before, after), total = asyncio.run(scenario())
    assert thread.startswith("fractal-db-read")
    assert (before, after) == (1, 1)  # the read's snapshot
    assert total == 2  # a later read sees the other writer's row


def test_read_on_an_in_memory_database_uses_the_async_engine():
    async def scenario() -> int:
        database = Database("sqlite+aiosqlite://")
        try:
            return await database.read(lambda c: c.scalar(text("SELECT 41 + 1")))
        finally:
            await database.dispose()

    assert asyncio.run(scenario()) == 42
