"""Schema migrations on data: a database filled under the previous revision keeps its rows.

On SQLite by default; with `FRACTAL_TEST_DB_URL` (PostgreSQL) the test makes a database of its
own on that server, so the shared test database is not touched.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from alembic import command
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from fractal_jupyter.db.engine import Database, alembic_config
from tests.conftest import TEST_DB_URL

PREVIOUS_REVISION = "0005"


@asynccontextmanager
async def fresh_database_url(tmp_path: object) -> AsyncIterator[str]:
    if TEST_DB_URL is None:
        yield f"sqlite+aiosqlite:///{tmp_path}/migrations.db"
        return
    name = f"fractal_migration_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(make_url(TEST_DB_URL), isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(TEST_DB_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        await admin.dispose()


def _upgrade_to(revision: str):  # type: ignore[no-untyped-def]
    def run(connection: Connection) -> None:
        command.upgrade(alembic_config(connection), revision)

    return run


FILL = [
    "INSERT INTO user_account (id, username, email, is_active, is_superuser, is_verified, "
    "timestamp_created) VALUES (1, 'alice', 'alice@x', true, false, true, '2026-01-01')",
    "INSERT INTO project (id, name, timestamp_created) VALUES (1, 'p', '2026-01-01')",
    "INSERT INTO dataset (id, name, project_id, zarr_dir, filters, history, timestamp_created, "
    "image_count) VALUES (1, 'd', 1, '/z', '{\"attributes\": {}, \"types\": {}}', '[]', "
    "'2026-01-01', 1)",
    "INSERT INTO image (id, dataset_id, zarr_url, origin, attributes, types) "
    "VALUES (1, 1, '/z/a', NULL, '{\"well\": \"A01\"}', '{}')",
    "INSERT INTO workflow (id, name, project_id, timestamp_created) "
    "VALUES (1, 'w', 1, '2026-01-01')",
    "INSERT INTO job (id, project_id, workflow_id, dataset_id, user_email, owner, project_dump, "
    "workflow_dump, dataset_dump, first_task_index, last_task_index, start_timestamp, status, "
    "backend, runner, events_applied, progress) VALUES (1, 1, 1, 1, 'alice@x', 'alice', '{}', "
    "'{}', '{}', 0, 0, '2026-01-01', 'done', 'local', 'h:1', 3, '{}')",
]


def test_upgrade_to_history_keeps_jobs_and_images(tmp_path):
    async def run() -> tuple[list[object], list[object]]:
        async with fresh_database_url(tmp_path) as url:
            database = Database(url)
            async with database.engine.begin() as connection:
                await connection.run_sync(_upgrade_to(PREVIOUS_REVISION))
                for statement in FILL:
                    await connection.execute(text(statement))
            await database.upgrade()
            async with database.engine.connect() as connection:
                jobs = (
                    await connection.execute(
                        text(
                            "SELECT id, status, events_applied, attribute_filters, type_filters, "
                            "executor_error_log FROM job"
                        )
                    )
                ).all()
                images = (await connection.execute(text("SELECT id, zarr_url FROM image"))).all()
                # The new tables take rows that point at the old ones.
                await connection.execute(
                    text(
                        "INSERT INTO history_run (id, job_id, dataset_id, workflowtask_dump, "
                        "task_dump, timestamp_started, status) "
                        "VALUES (1, 1, 1, '{}', '{}', '2026-01-02', 'done')"
                    )
                )
                await connection.commit()
            await database.dispose()
            return [tuple(row) for row in jobs], [tuple(row) for row in images]

    jobs, images = asyncio.run(run())
    assert images == [(1, "/z/a")]
    assert len(jobs) == 1
    job_id, status, applied, attribute_filters, type_filters, error_log = jobs[0]  # type: ignore[misc]
    assert (job_id, status, applied, error_log) == (1, "done", 3, None)
    assert attribute_filters in ({}, "{}") and type_filters in ({}, "{}")
