"""A task group's lifecycle with the real fractal-tasks-core 2.1.0: collect, run, deactivate
(venv gone, disk freed, submission refused), reactivate (the same versions from the freeze,
the job runs again with the same results), delete (refused while used, then done, files gone).

The package folder that tests/e2e/test_tasks_core.py keeps between runs is hard-linked into
this test's own tasks_dir (it is never changed: deactivation and deletion remove the links,
reactivation writes new files), so the collection reuses it in seconds; without it the
collection installs from the package index.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from fractal_jupyter.tasks.venv import disk_usage
from tests.e2e.test_tasks_core import (
    TASKS_DIR,
    _no_pythonpath,
    collect,
    images_and_filters,
    inspect_image,
    plate_urls,
    run_workflow,
)
from tests.support.tasks_core import EXPECTED_LABEL_PIXELS, EXPECTED_MIP_MAX

__all__ = ["_no_pythonpath"]

GROUPS = "api/v2/task-group/"
FOLDER = "fractal-tasks-core2.1.0"
STEPS = [
    ("Import OME-Zarr", {"args_non_parallel": {"zarr_name": "synthetic.zarr"}}),
    ("Project Image (HCS Plate)", {}),
    (
        "Threshold Segmentation",
        {"args_parallel": {"channel": {"mode": "label", "identifier": "DAPI"}}},
    ),
]
ACTIVITY_TIMEOUT = 1200.0


@pytest.fixture
def tasks_dir(tmp_path: Path) -> Path:
    path = tmp_path / "tasks"
    (path / ".fractal").mkdir(parents=True)
    cached = TASKS_DIR / ".fractal" / FOLDER
    if (cached / "collection.json").exists():
        subprocess.run(["cp", "-al", str(cached), str(path / ".fractal" / FOLDER)], check=True)
    return path


@pytest.fixture
def fractal_config(fractal_config: dict[str, Any], tasks_dir: Path) -> dict[str, Any]:
    return {**fractal_config, "tasks_dir": str(tasks_dir)}


async def run_activity(api: Any, path: str) -> dict[str, Any]:
    status, activity = await api("POST", path, user="admin")
    assert status in (200, 202), activity
    started = time.monotonic()
    while activity["status"] not in ("OK", "failed"):
        assert time.monotonic() - started < ACTIVITY_TIMEOUT, activity
        await asyncio.sleep(0.5)
        _, activity = await api("GET", f"{GROUPS}activity/{activity['id']}/", user="admin")
    assert activity["status"] == "OK", activity["log"][-5000:]
    print(f"{path}: {time.monotonic() - started:.0f} s")
    return dict(activity)


async def test_task_group_lifecycle(api, tmp_path, tasks_dir):
    data = await collect(api, {"package": "fractal-tasks-core", "package_version": "2.1.0"})
    tasks = {task["name"]: task for task in data["task_list"]}
    folder = tasks_dir / ".fractal" / FOLDER
    python = str(folder / "venv" / "bin" / "python")
    _, activities = await api("GET", f"{GROUPS}activity/", user="admin")
    group_id = activities[0]["taskgroupv2_id"]
    _, group = await api("GET", f"{GROUPS}{group_id}/")  # alice: shared with All
    assert (group["pkg_name"], group["version"], group["origin"]) == (
        "fractal-tasks-core",
        "2.1.0",
        "pypi",
    )
    frozen = (folder / "collection_freeze.txt").read_text()
    assert "fractal-tasks-core==2.1.0" in frozen

    first_run = tmp_path / "first"
    first_run.mkdir()
    project_path, dataset, _ = await run_workflow(api, first_run, tasks, STEPS)
    images, _ = await images_and_filters(api, project_path, dataset)
    _, mip = plate_urls(first_run / "zarr")
    assert images[-1]["zarr_url"] == mip
    before = await inspect_image(python, mip)
    assert before["max"] == EXPECTED_MIP_MAX and before["label_pixels"] == EXPECTED_LABEL_PIXELS

    size = disk_usage(folder)
    await run_activity(api, f"{GROUPS}{group_id}/deactivate/")
    assert not (folder / "venv").exists()
    assert disk_usage(folder) < size / 100, "the venv's disk space was not freed"
    _, group = await api("GET", f"{GROUPS}{group_id}/")
    assert group["active"] is False
    _, workflows = await api("GET", project_path + "workflow/")
    status, body = await api(
        "POST",
        project_path + "job/submit/",
        {},
        params={"workflow_id": str(workflows[0]["id"]), "dataset_id": str(dataset["id"])},
    )
    assert status == 422 and f"task group {group_id} (fractal-tasks-core 2.1.0)" in body["detail"]

    await run_activity(api, f"{GROUPS}{group_id}/reactivate/")
    reinstalled = subprocess.run(
        [python, "-m", "pip", "freeze", "--all"], capture_output=True, text=True, check=True
    ).stdout
    assert sorted(reinstalled.splitlines()) == sorted(frozen.splitlines())
    # (run_workflow makes its project "tasks-core" again: the first one goes)
    status, _ = await api("DELETE", project_path)
    assert status == 204
    second_run = tmp_path / "second"
    second_run.mkdir()
    project_path, dataset, _ = await run_workflow(api, second_run, tasks, STEPS)
    _, mip = plate_urls(second_run / "zarr")
    after = await inspect_image(python, mip)
    assert after == before
    _, used = await api("GET", f"{GROUPS}{group_id}/")
    assert used["timestamp_last_used"] > group["timestamp_last_used"]

    status, body = await api("POST", f"{GROUPS}{group_id}/delete/", user="admin")
    assert status == 422 and "used in 1 workflow(s)" in body["detail"]
    assert (folder / "venv").is_dir()
    status, _ = await api("DELETE", project_path)
    assert status == 204
    await run_activity(api, f"{GROUPS}{group_id}/delete/")
    assert not folder.exists()
    status, _ = await api("GET", f"{GROUPS}{group_id}/", user="admin")
    assert status == 404
    _, catalogue = await api("GET", "api/v2/task/")
    assert catalogue == []
    # The folder the other end-to-end tests reuse is untouched.
    cached = TASKS_DIR / ".fractal" / FOLDER
    assert not cached.exists() or (cached / "collection.json").exists()
