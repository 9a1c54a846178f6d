"""Helpers for job tests: a project with a dataset, the demo tasks, a workflow, waiting."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fractal_jupyter.demo_tasks.manifest import demo_task_bodies

MISBEHAVE = Path(__file__).resolve().parents[1] / "tasks" / "misbehave.py"

MISBEHAVE_TASK = {
    "name": "Misbehave",
    "source": "test:misbehave",
    "command_parallel": f"{sys.executable} {MISBEHAVE}",
}


async def register_tasks(api: Any, user: str = "alice") -> dict[str, dict[str, Any]]:
    """The demo tasks and the misbehaving task, owned by `user` (only their jobs, and if
    `user` is an admin everyone's, may run them)."""
    tasks = {}
    for body in [*demo_task_bodies(), MISBEHAVE_TASK]:
        status, task = await api("POST", "api/v2/task/", body, user=user)
        assert status == 201, task
        tasks[task["name"]] = task
    return tasks


async def project_with_tasks(
    api: Any, zarr_dir: Path
) -> tuple[str, dict[str, Any], dict[str, dict[str, Any]]]:
    """A project (its API path), an empty dataset writing to `zarr_dir`, the registered tasks."""
    _, project = await api("POST", "api/v2/project/", {"name": "p"})
    project_path = f"api/v2/project/{project['id']}/"
    _, dataset = await api(
        "POST", project_path + "dataset/", {"name": "d", "zarr_dir": str(zarr_dir)}
    )
    return project_path, dataset, await register_tasks(api)


async def make_workflow(
    api: Any, project_path: str, name: str, entries: list[tuple[dict[str, Any], dict[str, Any]]]
) -> dict[str, Any]:
    status, workflow = await api("POST", project_path + "workflow/", {"name": name})
    assert status == 201, workflow
    for task, body in entries:
        status, answer = await api(
            "POST",
            f"{project_path}workflow/{workflow['id']}/wftask/",
            body,
            params={"task_id": str(task["id"])},
        )
        assert status == 201, answer
    _, workflow = await api("GET", f"{project_path}workflow/{workflow['id']}/")
    return dict(workflow)


async def wait_for_job(
    api: Any, project_path: str, job_id: int, timeout: float = 60.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, job = await api("GET", f"{project_path}job/{job_id}/")
        assert status == 200, job
        if job["status"] != "submitted":
            return dict(job)
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still running after {timeout} s")
        await asyncio.sleep(0.1)


async def wait_for_processes(
    api: Any, project_path: str, job_id: int, text: str, timeout: float = 180.0
) -> list[int]:
    """Wait until live processes mention `text`; fail at once if the job ends first.

    The deadline is in seconds, not polls: on SLURM each task waits for its
    allocation, and under a loaded CI machine two tasks in a row can take a minute.
    """
    deadline = time.monotonic() + timeout
    while not (found := processes_mentioning(text)):
        status, job = await api("GET", f"{project_path}job/{job_id}/")
        assert status == 200 and job["status"] == "submitted", job
        assert time.monotonic() < deadline, f"no process mentions {text} after {timeout} s"
        await asyncio.sleep(0.2)
    return found


async def processes_left(text: str, timeout: float = 5.0) -> dict[int, bytes]:
    """The processes still mentioning `text` after up to `timeout` s, with their command lines.

    A job is reported ended by its process's last event, a few ms before that process exits.
    """
    deadline = time.monotonic() + timeout
    while (left := processes_mentioning(text)) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    found = {}
    for pid in left:
        with contextlib.suppress(OSError):
            found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes()
    return found


def processes_mentioning(text: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if text in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def wait_for(condition: Callable[[], object], seconds: float, what: str) -> None:
    """Poll `condition` until it is true; fail with `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} after {seconds} s"
        time.sleep(0.02)
