"""Row-level security on a shared PostgreSQL (fractal_jupyter/db/row_security.py).

Three login roles on a database of the test's own: alice (whose server the test runs, with
herself in `admin_users`), bob, and an administrator who is a member of `fractal_admin`. What
each may see and change is checked through the API and through direct connections with the
role's own password: the database keeps a user to their rows whatever they do.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from fractal_jupyter.cli.db import upgrade
from fractal_jupyter.db import row_security
from fractal_jupyter.db.engine import Database
from fractal_jupyter.schemas.dataset import DatasetCreate
from fractal_jupyter.schemas.project import ProjectCreate
from fractal_jupyter.services.dataset import create_dataset
from fractal_jupyter.services.project import create_project
from fractal_jupyter.services.users import caller
from tests.conftest import TEST_DB_URL, fractal_state_of
from tests.support.jobs import make_workflow, register_tasks, wait_for_job

on_postgresql = pytest.mark.skipif(
    TEST_DB_URL is None,
    reason="needs FRACTAL_TEST_DB_URL: row-level security is PostgreSQL's (the CI runs it)",
)
PASSWORD = "a-test-role-password"
PLATE = {"rows": "A", "columns": 2, "fields": 1}


@dataclass(frozen=True)
class Roles:
    owner_url: str
    alice: str
    bob: str
    admin: str

    def url(self, role: str) -> str:
        own = make_url(self.owner_url).set(username=role, password=PASSWORD)
        return own.render_as_string(hide_password=False)


async def run_sql(url: str, sql: str, **parameters: Any) -> Any:
    """Rows of a SELECT, else the row count; one transaction, committed."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            result = await connection.execute(text(sql), parameters)
            return result.all() if result.returns_rows else result.rowcount
    finally:
        await engine.dispose()


async def refusal(url: str, sql: str, **parameters: Any) -> str:
    """The database's error for a statement that must fail."""
    with pytest.raises(DBAPIError) as error:
        await run_sql(url, sql, **parameters)
    return str(error.value.orig)


@pytest.fixture
def roles(database_url: str, jp_asyncio_loop: Any) -> Iterator[Roles]:
    if TEST_DB_URL is None:
        pytest.skip("needs FRACTAL_TEST_DB_URL: row-level security is PostgreSQL's")
    suffix = uuid.uuid4().hex[:8]
    found = Roles(database_url, f"alice_{suffix}", f"bob_{suffix}", f"admin_{suffix}")
    names = (found.alice, found.bob, found.admin)

    async def make() -> None:
        await upgrade(database_url, row_security=True)
        for name in names:
            await run_sql(
                database_url,
                f"CREATE ROLE {name} LOGIN PASSWORD '{PASSWORD}' IN ROLE {row_security.USER_ROLE} "
                # The test's role joins it, to end its sessions (DROP DATABASE ... FORCE).
                "ROLE current_user",
            )
        await run_sql(database_url, f"GRANT {row_security.ADMIN_ROLE} TO {found.admin}")

    async def drop() -> None:
        # A server of the test may still be closing: no new session, then end the old ones.
        for name in names:
            await run_sql(database_url, f"ALTER ROLE {name} NOLOGIN")
            await run_sql(
                database_url,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :name",
                name=name,
            )
            await run_sql(database_url, f"DROP ROLE IF EXISTS {name}")

    jp_asyncio_loop.run_until_complete(make())
    yield found
    jp_asyncio_loop.run_until_complete(drop())


@pytest.fixture
def fractal_config(
    fractal_config: dict[str, Any], roles: Roles, tmp_path: Any, monkeypatch: Any
) -> dict[str, Any]:
    """Alice's server, on her own role, configured (by her) as an administrator. Its db_url
    holds no password: asyncpg reads hers from her password file, as on a hub."""
    url = make_url(roles.url(roles.alice))
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"{url.host}:{url.port}:{url.database}:{url.username}:{PASSWORD}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    shared = URL.create(url.drivername, url.username, None, url.host, url.port, url.database)
    return {**fractal_config, "db_url": str(shared), "admin_users": [roles.alice]}


async def bobs_project(roles: Roles, zarr_dir: str) -> tuple[int, int]:
    """Bob's project and dataset, made by the services on his own role: (project, dataset)."""
    database = Database(roles.url(roles.bob))
    try:
        async with database.session(write=True) as session:
            bob = await caller(session, roles.bob, False)
            project = await create_project(session, bob, ProjectCreate(name="bob's"))
            dataset = await create_dataset(
                session, bob, project.id, DatasetCreate(name="d", zarr_dir=zarr_dir), zarr_dir
            )
            return project.id, dataset.id
    finally:
        await database.dispose()


