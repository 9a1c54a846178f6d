"""Task-group listing benchmark: `GET api/v2/task-group/` over HTTP from our Jupyter server.

From the repository root:

    .venv/bin/python bench/task_groups.py [--groups 250] [--tasks 2000] [--repeat 50]

The database (SQLite, filled before the server starts) holds `--groups` task groups with
`--tasks` tasks spread evenly among them (the size of a large real instance): 4 of 5 groups
are an administrator's collections shared with "All", the rest the caller's own; the tasks
carry manifest-sized fields (argument schemas of ~4 KB, docs of ~600 characters, as
fractal-tasks-core 2.1.0's), and a workflow uses
one task of every tenth group (`in_use`). The caller sees every group. Target: p50 under
30 ms end to end.

Besides the wall time, the server's CPU time per request (from /proc) is shown: on a shared
machine the wall time says how busy the other processes are, the CPU time what a request costs.
The server keeps each group's rendered tasks while they are unchanged, so the first request
(also shown) costs more than the others.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench.common import REPO_ROOT, OurServer, latency_dict, report_header, summarize
from fractal_jupyter.db.engine import Database
from fractal_jupyter.db.models import (
    LinkUserGroup,
    LinkUserProject,
    Project,
    Task,
    TaskGroup,
    User,
    Workflow,
    WorkflowTask,
)
from fractal_jupyter.services.group import default_group

TARGET_P50_MS = 30.0
ARGS_SCHEMA = {
    "type": "object",
    "title": "Arguments",
    "properties": {
        f"parameter_{index}": {
            "type": "string",
            "title": f"Parameter {index}",
            "description": "An argument of the task, as a manifest describes it. " * 2,
            "default": "value",
        }
        for index in range(25)
    },
}
# fractal-tasks-core 2.1.0's tasks: docs_info of 575 characters on average, schemas of 3.7 KB.
DOCS = "Does one step of an image-processing workflow, on the images of a plate. " * 8


async def fill(url: str, groups: int, tasks: int) -> None:
    database = Database(url)
    await database.upgrade()
    async with database.session(write=True) as session:
        everyone = await default_group(session)
        caller = User(username=getpass.getuser(), email="bench@x")
        admin = User(username="bench-admin", email="admin@x", is_superuser=True)
        session.add_all([caller, admin])
        await session.flush()
        session.add_all(
            [
                LinkUserGroup(group_id=everyone.id, user_id=caller.id),
                LinkUserGroup(group_id=everyone.id, user_id=admin.id),
            ]
        )
        project = Project(name="bench")
        session.add(project)
        await session.flush()
        session.add(LinkUserProject(project_id=project.id, user_id=caller.id))
        workflow = Workflow(name="uses some", project_id=project.id)
        session.add(workflow)
        await session.flush()
        per_group = tasks // groups
        for index in range(groups):
            shared = index % 5 != 0
            group = TaskGroup(
                user_id=admin.id if shared else caller.id,
                user_group_id=everyone.id if shared else None,
                origin="pypi",
                pkg_name=f"fractal-tasks-{index // 5}",
                version=f"1.{index % 5}.0",
                python_version="3.11",
                path=f"/tasks/.fractal/pkg{index}",
                venv_path=f"/tasks/.fractal/pkg{index}/venv",
                pinned_package_versions={},
                pip_freeze="numpy==2.0.0\n" * 50,
            )
            session.add(group)
            await session.flush()
            rows = [
                Task(
                    name=f"Task {number}",
                    type="parallel",
                    source=f"pip_remote:pkg{index}:1.0.0::py3.11:task_{number}",
                    owner=None,
                    version=group.version,
                    command_parallel=f"/tasks/.fractal/pkg{index}/venv/bin/python t{number}.py",
                    meta_parallel={"cpus_per_task": 1},
                    args_schema_parallel=ARGS_SCHEMA,
                    args_schema_version="pydantic_v2",
                    docs_info=DOCS,
                    docs_link="https://example.org/docs",
                    input_types={"is_3D": True},
                    output_types={"is_3D": False},
                    category="Segmentation",
                    modality="HCS",
                    tags=["bench", "segmentation"],
                    authors="Bench Authors",
                    taskgroupv2_id=group.id,
                )
                for number in range(per_group)
            ]
            session.add_all(rows)
            await session.flush()
            if index % 10 == 0:
                session.add(
                    WorkflowTask(
                        workflow_id=workflow.id,
                        order=index // 10,
                        task_id=rows[0].id,
                        task_type="parallel",
                        meta_parallel={},
                        args_parallel={},
                    )
                )
    await database.dispose()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=250)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=50)
    options = parser.parse_args(argv)
    server = OurServer()  # the database is filled first, then the server starts on it
    try:
        url = f"sqlite+aiosqlite:///{server.workdir}/fractal.db"
        started = time.monotonic()
        asyncio.run(fill(url, options.groups, options.tasks))
        print(f"filled in {time.monotonic() - started:.1f} s", file=sys.stderr)
        server.start()
        with httpx.Client(timeout=120) as client:
            path = server.url + "/api/v2/task-group/"
            before = time.perf_counter()
            answer = client.get(path, headers=server.headers)
            answer.raise_for_status()
            cold_ms = (time.perf_counter() - before) * 1000
            listed = answer.json()
            groups = sum(len(versions) for _, versions in listed)
            tasks = sum(len(g["task_list"]) for _, versions in listed for g in versions)
            in_use = sum(g["in_use"] for _, versions in listed for g in versions)
            if (groups, tasks) != (options.groups, options.tasks - options.tasks % options.groups):
                raise SystemExit(f"the answer lists {groups} groups and {tasks} tasks")
            for _ in range(5):  # the server settles (the database file's pages in memory)
                client.get(path, headers=server.headers).raise_for_status()
            samples = []
            cpu_before = cpu_seconds(server.pid)
            for _ in range(options.repeat):
                before = time.perf_counter()
                client.get(path, headers=server.headers).raise_for_status()
                samples.append(time.perf_counter() - before)
            cpu_ms = (cpu_seconds(server.pid) - cpu_before) / options.repeat * 1000
    finally:
        server.stop()
    latency = summarize(samples)
    size_kb = len(answer.content) / 1024
    print(
        f"GET api/v2/task-group/: {groups} groups, {tasks} tasks, {in_use} in use, "
        f"{size_kb:.0f} KiB answer"
    )
    print(
        f"  p50 {latency.p50_ms:.1f} ms, p95 {latency.p95_ms:.1f} ms, "
        f"min {latency.min_ms:.1f} ms, max {latency.max_ms:.1f} ms (n={latency.n})"
    )
    print(f"  server CPU time per request: {cpu_ms:.1f} ms; load average {os.getloadavg()[0]:.1f}")
    print(f"  first request (nothing rendered yet): {cold_ms:.1f} ms")
    ok = latency.p50_ms < TARGET_P50_MS
    print(f"  [{'PASS' if ok else 'FAIL'}] p50 under {TARGET_P50_MS:g} ms: {latency.p50_ms:.1f}")
    document = {
        **report_header(
            "bench/task_groups.py", argv, "none (fractal-server 2.6.4 has no such route)"
        ),
        "settings": vars(options),
        "answer": {"groups": groups, "tasks": tasks, "in_use": in_use, "kib": round(size_kb)},
        "latency_ms": latency_dict(latency),
        "server_cpu_ms_per_request": round(cpu_ms, 2),
        "first_request_ms": round(cold_ms, 2),
        "load_average": os.getloadavg()[0],
        "target": {"p50_under_ms": TARGET_P50_MS, "ok": ok},
    }
    name = f"task-groups-{document['date']}-{options.groups}-groups-{options.tasks}-tasks.json"
    target = REPO_ROOT / "bench" / "results" / name
    target.write_text(json.dumps(document, indent=2) + "\n")
    print(f"Results written to {target.relative_to(REPO_ROOT)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
