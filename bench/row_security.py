"""What row-level security costs a user's image work on a shared PostgreSQL.

From the repository root:

    .venv/bin/python bench/row_security.py [--sizes 10000,100000] [--repeat 30] [--db-url URL]
        [--extra-sql FILE]

Without `--db-url` the bench starts the throwaway server of scripts/postgres-test.sh on port
55441 (data in /tmp/fj-pg-bench) and stops it at the end (unless it was already running).
With `--db-url`, the URL's role needs CREATEDB and CREATEROLE, and must not be a superuser
nor have BYPASSRLS (it owns the tables: it is the one-role deployment measured below).

On a database of its own, the bench installs row security (`upgrade(..., row_security=True)`,
what `jupyter fractal db upgrade --row-security` runs) and makes two login roles, members of
`fractal_user`: `bench_alice_<hex>` and `bench_bob_<hex>`. For each size N, bob first makes two
projects of N images each (rows the policies have to exclude; bob's projects are made on his
role, their images written on the owner's, which is faster), then alice makes a project and N
images are imported into it four times, twice on alice's own role (row security applies) and
twice on the tables' owner (which bypasses it: the one-role deployment), in the order alice,
owner, owner, alice. The first dataset is then queried, the same calls alternating between the
two roles: the image query of the API (first page of 50, no filter, one attribute, one type,
attribute and type), the dataset's image count (`count_images`), and adding one image. All are
the package's service functions on `Database(url)` sessions, as the API handlers call them,
with alice as the caller either way: the only difference is the role the connections log in
as, that is the database's policies. Every answer is checked.

The tables are vacuumed and analyzed after each size's imports (as autovacuum would do soon).
Then `SELECT count(*) FROM image` runs once on each role: a scan that meets other users' rows,
which checks that the policies are in effect and times what refusing rows costs. The attribute
query's page and the counts run once under EXPLAIN (ANALYZE, BUFFERS, VERBOSE) each way, to
show how PostgreSQL applies the policies; the plans are kept in the JSON results
(bench/results/row-security-<date>.json). `--extra-sql` runs a file of SQL as the owner after
the install, e.g. other definitions of the policies' functions to compare; the results file is
then named after it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import ClauseElement, Executable, Select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.pool import NullPool

from bench.common import (
    REPO_ROOT,
    BenchError,
    latency_dict,
    progress,
    report_header,
    stop_on_signals,
    summarize,
)
from bench.images import ZARR_DIR, Query, make_extra_image, make_image

DEFAULT_SIZES = (10_000, 100_000)
DEFAULT_REPEAT = 30
WARMUP = 3
PAGE_SIZE = 50
PG_PORT = 55441
PG_DIR = Path("/tmp/fj-pg-bench")
PG_SCRIPT = REPO_ROOT / "scripts" / "postgres-test.sh"
RESULTS_DIR = REPO_ROOT / "bench" / "results"
# The two ways: alice's own role (the policies apply), the tables' owner (it bypasses them).
WAYS = ("alice", "owner")
IMPORT_ORDER = ("alice", "owner", "owner", "alice")
BOB_PROJECTS = 2

Image = dict[str, Any]


# -- the database server and the bench database -----------------------------------------------


@contextlib.contextmanager
def postgres_server(db_url: str | None) -> Iterator[str]:
    """The admin URL: `db_url`, else the throwaway server's (started now, stopped after)."""
    if db_url is not None:
        yield db_url
        return
    was_running = (PG_DIR / "postmaster.pid").exists()
    environment = {**os.environ, "FRACTAL_TEST_PG_PORT": str(PG_PORT)}
    started = subprocess.run(
        [str(PG_SCRIPT), "start", str(PG_DIR)],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    if started.returncode != 0:
        raise BenchError(f"{PG_SCRIPT.name} start failed: {started.stderr[-2000:]}")
    try:
        yield started.stdout.strip()
    finally:
        if not was_running:
            subprocess.run(
                [str(PG_SCRIPT), "stop", str(PG_DIR)],
                env=environment,
                capture_output=True,
                check=False,
            )


async def run_sql(url: str, *statements: str, autocommit: bool = False) -> list[Any]:
    """The rows of each statement (none for a statement without rows), one connection."""
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    engine = create_async_engine(url, poolclass=NullPool, **options)
    answers: list[Any] = []
    try:
        async with engine.connect() as connection:
            for statement in statements:
                result = await connection.exec_driver_sql(statement)
                answers.append(result.all() if result.returns_rows else None)
            if not autocommit:
                await connection.commit()
    finally:
        await engine.dispose()
    return answers


async def run_script(url: str, script: str) -> None:
    """SQL of several statements, through asyncpg's simple protocol."""
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            raw = await connection.get_raw_connection()
            await raw.driver_connection.execute(script)  # type: ignore[union-attr]
    finally:
        await engine.dispose()


@dataclass(frozen=True)
class BenchDatabase:
    admin_url: str
    name: str
    alice: str
    bob: str
    password: str

    @property
    def owner_url(self) -> str:
        return make_url(self.admin_url).set(database=self.name).render_as_string(False)

    def url(self, role: str) -> str:
        own = make_url(self.owner_url).set(username=role, password=self.password)
        return own.render_as_string(hide_password=False)


@contextlib.asynccontextmanager
async def bench_database(admin_url: str, extra_sql: str | None) -> Any:
    """A new database with row security and the two roles; all dropped at the end.
    `extra_sql` (e.g. other policy functions to try) runs on the owner after the install."""
    from fractal_jupyter.cli.db import upgrade
    from fractal_jupyter.db import row_security

    suffix = secrets.token_hex(4)
    found = BenchDatabase(
        admin_url,
        f"fractal_bench_rls_{suffix}",
        f"bench_alice_{suffix}",
        f"bench_bob_{suffix}",
        secrets.token_hex(16),
    )
    await run_sql(admin_url, f'CREATE DATABASE "{found.name}"', autocommit=True)
    try:
        await upgrade(found.owner_url, row_security=True)
        if extra_sql is not None:
            await run_script(found.owner_url, extra_sql)
        for role in (found.alice, found.bob):
            await run_sql(
                admin_url,
                f"CREATE ROLE {role} LOGIN PASSWORD '{found.password}' "
                # The bench's role joins it, to end its sessions when dropping the database.
                f"IN ROLE {row_security.USER_ROLE} ROLE current_user",
            )
        yield found
    finally:
        await run_sql(
            admin_url, f'DROP DATABASE IF EXISTS "{found.name}" WITH (FORCE)', autocommit=True
        )
        for role in (found.alice, found.bob):
            await run_sql(admin_url, f"DROP ROLE IF EXISTS {role}", autocommit=True)


# -- the workload -----------------------------------------------------------------------------


def import_body(name: str, size: int) -> bytes:
    body = {
        "name": name,
        "zarr_dir": ZARR_DIR,
        "images": [make_image(i) for i in range(size)],
        "filters": {"attributes": {}, "types": {}},
    }
    return json.dumps(body).encode()


QUERIES = (
    Query("query_all", "query, no filter", None, lambda image: True),
    Query(
        "query_attribute",
        "query, attribute row=3 (10 %)",
        {"attribute_filters": {"row": [3]}},
        lambda image: image["attributes"]["row"] == 3,
    ),
    Query(
        "query_type",
        "query, type is_3D (50 %)",
        {"type_filters": {"is_3D": True}},
        lambda image: bool(image["types"].get("is_3D")),
    ),
    Query(
        "query_two",
        "query, row=3 and illumination_corrected (3 %)",
        {"attribute_filters": {"row": [3]}, "type_filters": {"illumination_corrected": True}},
        lambda image: (
            image["attributes"]["row"] == 3 and bool(image["types"].get("illumination_corrected"))
        ),
    ),
)
LABELS = {
    **{query.key: f"{query.label}, first page of {PAGE_SIZE}" for query in QUERIES},
    "count_images": "count_images (SELECT count(*) of the dataset)",
    "add_image": "add one image",
}


@dataclass
class Ways:
    """The same user on two connections: alice's own role and the tables' owner."""

    databases: dict[str, Any]
    user: Any  # alice (CurrentUser), the caller either way
    project_id: int = 0
    dataset_id: int = 0
    added: int = 0


async def import_images(database: Any, user: Any, project_id: int, body: bytes) -> int:
    from fractal_jupyter.services.dataset_import import import_dataset

    async with database.session(write=True) as session:
        dataset = await import_dataset(session, user, project_id, body)
        dataset_id: int = dataset.id
    return dataset_id


async def make_project(database: Any, username: str, name: str) -> tuple[Any, int]:
    from fractal_jupyter.schemas.project import ProjectCreate
    from fractal_jupyter.services.project import create_project
    from fractal_jupyter.services.users import caller

    async with database.session(write=True) as session:
        user = await caller(session, username, False)
        project = await create_project(session, user, ProjectCreate(name=name))
        project_id: int = project.id
    return user, project_id


def operation(ways: Ways, key: str, size: int) -> Callable[[str], Awaitable[None]]:
    """One call of operation `key` on the role of a way, checked."""
    from fractal_jupyter.db.models import Dataset
    from fractal_jupyter.schemas.images import ImageQuery, SingleImage
    from fractal_jupyter.services.images import add_image, count_images, query_images

    if key == "count_images":

        async def count(way: str) -> None:
            async with ways.databases[way].session() as session:
                # `count_images` reads only the id of the dataset.
                found = await count_images(session, Dataset(id=ways.dataset_id))
            if found != size:
                raise BenchError(f"[{way}] count_images: {found}, expected {size}")

        return count
    if key == "add_image":

        async def add(way: str) -> None:
            image = SingleImage.model_validate(make_extra_image(ways.added))
            ways.added += 1
            await add_image(ways.databases[way], ways.user, ways.project_id, ways.dataset_id, image)

        return add
    query = next(query for query in QUERIES if query.key == key)
    body = None if query.body is None else ImageQuery.model_validate(query.body)
    images = (make_image(i) for i in range(size))
    matching = [image["zarr_url"] for image in images if query.matches(image)]

    async def run(way: str) -> None:
        page = await query_images(
            ways.databases[way],
            ways.user,
            ways.project_id,
            ways.dataset_id,
            body,
            page=1,
            page_size=PAGE_SIZE,
            use_dataset_filters=False,
        )
        urls = [row[0] for row in page.images]
        if page.total_count != len(matching) or urls != matching[:PAGE_SIZE]:
            raise BenchError(
                f"[{way}] {query.label}: total {page.total_count} and {len(urls)} images, "
                f"expected {len(matching)} and the first {PAGE_SIZE} of them"
            )

    return run


async def timed(call: Callable[[str], Awaitable[None]], way: str) -> float:
    start = time.perf_counter()
    await call(way)
    return time.perf_counter() - start


async def measure(call: Callable[[str], Awaitable[None]], repeat: int) -> dict[str, Any]:
    """Warm-ups, then `repeat` samples per way, the two ways alternating (which goes first
    alternates too), so that drift on the machine falls on both alike."""
    for _ in range(WARMUP):
        for way in WAYS:
            await call(way)
    samples: dict[str, list[float]] = {way: [] for way in WAYS}
    for index in range(repeat):
        for way in WAYS if index % 2 == 0 else WAYS[::-1]:
            samples[way].append(await timed(call, way))
    return {way: latency_dict(summarize(found)) for way, found in samples.items()}


# -- EXPLAIN ----------------------------------------------------------------------------------


class Explain(Executable, ClauseElement):
    """EXPLAIN (ANALYZE, BUFFERS, VERBOSE) of a statement, with its bound parameters."""

    inherit_cache = False

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement


@compiles(Explain)
def _compile_explain(element: Explain, compiler: Any, **options: Any) -> str:
    inner: str = compiler.process(element.statement, **options)
    return "EXPLAIN (ANALYZE, BUFFERS, VERBOSE) " + inner


def explained_statements(
    dataset_id: int, size: int
) -> dict[str, tuple[Select[Any], dict[str, Any]]]:
    """The attribute query's page and count, the two-filter count, and `count_images`, as the
    services build them, with their parameters."""
    from sqlalchemy import func, select

    from fractal_jupyter.db.models import Image as ImageRow
    from fractal_jupyter.schemas.common import Filters
    from fractal_jupyter.schemas.images import ImageQuery
    from fractal_jupyter.services.images import MatchingImages, list_conditions

    found: dict[str, tuple[Select[Any], dict[str, Any]]] = {}
    for key in ("query_attribute", "query_two"):
        query = ImageQuery.model_validate(next(q for q in QUERIES if q.key == key).body)
        matching = MatchingImages.build(
            dataset_id,
            [query.filters, Filters(types=query.type_filters)],
            None,
            attributes=list_conditions(query.attribute_filters),
        )
        if key == "query_attribute":
            found[f"{key}_page"] = matching.page(0, PAGE_SIZE, size // 10)
        found[f"{key}_count"] = (matching.count(), matching.parameters)
    count = select(func.count()).select_from(ImageRow).where(ImageRow.dataset_id == dataset_id)
    found["count_images"] = (count, {})
    return found


async def explain(ways: Ways, size: int) -> dict[str, Any]:
    plans: dict[str, Any] = {}
    for name, (statement, parameters) in explained_statements(ways.dataset_id, size).items():
        sql = str(statement.compile(dialect=ways.databases["owner"].engine.dialect))
        plans[name] = {"sql": sql, "parameters": parameters}
        for way in WAYS:
            async with ways.databases[way].engine.connect() as connection:
                result = await connection.execute(Explain(statement), parameters)
                plans[name][way] = [row[0] for row in result.all()]
    return plans


# -- one size ---------------------------------------------------------------------------------


async def vacuum_analyze(owner_url: str) -> None:
    await run_sql(owner_url, "VACUUM (ANALYZE)", autocommit=True)


async def scan_all_images(url: str) -> tuple[int, float]:
    """`SELECT count(*) FROM image` on a role: the images it sees, and the seconds the statement
    took. A scan that meets other users' rows: their rows are where the policies refuse."""
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            start = time.perf_counter()
            count = await connection.scalar(text("SELECT count(*) FROM image"))
            return int(count or 0), time.perf_counter() - start
    finally:
        await engine.dispose()


async def run_size(
    bench: BenchDatabase, databases: dict[str, Any], bob_db: Any, size: int, repeat: int
) -> dict[str, Any]:
    started = time.monotonic()
    body = import_body(f"bench-{size}", size)
    for index in range(BOB_PROJECTS):
        bob, project_id = await make_project(bob_db, bench.bob, f"bob-{size}-{index}")
        # On the owner's connection, which writes the same rows faster: this is set-up.
        await import_images(databases["owner"], bob, project_id, body)
    progress(
        f"N={size}: bob's {BOB_PROJECTS} x {size:,} images in {time.monotonic() - started:.0f} s"
    )

    user, project_id = await make_project(databases["alice"], bench.alice, f"alice-{size}")
    ways = Ways(databases, user, project_id)
    imports: dict[str, list[float]] = {way: [] for way in WAYS}
    dataset_ids = []
    for way in IMPORT_ORDER:
        start = time.perf_counter()
        dataset_ids.append(await import_images(databases[way], user, project_id, body))
        imports[way].append(round(time.perf_counter() - start, 3))
        progress(f"N={size}: import as {way}: {imports[way][-1]:.2f} s")
    ways.dataset_id = dataset_ids[0]
    await vacuum_analyze(bench.owner_url)

    scans = {
        way: await scan_all_images(bench.url(bench.alice) if way == "alice" else bench.owner_url)
        for way in WAYS
    }
    if scans["alice"][0] >= scans["owner"][0]:
        raise BenchError(f"row security is not in effect: alice sees {scans['alice'][0]} images")

    latency: dict[str, Any] = {}
    for key in LABELS:
        latency[key] = await measure(operation(ways, key, size), repeat)
        ours = latency[key]
        progress(
            f"N={size}: {key}: p50 alice {ours['alice']['p50_ms']:.2f} ms, "
            f"owner {ours['owner']['p50_ms']:.2f} ms"
        )
    plans = await explain(ways, size)
    return {
        "scan_all_images": {
            way: {"images_seen": seen, "seconds": round(seconds, 3)}
            for way, (seen, seconds) in scans.items()
        },
        "import_s": {
            way: {"runs": runs, "mean": round(statistics.fmean(runs), 3)}
            for way, runs in imports.items()
        },
        "latency": latency,
        "plans": plans,
        "seconds": round(time.monotonic() - started, 1),
    }


async def run_all(
    admin_url: str, sizes: list[int], repeat: int, extra_sql: str | None
) -> dict[str, Any]:
    from fractal_jupyter.db.engine import Database

    async with bench_database(admin_url, extra_sql) as bench:
        server = await run_sql(bench.owner_url, "SHOW server_version", "SELECT current_user")
        databases = {"alice": Database(bench.url(bench.alice)), "owner": Database(bench.owner_url)}
        bob_db = Database(bench.url(bench.bob))
        try:
            results = {
                str(size): await run_size(bench, databases, bob_db, size, repeat) for size in sizes
            }
        finally:
            for database in (*databases.values(), bob_db):
                await database.dispose()
    return {
        "postgresql": server[0][0][0],
        "owner_role": server[1][0][0],
        "results": results,
    }


# -- the report -------------------------------------------------------------------------------


def number(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def table_rows(results: dict[str, Any]) -> Iterator[list[str]]:
    for size, result in results.items():
        n = f"{int(size):,}"
        imports = result["import_s"]
        alice, owner = imports["alice"]["mean"], imports["owner"]["mean"]
        runs = "; ".join(
            f"{way} " + ", ".join(f"{run:.2f}" for run in imports[way]["runs"]) for way in WAYS
        )
        yield [n, f"import {n} images (s, mean of 2)", number(alice), number(owner),
               f"{alice / owner:.2f}x", "-", "-", "-", runs]  # fmt: skip
        scan = result["scan_all_images"]
        alice, owner = (scan[way]["seconds"] * 1000 for way in WAYS)
        seen = ", ".join(f"{way} sees {scan[way]['images_seen']:,}" for way in WAYS)
        yield [n, "SELECT count(*) FROM image, all users' rows (ms, once)", number(alice),
               number(owner), f"{alice / owner:.2f}x", "-", "-", "-", seen]  # fmt: skip
        for key, label in LABELS.items():
            by_way = result["latency"][key]
            cells = [n, label]
            for quantile in ("p50_ms", "p95_ms"):
                mine, theirs = by_way["alice"][quantile], by_way["owner"][quantile]
                cells += [number(mine), number(theirs), f"{mine / theirs:.2f}x"]
            cells.append(str(by_way["alice"]["n"]))
            yield cells


def markdown_table(results: dict[str, Any]) -> str:
    header = [
        "N",
        "operation",
        "p50 alice (ms)",
        "p50 owner (ms)",
        "p50 ratio",
        "p95 alice (ms)",
        "p95 owner (ms)",
        "p95 ratio",
        "samples",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(cells) + " |" for cells in table_rows(results))
    return "\n".join(lines)


def report(document: dict[str, Any]) -> Path:
    print()
    print(markdown_table(document["results"]))
    print()
    print("(the import row is in seconds, the scan row in ms, both without p95: one run each)")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    name = f"row-security-{document['date']}"
    if "extra_sql" in document:
        name += "-" + Path(document["extra_sql"]["file"]).stem
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nResults written to {path.relative_to(REPO_ROOT)}")
    return path


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=lambda sizes: [int(size) for size in sizes.split(",")],
        default=list(DEFAULT_SIZES),
        help="comma-separated numbers of images (default: 10000,100000)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=DEFAULT_REPEAT,
        help=f"timed calls per operation and role after {WARMUP} warm-ups "
        f"(default: {DEFAULT_REPEAT})",
    )
    parser.add_argument(
        "--db-url",
        help="SQLAlchemy URL of a PostgreSQL role with CREATEDB and CREATEROLE (default: start "
        f"scripts/postgres-test.sh on port {PG_PORT}, stopped at the end)",
    )
    parser.add_argument(
        "--extra-sql",
        type=Path,
        help="SQL run as the tables' owner after row security is installed, e.g. other "
        "definitions of its functions to compare (the results file is then named after it)",
    )
    arguments = parser.parse_args(argv)
    if arguments.repeat < 1 or any(size < 1 for size in arguments.sizes):
        parser.error("--repeat and --sizes must be positive")
    return arguments


def main(argv: list[str]) -> int:
    arguments = parse_arguments(argv)
    stop_on_signals()
    shown_argv = ["<db-url>" if "://" in argument else argument for argument in argv]
    document = report_header("bench/row_security.py", shown_argv, "none (PostgreSQL only)")
    document["settings"] = {
        "repeat": arguments.repeat,
        "warmup": WARMUP,
        "page_size": PAGE_SIZE,
        "bob_projects": BOB_PROJECTS,
        "import_order": list(IMPORT_ORDER),
    }
    extra_sql = None
    if arguments.extra_sql is not None:
        extra_sql = arguments.extra_sql.read_text()
        document["extra_sql"] = {"file": str(arguments.extra_sql), "sql": extra_sql}
    try:
        with postgres_server(arguments.db_url) as admin_url:
            document |= asyncio.run(
                run_all(admin_url, sorted(arguments.sizes), arguments.repeat, extra_sql)
            )
    except KeyboardInterrupt:
        progress("interrupted")
        return 130
    except BenchError as error:
        progress(f"FAILED: {error}")
        return 1
    document["load_average_after"] = [round(load, 2) for load in os.getloadavg()]
    report(document)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
