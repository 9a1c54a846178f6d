"""Shared fixtures: a Jupyter server with fractal_jupyter, and several identities.

`FRACTAL_TEST_DB_URL` switches the database from a per-test SQLite file to a shared server
(PostgreSQL), whose tables are emptied between tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from jupyter_server.auth.identity import IdentityProvider, User
from tornado.httpclient import HTTPClientError, HTTPResponse

pytest_plugins = ["pytest_jupyter.jupyter_server"]

TEST_DB_URL = os.environ.get("FRACTAL_TEST_DB_URL")


class HeaderIdentityProvider(IdentityProvider):  # type: ignore[misc]
    """Test identities: a valid token plus `X-Test-User: <name>` makes the caller <name>."""

    async def get_user(self, handler: Any) -> User | None:
        user = await super().get_user(handler)
        if user is None:
            return None
        return User(username=handler.request.headers.get("X-Test-User", "alice"))


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database at the newest migration, made once: each test's server starts on a
    copy (a check of the schema) instead of migrating an empty file (0.2-0.4 s a test).
    The migrations themselves are tested on empty and older databases (test_app.py,
    test_schema.py), which do not use this."""
    from fractal_jupyter.db.engine import Database

    path = tmp_path_factory.mktemp("migrated") / "fractal.db"

    async def migrate() -> None:
        database = Database(f"sqlite+aiosqlite:///{path}")
        await database.upgrade()
        await database.dispose()

    # In a thread of its own: no event loop of the tests' is touched.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, migrate()).result()
    return path


@pytest.fixture
def fractal_config(tmp_path: Path, migrated_sqlite: Path) -> dict[str, Any]:
    if TEST_DB_URL is None:
        shutil.copyfile(migrated_sqlite, tmp_path / "fractal.db")
    return {
        "db_url": TEST_DB_URL or f"sqlite+aiosqlite:///{tmp_path}/fractal.db",
        "data_dir": str(tmp_path / "fractal-data"),
        "admin_users": ["admin"],
        "job_poll_interval": 0.1,
        "submit_rate_limit_seconds": 0.0,
        "local_max_workers": 2,
        # Each test has its own environment (PYTEST_CURRENT_TEST): a warm starter kept for
        # later jobs would serve none. tests/runner/test_warm.py and test_restart.py keep them.
        "warm_start_keep_seconds": 0.0,
    }


@pytest.fixture
def jp_server_config(fractal_config: dict[str, Any]) -> dict[str, Any]:
    return {
        "ServerApp": {
            "jpserver_extensions": {"fractal_jupyter": True, "jupyter_server_terminals": False},
            "identity_provider_class": HeaderIdentityProvider,
            "allow_unauthenticated_access": False,
        },
        "FractalJupyter": fractal_config,
    }


@pytest.fixture(autouse=True)
def _empty_shared_database(jp_asyncio_loop: Any) -> None:
    """On a shared database server, every test starts from empty tables."""
    if TEST_DB_URL is None:
        return
    from sqlalchemy import text

    from fractal_jupyter.db.engine import Database
    from fractal_jupyter.db.models import Base

    async def truncate() -> None:
        database = Database(TEST_DB_URL)
        await database.upgrade()
        names = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
        async with database.session(write=True) as session:
            # A test that ended during a request leaves that request's connection open (its
            # event loop is gone), idle in a transaction: its locks would make TRUNCATE wait
            # forever. The servers of earlier tests are gone, so their connections go too.
            # Only the test role's own: a superuser's session (a test checking the admin's
            # view, psql) is not ours to end, and PostgreSQL refuses it.
            await session.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND usename = current_user"
                )
            )
            await session.execute(text("SET LOCAL lock_timeout = '60s'"))
            await session.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        await database.dispose()

    jp_asyncio_loop.run_until_complete(truncate())


