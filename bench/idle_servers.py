"""What hundreds of idle user servers cost one shared PostgreSQL: connections and queries.

On a JupyterHub most users' servers sit idle, all on one database. This starts `--servers`
simulated servers in `--processes` worker processes: each simulated server is the real
extension's state, built by `FractalJupyter.initialize_settings` from a `FractalJupyter`
configured as a user's server on the shared database (its own data_dir, `server_owner`, the
connection settings under test), started as the server starts it (`ensure_ready`: the
schema check, the job watcher) and then used as a user opening JupyterLab uses it: the
caller's user row, and a burst of `--burst` concurrent reads (the panel's first requests),
once. Then nothing calls it: the job watcher, the pool and the event loop are what runs.

After `--settle` seconds (PostgreSQL publishes an idle backend's counters within 10 s), it
reads, at the start and the end of an idle window of `--idle` seconds, from another database:

- connections: `pg_stat_activity` rows whose application_name is a bench server's
  ('fractal_jupyter <user>', set by the server), and how many of them ran a statement in the
  window (their `state_change` moved);
- transactions: `pg_stat_database` xact_commit + xact_rollback of the bench database (every
  statement the servers send runs in a transaction), and tup_returned + tup_fetched;
- statements: `pg_stat_statements` calls, when the extension is installed there.

Targets (issue 22): at most 1 connection and under 0.1 query/s per idle server.

The role of `--db-url` needs CREATEDB (the bench makes and drops a database of its own) and
the server `max_connections` above the servers' total (300 servers: 450, see
docs/benchmarks.md).

    .venv/bin/python bench/idle_servers.py --db-url "$(scripts/postgres-test.sh start)"
    .venv/bin/python bench/idle_servers.py --db-url ... --servers 60 --pool-size 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from bench.common import REPO_ROOT, progress, report_header

APPLICATION_PREFIX = "fractal_jupyter bench-"
READY = "ready"


# -- a worker process: `count` simulated servers, from `first` on -----------------------------


async def _start_server(
    db_url: str, root: Path, index: int, options: dict[str, Any], burst: int
) -> Any:
    from fractal_jupyter.app import FractalJupyter
    from fractal_jupyter.services.project import list_projects

    username = f"bench-{index:04d}"
    app = FractalJupyter(
        db_url=db_url,
        data_dir=str(root / username),
        server_owner=username,
        default_username=username,
        migrate_on_start=False,
        **options,
    )
    app.log = logging.getLogger(username)
    app.initialize_settings()
    state = app.settings["fractal"]
    await state.ensure_ready()  # as the server's start does: schema check, job watcher
    user = await state.user(username)

    async def read() -> None:
        async with state.database.session() as session:
            await list_projects(session, user)

    await asyncio.gather(*(read() for _ in range(burst)))
    return state


async def _worker(db_url: str, first: int, count: int, options: dict[str, Any], burst: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="fractal-idle-servers-") as folder:
        states = [
            await _start_server(db_url, Path(folder), first + offset, options, burst)
            for offset in range(count)
        ]
        print(READY, flush=True)
        try:
            await asyncio.Event().wait()  # idle until the bench ends this process
        finally:
            for state in states:
                await state.stop_watching_jobs()
                await state.database.dispose()


# -- the bench -------------------------------------------------------------------------------


async def _sample(admin_url: str, database: str) -> dict[str, Any]:
    """The counters, read through a connection to another database (not counted)."""
    observer = create_async_engine(make_url(admin_url), poolclass=NullPool)
    try:
        return await _read_counters(observer, database)
    finally:
        await observer.dispose()


async def _read_counters(observer: AsyncEngine, database: str) -> dict[str, Any]:
    async with observer.connect() as connection:
        activity = (
            await connection.execute(
                text(
                    "SELECT pid, state_change FROM pg_stat_activity "
                    "WHERE datname = :name AND application_name LIKE :prefix"
                ),
                {"name": database, "prefix": APPLICATION_PREFIX + "%"},
            )
        ).all()
        row = (
            await connection.execute(
                text(
                    "SELECT xact_commit + xact_rollback, tup_returned + tup_fetched "
                    "FROM pg_stat_database WHERE datname = :name"
                ),
                {"name": database},
            )
        ).one()
        statements = None
        has_view = (
            await connection.execute(text("SELECT to_regclass('pg_stat_statements') IS NOT NULL"))
        ).scalar()
        if has_view:
            statements = (
                await connection.execute(
                    text(
                        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s "
                        "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = :name"
                    ),
                    {"name": database},
                )
            ).scalar()
    return {
        "time": time.monotonic(),
        "connections": {int(pid): str(changed) for pid, changed in activity},
        "transactions": int(row[0]),
        "tuples": int(row[1]),
        "statements": None if statements is None else int(statements),
    }


async def _create_database(admin_url: str) -> str:
    name = f"fractal_bench_idle_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(make_url(admin_url), isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    return name


async def _drop_database(admin_url: str, name: str) -> None:
    admin = create_async_engine(make_url(admin_url), isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


def _start_workers(
    db_url: str, servers: int, processes: int, options: dict[str, Any], burst: int
) -> list[subprocess.Popen[str]]:
    workers = []
    share, extra = divmod(servers, processes)
    first = 0
    for index in range(processes):
        count = share + (1 if index < extra else 0)
        if count == 0:
            continue
        command = [
            sys.executable,
            __file__,
            "--worker",
            json.dumps(
                {
                    "db_url": db_url,
                    "first": first,
                    "count": count,
                    "options": options,
                    "burst": burst,
                }
            ),
        ]
        workers.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT))
        first += count
    return workers


def run(arguments: argparse.Namespace) -> dict[str, Any]:
    from fractal_jupyter.cli.db import upgrade

    name = asyncio.run(_create_database(arguments.db_url))
    bench_url = make_url(arguments.db_url).set(database=name).render_as_string(False)
    options = {
        "db_pool_size": arguments.pool_size,
        "db_max_overflow": arguments.max_overflow,
        "db_pool_pre_ping": not arguments.no_pre_ping,
        "job_poll_interval": 0.5,
    }
    workers: list[subprocess.Popen[str]] = []
    try:
        asyncio.run(upgrade(bench_url))  # the administrator's step
        time.sleep(arguments.settle)  # the counters of the upgrade's connection
        initial = asyncio.run(_sample(arguments.db_url, name))
        started = time.monotonic()
        workers = _start_workers(
            bench_url, arguments.servers, arguments.processes, options, arguments.burst
        )
        for worker in workers:
            assert worker.stdout is not None
            line = worker.stdout.readline().strip()
            if line != READY:
                raise RuntimeError(f"a worker did not start (exit {worker.poll()}): {line!r}")
        start_seconds = time.monotonic() - started
        progress(f"{arguments.servers} servers started in {start_seconds:.1f} s; settling")
        time.sleep(arguments.settle)

        before = asyncio.run(_sample(arguments.db_url, name))
        progress(f"idle window of {arguments.idle:.0f} s")
        time.sleep(arguments.idle)
        after = asyncio.run(_sample(arguments.db_url, name))
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
        asyncio.run(_drop_database(arguments.db_url, name))
    seconds = after["time"] - before["time"]
    servers = arguments.servers
    moved = [
        pid
        for pid, changed in after["connections"].items()
        if before["connections"].get(pid) != changed
    ]
    transactions = after["transactions"] - before["transactions"]
    statements = (
        None
        if after["statements"] is None or before["statements"] is None
        else after["statements"] - before["statements"]
    )
    return {
        "server_count": servers,
        "processes": arguments.processes,
        "options": options,
        "burst": arguments.burst,
        "start_seconds": round(start_seconds, 1),
        # What starting and using them cost: the counters do count.
        "start_transactions_per_server": (before["transactions"] - initial["transactions"])
        / servers,
        "idle_seconds": round(seconds, 1),
        "connections": len(after["connections"]),
        "connections_per_server": round(len(after["connections"]) / servers, 3),
        "connections_active_in_window": len(moved),
        "transactions": transactions,
        "transactions_per_second_per_server": transactions / seconds / servers,
        "tuples_read": after["tuples"] - before["tuples"],
        "statements": statements,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db-url", help="PostgreSQL URL of a role with CREATEDB")
    parser.add_argument("--servers", type=int, default=300)
    parser.add_argument("--processes", type=int, default=6)
    parser.add_argument("--burst", type=int, default=4, help="concurrent reads at the start")
    parser.add_argument("--pool-size", type=int, default=1)
    parser.add_argument("--max-overflow", type=int, default=4)
    parser.add_argument("--no-pre-ping", action="store_true")
    parser.add_argument("--settle", type=float, default=15.0)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--output", help="JSON results file (default: bench/results/...)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        job = json.loads(arguments.worker)
        asyncio.run(
            _worker(job["db_url"], job["first"], job["count"], job["options"], job["burst"])
        )
        return
    if not arguments.db_url:
        parser.error("--db-url is required (a PostgreSQL URL, e.g. scripts/postgres-test.sh start)")
    shown_argv = ["<db-url>" if "://" in argument else argument for argument in sys.argv[1:]]
    result = {
        **report_header("bench/idle_servers.py", shown_argv, peer="none (PostgreSQL only)"),
        **run(arguments),
    }
    print(json.dumps(result, indent=2))
    day = time.strftime("%Y-%m-%d")
    name = f"idle-servers-{day}-{arguments.servers}-pool{arguments.pool_size}.json"
    output = Path(arguments.output or REPO_ROOT / "bench" / "results" / name)
    output.write_text(json.dumps(result, indent=2) + "\n")
    progress(f"results in {output}")


if __name__ == "__main__":
    main()
