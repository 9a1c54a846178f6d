"""Run history benchmark, in process on a SQLite file (the server's own code, no HTTP).

From the repository root:

    .venv/bin/python bench/history.py [--images 100000] [--calls 10000] [--repeat 30]

1. Applying the outcomes of a parallel task of `--calls` calls, as the server applies the job
   process's events: `task_started`, `units_submitted` (all calls), `units_ended` in batches
   (the job process writes one every 0.5 s; 20 batches here), and the history part of
   `task_done`. Target: under 2 s of server time in total for 10,000 calls (wall and CPU time
   are shown: on a loaded machine the CPU time says what the work costs).
2. With `--images` images of which `--calls` have a status (10 % of them failed), the p50 of
   one page of 100 of `status/images/` with a status filter against the plain image query
   (`images/query/`, no filter and an attribute filter): in process (no HTTP), then end to end
   over HTTP from our Jupyter server started on that database. Targets (end to end): p50 under
   10 ms, and within 1.5x of the plain query with an attribute filter.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench.common import REPO_ROOT, OurServer, report_header, summarize
from fractal_jupyter.db.engine import Database
from fractal_jupyter.db.models import (
    Dataset,
    Job,
    LinkUserProject,
    Project,
    Task,
    User,
    Workflow,
    WorkflowTask,
)
from fractal_jupyter.schemas.common import Filters
from fractal_jupyter.schemas.filters import IMAGE_STATUS_KEY, ImageFilterQuery
from fractal_jupyter.schemas.images import ImageQuery, SingleImage
from fractal_jupyter.services import history
from fractal_jupyter.services.images import insert_images, query_images, query_status_images
from fractal_jupyter.services.users import CurrentUser

ZARR_DIR = "/bench/zarr"
ENDED_BATCHES = 20
PAGE_SIZE = 100


def url(index: int) -> str:
    return f"{ZARR_DIR}/plate.zarr/{index}"


async def setup(database: Database, images: int) -> tuple[CurrentUser, Job, int, int]:
    async with database.session(write=True) as session:
        # The HTTP caller of our server (a plain Jupyter token) is the OS user.
        user = User(username=getpass.getuser(), email="bench@x")
        project = Project(name="p")
        session.add_all([user, project])
        await session.flush()
        session.add(LinkUserProject(project_id=project.id, user_id=user.id))
        dataset = Dataset(name="d", project_id=project.id, zarr_dir=ZARR_DIR)
        task = Task(name="t", type="parallel", source="bench:t", command_parallel="true")
        session.add_all([dataset, task])
        await session.flush()
        workflow = Workflow(name="w", project_id=project.id)
        session.add(workflow)
        await session.flush()
        wftask = WorkflowTask(
            workflow_id=workflow.id, order=0, task_id=task.id, task_type="parallel"
        )
        session.add(wftask)
        await session.flush()
        await insert_images(
            session,
            dataset,
            [
                SingleImage(zarr_url=url(i), attributes={"well": f"W{i % 100}"})
                for i in range(images)
            ],
        )
        job = Job(
            project_id=project.id,
            workflow_id=workflow.id,
            dataset_id=dataset.id,
            user_email="bench@x",
            owner="bench",
            project_dump={},
            workflow_dump={},
            dataset_dump={},
            first_task_index=0,
            last_task_index=0,
        )
        session.add(job)
        await session.flush()
        return CurrentUser(user.id, user.username, False), job, project.id, dataset.id


async def apply_outcomes(
    database: Database, job: Job, calls: int
) -> dict[str, tuple[float, float]]:
    wftask_id = 1
    units = [
        {"logfile": f"/jobs/1/0_t/0_par_{i:07d}.log", "zarr_urls": [url(i)]} for i in range(calls)
    ]
    events: list[tuple[str, Callable[[Any], Awaitable[None]]]] = []

    def step(name: str, function: Callable[[Any], Awaitable[None]]) -> None:
        events.append((name, function))

    step(
        "task_started",
        lambda s: history.apply_task_started(
            s, job, {"workflow_task_id": wftask_id, "workflowtask": {}, "task": {}}
        ),
    )
    step(
        "units_submitted",
        lambda s: history.apply_units_submitted(
            s, job, {"workflow_task_id": wftask_id, "units": units}
        ),
    )
    batch = -(-calls // ENDED_BATCHES)
    for start in range(0, calls, batch):
        ended = [
            {
                "logfile": unit["logfile"],
                "status": "failed" if i % 10 == 0 else "done",
                "zarr_urls": unit["zarr_urls"],
            }
            for i, unit in enumerate(units[start : start + batch], start)
        ]
        step(
            "units_ended",
            lambda s, ended=ended: history.apply_units_ended(
                s, job, {"workflow_task_id": wftask_id, "units": ended}
            ),
        )
    step(
        "task_done",
        lambda s: history.apply_task_done(s, job, wftask_id, [url(i) for i in range(calls)]),
    )
    # Wall time, and the process's CPU time (all threads): on a loaded machine the second says
    # what the work costs.
    seconds: dict[str, tuple[float, float]] = {}
    for name, function in events:
        wall, cpu = time.perf_counter(), time.process_time()
        async with database.session(write=True) as session:
            await function(session)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        before = seconds.get(name, (0.0, 0.0))
        seconds[name] = (before[0] + wall, before[1] + cpu)
    seconds["total"] = (
        sum(wall for wall, _ in seconds.values()),
        sum(cpu for _, cpu in seconds.values()),
    )
    return seconds


async def p50_ms(function: Callable[[], Awaitable[Any]], repeat: int) -> float:
    for _ in range(3):
        await function()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await function()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def http_p50_ms(
    client: httpx.Client, server: OurServer, path: str, body: dict[str, Any], repeat: int
) -> tuple[float, int]:
    """p50 of POST `path` with `body` (serialized once), and the answer's total_count."""
    content = json.dumps(body).encode()
    headers = {**server.headers, "Content-Type": "application/json"}
    total = -1
    for _ in range(3):
        answer = client.post(server.url + path, content=content, headers=headers)
        answer.raise_for_status()
        total = answer.json()["total_count"]
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        client.post(server.url + path, content=content, headers=headers).raise_for_status()
        samples.append(time.perf_counter() - started)
    return summarize(samples).p50_ms, total


