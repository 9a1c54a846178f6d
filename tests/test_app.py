"""The extension app: configuration, start-up migrations, the OpenAPI document, the demo."""

import asyncio
import re
import sqlite3
from pathlib import Path

import pytest
from openapi_spec_validator import validate
from sqlalchemy import text

from fractal_jupyter import FractalJupyter, _jupyter_server_extension_points, demo
from fractal_jupyter.db.engine import MIGRATIONS_DIR, Database
from fractal_jupyter.handlers.base import operations_of
from fractal_jupyter.handlers.routes import PREFIX, ROUTES
from tests.conftest import fractal_state_of


def test_extension_point_names_the_app():
    assert _jupyter_server_extension_points() == [
        {"module": "fractal_jupyter", "app": FractalJupyter}
    ]


def test_defaults_derive_from_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path))
    app = FractalJupyter()
    assert app.data_dir == str(tmp_path / "fractal")
    assert app.db_url == f"sqlite+aiosqlite:///{tmp_path}/fractal/fractal.db"
    assert app.default_username  # the OS user
    app = FractalJupyter(data_dir="/srv/f")
    assert app.db_url == "sqlite+aiosqlite:////srv/f/fractal.db"
    for name in ("db_url", "data_dir", "admin_users", "default_username"):
        trait = app.traits()[name]
        assert trait.metadata.get("config") is True and trait.help, name


def test_command_line_configuration():
    app = FractalJupyter()
    app.parse_command_line(
        ["--FractalJupyter.db_url=sqlite+aiosqlite:////x.db", "--FractalJupyter.admin_users=a"]
    )
    assert app.db_url == "sqlite+aiosqlite:////x.db"
    assert app.admin_users == {"a"}


async def test_anonymous_jupyter_identity_is_the_default_user(jp_fetch, jp_serverapp):
    """With Jupyter's own token identity, every caller is `default_username`."""
    from jupyter_server.auth.identity import IdentityProvider

    jp_serverapp.identity_provider.__class__ = IdentityProvider
    first = await jp_fetch("fractal", "auth/current-user/")
    second = await jp_fetch("fractal", "auth/current-user/")
    import getpass
    import json

    body = json.loads(first.body)
    assert body["username"] == getpass.getuser()
    assert json.loads(second.body)["id"] == body["id"]


def _tables(path):
    with sqlite3.connect(path) as connection:
        return {row[0] for row in connection.execute("select name from sqlite_master")}


def test_migrations_create_upgrade_and_rerun(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path}/f.db"

    async def run():
        database = Database(url)
        await database.upgrade()
        async with database.session(write=True) as session:
            await session.execute(
                text(
                    "insert into project (name, timestamp_created) "
                    "values ('kept', '2024-01-01 00:00:00')"
                )
            )
        await database.dispose()
        # A second start on the same file: nothing to do, nothing lost.
        again = Database(url)
        await again.upgrade()
        async with again.session() as session:
            names = (await session.scalars(text("select name from project"))).all()
            version = await session.scalar(text("select version_num from alembic_version"))
        await again.dispose()
        return names, version

    names, version = asyncio.run(run())
    assert names == ["kept"]
    revisions = sorted(path.name.split("_")[0] for path in MIGRATIONS_DIR.glob("versions/*.py"))
    assert version == revisions[-1]
    assert {"image", "image_attribute", "attribute_summary"} <= _tables(tmp_path / "f.db")
    with sqlite3.connect(tmp_path / "f.db") as connection:
        assert connection.execute("pragma journal_mode").fetchone()[0] == "wal"


async def test_openapi_document_lists_every_route(api):
    status, document = await api("GET", "openapi.json", headers={"Authorization": ""})
    assert status == 200
    validate(document)
    assert document["openapi"].startswith("3.1")
    for route in ROUTES:
        served = document["paths"][PREFIX + route.path]
        assert set(served) == set(operations_of(route.handler)), route.path
        for name in re.findall(r"\{(\w+)\}", route.path):
            for operation in served.values():
                assert {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer"},
                } in operation["parameters"]
    create = document["paths"]["/fractal/api/v2/project/"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ProjectCreate"
    }
    assert "201" in create["responses"]
    query = document["paths"][
        "/fractal/api/v2/project/{project_id}/dataset/{dataset_id}/images/query/"
    ]
    names = {p["name"] for p in query["post"]["parameters"]}
    assert {"page", "page_size", "use_dataset_filters"} <= names
    assert document["components"]["schemas"]["ImagePage"]["required"]


def test_demo_runs_a_job(tmp_path, capsys):
    assert demo.main(["--no-wait", "--data-dir", str(tmp_path), "--port", "0"]) == 0
    first = capsys.readouterr().out
    assert "demo project 1, dataset 1, job 1: done" in first
    assert "workflow tasks: done, done, done" in first
    assert "images: 96, of which" in first
    log = re.search(r"job log: (\S+)", first)
    assert log and "END 2-th task" in Path(log.group(1)).read_text()
    # Again on the same database: schema kept, tasks and workflow reused, a new dataset.
    assert demo.main(["--no-wait", "--data-dir", str(tmp_path), "--port", "0"]) == 0
    assert "demo project 1, dataset 2, job 2: done" in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["postgresql+asyncpg://nobody@127.0.0.1:1/none"])
async def test_unreachable_database_is_a_503(bad, api, jp_serverapp):
    state = fractal_state_of(jp_serverapp)
    # The test database's own preparation ends and its connections close before the swap:
    # left running, its aiosqlite thread would answer this test's event loop once it is closed.
    await state.ensure_ready()
    await state.database.dispose()
    state.database = Database(bad)
    state._ready = None
    status, body = await api("GET", "api/v2/project/", user="someone-new")
    assert status == 503 and "database" in body["detail"]


def test_every_route_says_whether_it_needs_authentication(jp_serverapp):
    """Jupyter checks this of the handlers an extension registers; the route table loads with
    the first request (handlers/dispatch.py), past that check, so it runs here."""
    from fractal_jupyter.handlers.routes import tornado_handlers

    check = jp_serverapp.web_app._check_handler_auth
    assert [
        problem for path, handler in tornado_handlers() for problem in check(path, handler)
    ] == []
