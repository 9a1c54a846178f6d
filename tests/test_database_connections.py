"""How a server uses a database server: its pool, timeouts and name (FractalJupyter.db_*),
and what an idle server holds, seen from PostgreSQL itself (pg_stat_activity).

bench/idle_servers.py measures 300 idle servers; these tests check the behaviour of one.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from fractal_jupyter import FractalJupyter
from fractal_jupyter.db.engine import ConnectionSettings, Database
from tests.conftest import TEST_DB_URL, Api, fractal_state_of
from tests.support.jobs import wait_for_job
from tests.support.peer import free_port
from tests.test_idle import _setup, _submit_params

on_postgresql = pytest.mark.skipif(TEST_DB_URL is None, reason="needs FRACTAL_TEST_DB_URL")
SHARED_URL = "postgresql+asyncpg://f:f@db.example.org/fractal"


def test_the_connection_settings_reach_the_driver():
    app = FractalJupyter(
        db_url=SHARED_URL,
        db_pool_size=2,
        db_max_overflow=0,
        db_pool_pre_ping=False,
        db_connect_timeout=3.0,
        db_statement_timeout=0.0,
        server_owner="alice",
    )
    settings = app.connection_settings()
    arguments = settings.engine_arguments("asyncpg")
    assert (arguments["pool_size"], arguments["max_overflow"], arguments["pool_pre_ping"]) == (
        2,
        0,
        False,
    )
    assert arguments["connect_args"] == {
        "timeout": 3.0,
        "server_settings": {"application_name": "fractal_jupyter alice"},
    }
    database = Database(SHARED_URL, connections=settings)
    assert database.engine.pool.size() == 2  # type: ignore[attr-defined]
    with_timeout = ConnectionSettings(statement_timeout=1.5)
    assert with_timeout.engine_arguments("asyncpg")["connect_args"]["command_timeout"] == 1.5
    psycopg = with_timeout.engine_arguments("psycopg")["connect_args"]
    assert psycopg["options"] == "-c statement_timeout=1500" and psycopg["connect_timeout"] == 10
    # Migrations wait as long as they take.
    assert "command_timeout" not in with_timeout.migration_arguments("asyncpg")["connect_args"]


def test_defaults_are_small():
    settings = FractalJupyter(db_url=SHARED_URL).connection_settings()
    assert (settings.pool_size, settings.max_overflow) == (1, 4)
    assert settings.pre_ping and settings.connect_timeout == 10 and settings.statement_timeout == 60


@on_postgresql
async def test_a_statement_over_the_timeout_is_cancelled(database_url: str):
    database = Database(database_url, connections=ConnectionSettings(statement_timeout=0.3))
    started = time.monotonic()
    with pytest.raises(Exception) as cancelled:
        async with database.engine.connect() as connection:
            await connection.execute(text("SELECT pg_sleep(5)"))
    await database.dispose()
    assert time.monotonic() - started < 3, cancelled.value


@pytest.fixture
def fractal_config(
    fractal_config: dict[str, Any], database_url: str, request: Any
) -> dict[str, Any]:
    return {
        **fractal_config,
        "db_url": database_url,
        "migrate_on_start": True,
        "server_owner": "alice",
        **getattr(request, "param", {}),
    }


@on_postgresql
@pytest.mark.parametrize(
    "fractal_config",
    [{"db_pool_size": 1, "db_max_overflow": 0, "db_pool_timeout": 0.3}],
    indirect=True,
)
async def test_a_request_that_finds_no_free_connection_is_a_503(
    api: Api, jp_serverapp: Any
) -> None:
    status, _ = await api("GET", "api/v2/project/")
    assert status == 200
    database = fractal_state_of(jp_serverapp).database
    async with database.engine.connect() as connection:  # the pool's only connection
        await connection.execute(text("SELECT 1"))
        status, body = await api("GET", "api/v2/project/")
    assert status == 503, body
    assert body["detail"].startswith("The database is busy or unavailable; nothing was changed")
    status, _ = await api("GET", "api/v2/project/")
    assert status == 200


async def _our_connections(database_name: str) -> list[tuple[Any, ...]]:
    """Each connection of the server to its database: pid, state, when its state last
    changed (any statement changes it: idle -> active -> idle)."""
    assert TEST_DB_URL is not None
    observer = create_async_engine(make_url(TEST_DB_URL))
    try:
        async with observer.connect() as connection:
            rows = await connection.execute(
                text(
                    "SELECT pid, state, state_change FROM pg_stat_activity "
                    "WHERE datname = :name AND application_name = 'fractal_jupyter alice' "
                    "ORDER BY pid"
                ),
                {"name": database_name},
            )
            return [tuple(row) for row in rows]
    finally:
        await observer.dispose()


@on_postgresql
async def test_an_idle_server_holds_one_connection_and_sends_nothing(
    api: Api, database_url: str, tmp_path: Any
):
    """After concurrent requests and a job (the job watcher's busy time), an idle server
    keeps at most db_pool_size (1) connections, and PostgreSQL sees no statement from it."""
    project_path, dataset, workflow = await _setup(api, tmp_path)
    answers = await asyncio.gather(*(api("GET", project_path + "dataset/") for _ in range(6)))
    assert [status for status, _ in answers] == [200] * 6
    status, job = await api(
        "POST", f"{project_path}job/submit/", {}, params=_submit_params(workflow, dataset)
    )
    assert status == 202, job
    job = await wait_for_job(api, project_path, job["id"], timeout=60)
    assert job["status"] == "done", job["log"]
    name = make_url(database_url).database
    assert name is not None
    await asyncio.sleep(1.5)  # the watcher's last passes after the job's end
    before = await _our_connections(name)
    await asyncio.sleep(3.0)
    after = await _our_connections(name)
    assert len(after) <= 1, after
    assert after == before  # the same connection, whose state did not change: no statement
    assert all(state == "idle" for _, state, _ in after)


@pytest.fixture
def pgbouncer_url() -> Any:
    """A PgBouncer in transaction pooling mode in front of the test database (3 backends)."""
    binary = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None
    )
    if TEST_DB_URL is None or binary is None:
        pytest.skip(
            "SKIPPED ON PURPOSE: needs FRACTAL_TEST_DB_URL and pgbouncer "
            "(scripts/postgres-test.sh installs it when run as root)"
        )
    target = make_url(TEST_DB_URL)
    folder = Path(tempfile.mkdtemp(prefix="fractal-pgbouncer-"))
    folder.chmod(0o755)  # PgBouncer runs as `postgres` when started by root
    port = free_port()
    (folder / "users.txt").write_text(f'"{target.username}" "{target.password}"\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={target.host} port={target.port}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = plain\nauth_file = {folder / 'users.txt'}\n"
        "pool_mode = transaction\ndefault_pool_size = 3\n"
    )
    for path in folder.iterdir():
        path.chmod(0o644)
    user = ["-u", "postgres"] if os.geteuid() == 0 else []
    process = subprocess.Popen(
        [binary, *user, str(folder / "pgbouncer.ini")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, "pgbouncer did not start"
                assert time.monotonic() < deadline, "pgbouncer does not listen"
                time.sleep(0.1)
        yield target.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


async def _clients_through(url: str, transaction_pooling: bool) -> list[str]:
    """8 servers' worth of transactions through the pooler; the errors they met."""

    async def one_server(number: int) -> list[str]:
        settings = ConnectionSettings(transaction_pooling=transaction_pooling)
        database = Database(url, connections=settings)
        errors = []
        for round_ in range(15):
            try:
                async with database.engine.begin() as connection:
                    await connection.execute(text("SELECT :n + 1"), {"n": round_})
                    await connection.execute(
                        text("SELECT count(*) FROM user_account WHERE id > :n"), {"n": number}
                    )
            except Exception as error:
                errors.append(str(error).splitlines()[0])
        await database.dispose()
        return errors

    found = await asyncio.gather(*(one_server(number) for number in range(8)))
    return [error for errors in found for error in errors]


async def test_db_transaction_pooling_works_behind_pgbouncer(pgbouncer_url: str):
    assert await _clients_through(pgbouncer_url, transaction_pooling=True) == []
    # Without the setting, prepared statements meet the wrong backends.
    failures = await _clients_through(pgbouncer_url, transaction_pooling=False)
    assert any("prepared statement" in failure for failure in failures), failures