async def prepare(
    url: str, options: argparse.Namespace
) -> tuple[dict[str, tuple[float, float]], dict[str, float], tuple[int, int]]:
    database = Database(url)
    await database.upgrade()
    user, job, project_id, dataset_id = await setup(database, options.images)
    apply = await apply_outcomes(database, job, options.calls)
    failed = ImageFilterQuery(attribute_filters={IMAGE_STATUS_KEY: ["failed"]})
    failed_last_page = -(-(options.calls // 10) // PAGE_SIZE)

    def status_page(query: ImageFilterQuery, page: int = 1) -> Callable[[], Awaitable[Any]]:
        return lambda: query_status_images(
            database, user, project_id, dataset_id, 1, query,
            page=page, page_size=PAGE_SIZE, include_warnings=False,
        )  # fmt: skip

    def plain_page(query: ImageQuery | None) -> Callable[[], Awaitable[Any]]:
        return lambda: query_images(
            database, user, project_id, dataset_id, query,
            page=1, page_size=PAGE_SIZE, use_dataset_filters=False,
        )  # fmt: skip

    answer = json.loads((await status_page(failed)()).to_json())
    assert answer["total_count"] == options.calls // 10, answer["total_count"]
    assert answer["items"][0]["attributes"][IMAGE_STATUS_KEY] == "failed"
    well = ImageQuery(filters=Filters(attributes={"well": "W7"}))
    latencies = {
        "status/images, status=failed, first page": await p50_ms(
            status_page(failed), options.repeat
        ),
        "status/images, status=failed, last page": await p50_ms(
            status_page(failed, failed_last_page), options.repeat
        ),
        "status/images, status=unset": await p50_ms(
            status_page(ImageFilterQuery(attribute_filters={IMAGE_STATUS_KEY: ["unset"]})),
            options.repeat,
        ),
        "status/images, no filter": await p50_ms(status_page(ImageFilterQuery()), options.repeat),
        "images/query, no filter": await p50_ms(plain_page(None), options.repeat),
        "images/query, well filter": await p50_ms(plain_page(well), options.repeat),
    }
    await database.dispose()
    return apply, latencies, (project_id, dataset_id)


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=30)
    options = parser.parse_args(argv)
    server = OurServer()  # the database is filled first, then the server starts on it
    try:
        url = f"sqlite+aiosqlite:///{server.workdir}/fractal.db"
        apply, latencies, (project_id, dataset_id) = await prepare(url, options)
        server.start()
        project = f"/api/v2/project/{project_id}/"
        status_path = (
            f"{project}status/images/?dataset_id={dataset_id}&workflowtask_id=1"
            f"&page=1&page_size={PAGE_SIZE}"
        )
        query_path = f"{project}dataset/{dataset_id}/images/query/?page=1&page_size={PAGE_SIZE}"
        with httpx.Client(timeout=120) as client:
            # The server settles first (start-up work, the database file's pages in memory).
            for _ in range(5):
                for path in (status_path, query_path):
                    http_p50_ms(client, server, path, {}, 1)
            end_to_end = {
                "status/images, status=failed": http_p50_ms(
                    client,
                    server,
                    status_path,
                    {"attribute_filters": {IMAGE_STATUS_KEY: ["failed"]}},
                    options.repeat,
                ),
                "status/images, no filter": http_p50_ms(
                    client, server, status_path, {}, options.repeat
                ),
                "images/query, well filter": http_p50_ms(
                    client,
                    server,
                    query_path,
                    {"filters": {"attributes": {"well": "W7"}}},
                    options.repeat,
                ),
                "images/query, no filter": http_p50_ms(
                    client, server, query_path, {}, options.repeat
                ),
            }
    finally:
        server.stop()
    print(f"Applying the outcomes of {options.calls} calls ({ENDED_BATCHES} units_ended batches):")
    for name, (wall, cpu) in apply.items():
        print(f"  {name:<16} {wall * 1000:8.1f} ms wall, {cpu * 1000:8.1f} ms CPU")
    print(f"Page of {PAGE_SIZE}, {options.images} images, p50 in process (no HTTP):")
    for name, milliseconds in latencies.items():
        print(f"  {name:<42} {milliseconds:7.2f} ms")
    print(f"Page of {PAGE_SIZE}, {options.images} images, p50 end to end (HTTP):")
    for name, (milliseconds, total) in end_to_end.items():
        print(f"  {name:<42} {milliseconds:7.2f} ms  ({total} matches)")
    ratio = (
        end_to_end["status/images, status=failed"][0] / end_to_end["images/query, well filter"][0]
    )
    print(f"  status filter / attribute filter: {ratio:.2f}x (target: at most 1.5x)")
    apply_cpu_s = apply["total"][1]
    status_p50 = end_to_end["status/images, status=failed"][0]
    targets = [
        (
            f"applying {options.calls} calls: CPU under 2 s per 10,000 calls",
            apply_cpu_s < 2.0 * max(options.calls, 10_000) / 10_000,
            apply_cpu_s,
        ),
        ("status/images, status filter: p50 under 10 ms", status_p50 < 10.0, status_p50),
        ("status filter within 1.5x of an attribute filter", ratio <= 1.5, ratio),
    ]
    for target, ok, value in targets:
        print(f"  [{'PASS' if ok else 'FAIL'}] {target}: {value:.3g}")
    document = {
        **report_header("bench/history.py", argv, "none (fractal-server 2.6.4 has no such route)"),
        "settings": vars(options),
        "apply_ms": {
            name: {"wall": wall * 1000, "cpu": cpu * 1000} for name, (wall, cpu) in apply.items()
        },
        "in_process_p50_ms": latencies,
        "end_to_end_p50_ms": {name: ms for name, (ms, _total) in end_to_end.items()},
        "targets": [{"target": t, "ok": ok, "value": value} for t, ok, value in targets],
    }
    name = f"history-{document['date']}-{options.images}-images-{options.calls}-calls.json"
    path = REPO_ROOT / "bench" / "results" / name
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"Results written to {path.relative_to(REPO_ROOT)}")
    return 0 if all(ok for _target, ok, _value in targets) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