@pytest.fixture
def database_url(tmp_path: Any, jp_asyncio_loop: Any) -> Any:
    """A database of the test's own (on PostgreSQL: a fresh one, dropped afterwards)."""
    from tests.support.databases import fresh_database_url

    manager = fresh_database_url(tmp_path)
    url = jp_asyncio_loop.run_until_complete(manager.__aenter__())
    yield url
    jp_asyncio_loop.run_until_complete(manager.__aexit__(None, None, None))


Api = Callable[..., Awaitable[Any]]


@pytest.fixture
def api(jp_fetch: Any) -> Api:
    """`await api("GET", "api/v2/project/", body=..., user="bob")` -> (status, parsed JSON).

    Errors do not raise: the status and the body are what tests look at.
    """

    async def call(
        method: str,
        path: str,
        body: Any = None,
        *,
        user: str = "alice",
        params: dict[str, Any] | None = None,
        raw_body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        request_headers = {"X-Test-User": user, **(headers or {})}
        kwargs: dict[str, Any] = {"method": method, "headers": request_headers}
        if params:
            kwargs["params"] = params
        if raw_body is not None:
            kwargs["body"] = raw_body
        elif body is not None:
            kwargs["body"] = json.dumps(body)
        elif method in ("POST", "PATCH", "PUT"):
            kwargs["body"] = b""
        try:
            response: HTTPResponse = await jp_fetch("fractal", path, **kwargs)
        except HTTPClientError as error:
            if error.response is None:
                raise
            response = error.response
        text = response.body.decode() if response.body else ""
        return response.code, json.loads(text) if text else None

    return call


@pytest.fixture
def project_path(api: Api, jp_asyncio_loop: Any) -> str:
    """The API path of a new project of alice's, `api/v2/project/<id>/`."""
    _, project = jp_asyncio_loop.run_until_complete(
        api("POST", "api/v2/project/", {"name": "project"})
    )
    return f"api/v2/project/{project['id']}/"


@pytest.fixture
def make_client(http_server: Any, jp_http_port: int, jp_base_url: str, jp_serverapp: Any) -> Any:
    """`make_client(user="alice")` -> a sync `FractalClient` of the test server, as <user>.

    The server runs on the test's event loop: call the client from another thread, e.g.
    `await in_thread(client.list_projects)`, never directly from an async test.
    """
    from fractal_jupyter.client import FractalClient

    clients: list[FractalClient] = []

    def make(user: str = "alice") -> FractalClient:
        client = FractalClient(
            f"http://127.0.0.1:{jp_http_port}{jp_base_url}",
            jp_serverapp.identity_provider.token,
            headers={"X-Test-User": user},
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def fractal_client(make_client: Any) -> Any:
    """A sync `FractalClient` of the test server as "alice" (see `make_client`)."""
    return make_client()


@pytest.fixture
def in_thread() -> Callable[..., Awaitable[Any]]:
    """`await in_thread(function, *args, **kwargs)`: a blocking call (a client call, a widget
    click) in a worker thread while the test's event loop keeps serving requests."""
    import asyncio
    import functools

    async def run(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(function, *args, **kwargs))

    return run


def fractal_state_of(serverapp: Any) -> Any:
    """The extension's state, built now if the server was waiting for a first Fractal
    request (on a current database with nothing under way it does not build it at start)."""
    [fractal] = serverapp.extension_manager.extension_apps["fractal_jupyter"]
    return fractal.fractal_state()


@pytest.fixture
def statements(jp_serverapp: Any) -> list[str]:
    """Every SQL statement the server sends from now on (its state is built now if the server
    was waiting for a first Fractal request)."""
    from sqlalchemy import event  # here: the server's own imports are lazy, the tests' too

    database = fractal_state_of(jp_serverapp).database
    sent: list[str] = []

    def record(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement)

    engines = [database.engine.sync_engine]
    if database._sync_engine is not None:
        engines.append(database._sync_engine)
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    yield sent
    for engine in engines:
        event.remove(engine, "before_cursor_execute", record)