async def alices_project(
    api: Any, roles: Roles, zarr_dir: str, *, image: bool = True
) -> tuple[str, dict[str, Any]]:
    """Alice's project (its API path) and dataset (with one image), made through her server."""
    status, project = await api("POST", "api/v2/project/", {"name": "alice's"}, user=roles.alice)
    assert status == 201, project
    path = f"api/v2/project/{project['id']}/"
    status, dataset = await api(
        "POST", path + "dataset/", {"name": "d", "zarr_dir": zarr_dir}, user=roles.alice
    )
    assert status == 201, dataset
    if not image:
        return path, dataset
    status, answer = await api(
        "POST",
        f"{path}dataset/{dataset['id']}/images/",
        {"zarr_url": f"{zarr_dir}/plate.zarr/A/01/0", "attributes": {"well": "A01"}},
        user=roles.alice,
    )
    assert status == 201, answer
    return path, dataset


@on_postgresql
async def test_each_role_sees_and_changes_only_its_own_rows(api, roles, tmp_path):
    alice_path, alice_dataset = await alices_project(api, roles, str(tmp_path / "a"))
    bob_project, bob_dataset = await bobs_project(roles, str(tmp_path / "b"))
    alice, bob, admin = (roles.url(name) for name in (roles.alice, roles.bob, roles.admin))

    projects = "SELECT name FROM project ORDER BY name"
    assert await run_sql(alice, projects) == [("alice's",)]
    assert await run_sql(bob, projects) == [("bob's",)]
    assert await run_sql(admin, projects) == [("alice's",), ("bob's",)]
    for table in ("image", "image_attribute", "attribute_summary"):
        assert await run_sql(alice, f"SELECT count(*) FROM {table}") == [(1,)], table
        assert await run_sql(bob, f"SELECT count(*) FROM {table}") == [(0,)], table
        assert await run_sql(admin, f"SELECT count(*) FROM {table}") == [(1,)], table
    assert await run_sql(bob, "SELECT id FROM dataset") == [(bob_dataset,)]

    # Other users' rows cannot be changed, deleted, or reached by joining their project.
    changed = "UPDATE project SET name = 'taken' WHERE id = :id"
    assert await run_sql(alice, changed, id=bob_project) == 0
    assert await run_sql(alice, "DELETE FROM dataset WHERE id = :id", id=bob_dataset) == 0
    assert await run_sql(admin, "SELECT name FROM project WHERE id = :id", id=bob_project) == [
        ("bob's",)
    ]
    alice_id = (await run_sql(alice, "SELECT fractal_user_id()"))[0][0]
    joined = await refusal(
        alice,
        "INSERT INTO link_user_project (project_id, user_id) VALUES (:project, :user)",
        project=bob_project,
        user=alice_id,
    )
    assert "row-level security" in joined
    planted = await refusal(
        alice,
        "INSERT INTO image (dataset_id, zarr_url, attributes, types) "
        "VALUES (:dataset, '/x/y.zarr/A/01/0', '{}', '{}')",
        dataset=bob_dataset,
    )
    assert "row-level security" in planted

    # The API on top agrees (it checks membership too).
    status, listed = await api("GET", "api/v2/project/", user=roles.alice)
    assert status == 200 and [project["name"] for project in listed] == ["alice's"]
    status, images = await api(
        "POST", f"{alice_path}dataset/{alice_dataset['id']}/images/query/", user=roles.alice
    )
    assert status == 200 and [image["zarr_url"] for image in images["images"]] == [
        f"{tmp_path}/a/plate.zarr/A/01/0"
    ]


