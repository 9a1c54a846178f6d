"""A server whose database schema is not its own: older (run `jupyter fractal db upgrade`),
newer (upgrade fractal-jupyter), or changed under it while it runs.

Each test has a database of its own (a fresh PostgreSQL database with
`FRACTAL_TEST_DB_URL`), prepared before the server starts.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from fractal_jupyter import FractalJupyter
from fractal_jupyter.cli.db import upgrade
from fractal_jupyter.db.engine import Database, SchemaMismatch, alembic_config
from fractal_jupyter.state import FractalState
from tests.conftest import Api, fractal_state_of
from tests.services.test_migrations import _upgrade_to

SCRIPTS = ScriptDirectory.from_config(alembic_config())
HEAD = SCRIPTS.get_current_head()
assert HEAD is not None
PREVIOUS = SCRIPTS.get_revision(HEAD).down_revision
NEWER = "9999_newer"
OLDER_SERVER = "This server is older than its database; upgrade fractal-jupyter."
RUN_UPGRADE = "run jupyter fractal db upgrade"


def _set_revision(revision: str) -> Any:
    def run(connection: Connection) -> None:
        connection.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})

    return run


async def _prepare(url: str, schema: str) -> None:
    """The database as the test wants it: 'empty', a revision, or 'newer' (head, then
    stamped with a revision this package does not know)."""
    if schema == "empty":
        return
    database = Database(url)
    async with database.engine.begin() as connection:
        await connection.run_sync(_upgrade_to(HEAD if schema == "newer" else schema))
        if schema == "newer":
            await connection.run_sync(_set_revision(NEWER))
    await database.dispose()


async def _stamp(url: str, revision: str) -> None:
    database = Database(url)
    async with database.engine.begin() as connection:
        await connection.run_sync(_set_revision(revision))
    await database.dispose()


@pytest.fixture
def fractal_config(
    fractal_config: dict[str, Any], database_url: str, request: Any, jp_asyncio_loop: Any
) -> dict[str, Any]:
    schema, migrate_on_start = getattr(request, "param", ("head", None))
    jp_asyncio_loop.run_until_complete(_prepare(database_url, schema))
    config = {**fractal_config, "db_url": database_url}
    if migrate_on_start is not None:
        config["migrate_on_start"] = migrate_on_start
    return config


def fractal_state(jp_serverapp: Any) -> FractalState:
    state = fractal_state_of(jp_serverapp)
    assert isinstance(state, FractalState)
    return state


def count_schema_checks(state: FractalState) -> list[None]:
    checks: list[None] = []
    original = state.database.schema_status

    async def counted() -> Any:
        checks.append(None)
        return await original()

    state.database.schema_status = counted  # type: ignore[method-assign]
    return checks


def test_migrate_on_start_defaults_to_true_only_for_sqlite(tmp_path):
    assert FractalJupyter(data_dir=str(tmp_path)).migrate_on_start is True
    shared = FractalJupyter(db_url="postgresql+asyncpg://f:f@db.example.org/fractal")
    assert shared.migrate_on_start is False
    assert FractalJupyter(db_url=shared.db_url, migrate_on_start=True).migrate_on_start is True


@pytest.mark.parametrize("fractal_config", [("newer", True), ("newer", False)], indirect=True)
async def test_a_newer_schema_is_a_503_on_every_route_until_this_server_fits(
    api: Api, jp_fetch: Any, jp_serverapp: Any, database_url: str
):
    """Whether or not the server may migrate: it says it is too old, on every Fractal route
    (api/alive/ too), with the header that tells clients not to retry; between two looks
    at the database requests cost no query; a database that fits again is picked up."""
    state = fractal_state(jp_serverapp)
    state.schema_recheck_seconds = 0.5
    status, body = await api("GET", "api/v2/project/")
    assert status == 503, body
    assert body["detail"].startswith(OLDER_SERVER), body
    assert f"revision {NEWER}" in body["detail"] and f"newest is {HEAD}" in body["detail"]
    checks = count_schema_checks(state)
    for path in ("api/v2/project/", "auth/current-user/", "api/alive/", "api/v2/task/"):
        response = await jp_fetch(
            "fractal", path, headers={"X-Test-User": "alice"}, raise_error=False
        )
        assert response.code == 503, path
        assert response.headers["X-Fractal-Unavailable"] == "schema"
        assert OLDER_SERVER in response.body.decode()
    status, _ = await api("POST", "api/v2/project/", {"name": "p"})
    assert status == 503
    assert checks == []  # within schema_recheck_seconds: no query
    # The database is back at this server's revision (a downgrade, here by hand).
    await _stamp(database_url, HEAD)
    await asyncio.sleep(0.6)
    status, body = await api("POST", "api/v2/project/", {"name": "p"})
    assert status == 201, body
    status, body = await api("GET", "api/alive/")
    assert status == 200 and body["alive"] is True
    assert len(checks) == 1


@pytest.mark.parametrize("fractal_config", [(PREVIOUS, False), ("empty", False)], indirect=True)
async def test_an_older_schema_waits_for_the_admin_upgrade(
    api: Api, jp_serverapp: Any, database_url: str
):
    """Without migrate_on_start (a shared database) the server does not migrate: it asks
    for `jupyter fractal db upgrade`, and serves once the administrator ran it."""
    state = fractal_state(jp_serverapp)
    state.schema_recheck_seconds = 0.3
    status, body = await api("GET", "api/v2/project/")
    assert status == 503, body
    assert RUN_UPGRADE in body["detail"] and f"needs revision {HEAD}" in body["detail"]
    checks = count_schema_checks(state)
    status, again = await api("GET", "api/alive/")
    assert (status, again) == (503, body)
    assert checks == []
    before, after = await upgrade(database_url)
    assert before in (PREVIOUS, None)
    assert after == HEAD
    await asyncio.sleep(0.4)
    status, body = await api("POST", "api/v2/project/", {"name": "p"})
    assert status == 201, body
    assert state._watcher is not None  # following jobs, as after a normal start


async def test_a_schema_changed_under_a_running_server_is_found_out(
    api: Api, jp_serverapp: Any, database_url: str
):
    """A newer fractal-jupyter migrates the database while this server runs (here: it
    renames a column): the request that meets the change fails, the next ones say why."""
    status, _ = await api("POST", "api/v2/project/", {"name": "p"})
    assert status == 201  # the state is built with the first Fractal request
    state = fractal_state(jp_serverapp)
    state.schema_recheck_seconds = 0.3
    database = Database(database_url)
    async with database.engine.begin() as connection:
        await connection.execute(text("ALTER TABLE project RENAME COLUMN name TO title"))
        await connection.run_sync(_set_revision(NEWER))
    await database.dispose()
    status, _ = await api("GET", "api/v2/project/")
    assert status in (500, 503)  # the unknown column itself
    status, body = await api("GET", "api/v2/project/")
    assert status == 503 and body["detail"].startswith(OLDER_SERVER), body


def test_db_upgrade_refuses_a_newer_schema(database_url: str):
    """Nothing to migrate to: the refusal names the revisions and leaves the data alone."""
    asyncio.run(_prepare(database_url, "newer"))
    with pytest.raises(SchemaMismatch) as refused:
        asyncio.run(upgrade(database_url))
    assert refused.value.newer and str(refused.value).startswith(OLDER_SERVER)


async def test_a_migration_by_a_newer_server_is_seen_within_a_minute_of_requests(
    api: Api, jp_serverapp: Any, database_url: str
):
    """A migration that breaks none of this server's statements (a new table, say) is
    found by the check a running server repeats while requests come
    (`schema_reverify_seconds`), not by a failing write."""
    status, _ = await api("GET", "api/v2/project/")
    assert status == 200  # the state is built with the first Fractal request
    state = fractal_state(jp_serverapp)
    state.schema_reverify_seconds = 0.5
    checks = count_schema_checks(state)
    for _ in range(3):
        status, _ = await api("GET", "api/v2/project/")
        assert status == 200
    assert checks == []  # within the minute (here: half a second), no query
    await _stamp(database_url, NEWER)
    await asyncio.sleep(0.6)
    status, body = await api("GET", "api/v2/project/")
    assert status == 503 and body["detail"].startswith(OLDER_SERVER), body
    assert len(checks) == 1
