"""A database of a test's own: a SQLite file, or a fresh database on the PostgreSQL server of
`FRACTAL_TEST_DB_URL` (dropped afterwards), for tests that change the schema or count what
reaches the database server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import TEST_DB_URL


@asynccontextmanager
async def fresh_database_url(tmp_path: object) -> AsyncIterator[str]:
    if TEST_DB_URL is None:
        yield f"sqlite+aiosqlite:///{tmp_path}/own.db"
        return
    name = f"fractal_own_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(make_url(TEST_DB_URL), isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(TEST_DB_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        await admin.dispose()