@on_postgresql
async def test_administrators_are_who_the_database_says(api, roles, jp_serverapp):
    alice = roles.url(roles.alice)
    # admin_users names alice in her own configuration: that gives her nothing.
    status, me = await api("GET", "auth/current-user/", user=roles.alice)
    assert status == 200 and me["is_superuser"] is False, me
    status, answer = await api("GET", "admin/v2/project/", user=roles.alice)
    assert status == 403, answer

    # Nor can she make herself one, or change the schema.
    raised = await refusal(
        alice, "UPDATE user_account SET is_superuser = true WHERE username = session_user"
    )
    assert "row-level security" in raised
    for statement in (
        "UPDATE user_account SET is_active = true WHERE username = session_user",
        f"DELETE FROM user_account WHERE username = '{roles.bob}'",
        f"GRANT {row_security.ADMIN_ROLE} TO {roles.alice}",
        "CREATE TABLE mine (x integer)",
        "DROP POLICY fractal_select ON project",
    ):
        message = await refusal(alice, statement)
        assert any(
            refused in message
            for refused in ("permission denied", "must be owner", "must have admin option")
        ), message

    # The database's administrators are the members of fractal_admin.
    database = Database(roles.url(roles.admin))
    try:
        identity = await database.identity()
    finally:
        await database.dispose()
    assert identity is not None and identity.role == roles.admin
    # (Other tests' administrators may be there too: roles belong to the whole server.)
    assert roles.admin in identity.admins and roles.alice not in identity.admins

    # Once a database administrator grants it, alice's server makes her one (within a minute:
    # at its next schema check, made at once here).
    await run_sql(roles.owner_url, f"GRANT {row_security.ADMIN_ROLE} TO {roles.alice}")
    fractal_state_of(jp_serverapp).schema_reverify_seconds = 0.0
    status, me = await api("GET", "auth/current-user/", user=roles.alice)
    assert status == 200 and me["is_superuser"] is True, me
    status, answer = await api("GET", "admin/v2/project/", user=roles.alice)
    assert status == 200, answer


@on_postgresql
async def test_a_server_serves_only_the_user_of_its_database_role(api, roles):
    status, answer = await api("GET", "api/v2/project/", user=roles.bob)
    assert status == 403
    assert answer["detail"].startswith(
        f"This server reaches the Fractal database as '{roles.alice}', whose rows are not "
        f"'{roles.bob}''s"
    ), answer


@on_postgresql
async def test_a_job_runs_and_task_groups_stay_their_owners(api, roles, tmp_path):
    alices = functools.partial(api, user=roles.alice)
    tasks = await register_tasks(api, user=roles.alice)
    path, dataset = await alices_project(api, roles, str(tmp_path / "zarr"), image=False)
    workflow = await make_workflow(
        alices,
        path,
        "wf",
        [
            (tasks["Create demo plate"], {"args_non_parallel": PLATE}),
            (tasks["Measure intensity"], {}),
        ],
    )
    status, job = await alices(
        "POST",
        path + "job/submit/",
        {},
        params={"workflow_id": str(workflow["id"]), "dataset_id": str(dataset["id"])},
    )
    assert status == 202, job
    job = await wait_for_job(alices, path, job["id"])
    assert job["status"] == "done", job["log"]
    status, images = await alices("POST", f"{path}dataset/{dataset['id']}/images/query/")
    assert status == 200 and images["total_count"] == 2, images  # the plate's
    rows = await run_sql(roles.url(roles.alice), "SELECT count(*) FROM history_unit")
    assert rows[0][0] >= 2

    # Bob may mark alice's task group used (a job of his ran its tasks), not change it.
    bob = roles.url(roles.bob)
    group = "SELECT id FROM task_group WHERE user_id = (SELECT id FROM user_account "
    group += f"WHERE username = '{roles.alice}') LIMIT 1"
    used = f"UPDATE task_group SET timestamp_last_used = now() WHERE id = ({group})"
    assert await run_sql(bob, used) == 1
    changed = f"UPDATE task_group SET active = false WHERE id = ({group})"
    assert "is not yours" in await refusal(bob, changed)
    assert await run_sql(roles.url(roles.alice), changed) == 1


@on_postgresql
async def test_a_migration_rewrites_the_policies(roles):
    owner = roles.owner_url
    await run_sql(owner, "DROP POLICY fractal_select ON image")
    await run_sql(owner, "UPDATE alembic_version SET version_num = '0009'")
    await upgrade(owner)  # no --row-security: the database has it, so it keeps it
    policies = await run_sql(
        owner, "SELECT policyname FROM pg_policies WHERE tablename = 'image' ORDER BY 1"
    )
    assert [name for (name,) in policies] == [
        "fractal_delete",
        "fractal_insert",
        "fractal_select",
        "fractal_update",
    ]
    assert await run_sql(owner, "SELECT version_num FROM alembic_version") == [("0010",)]


def test_every_table_has_its_policies(monkeypatch):
    from fractal_jupyter.db.models import Base

    written = "\n".join(row_security.statements())
    for table in Base.metadata.tables:
        assert f'CREATE POLICY fractal_select ON "{table}"' in written, table
    monkeypatch.delitem(row_security.TABLE_POLICIES, "image_type")
    with pytest.raises(RuntimeError, match="without row-security policies: image_type"):
        row_security.statements()
