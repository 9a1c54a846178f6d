"""The objects the API fuzzer aims at: two users' worlds, made through the API.

Each of alice and bob gets a task, a project with a dataset of a few images, a workflow with
one task and one finished job; carol is a plain user that admin routes may change at will
(so that the fuzzer never deactivates the users it calls as). The ids are handed to the
fuzzer, which puts them into path and query parameters of the same name: as the caller's own
objects, as the other user's (403s), or leaves the generated value (404s, 422s).
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A task that ends at once: its command ignores the `--args-json/--out-json` it is given.
INSTANT_TASK = {
    "name": "Instant",
    "source": "test:fuzz-instant",
    "type": "non_parallel",
    "command_non_parallel": f"{sys.executable} -c pass",
}

FUZZ_USERS = ("alice", "bob")


@dataclass
class World:
    """One user's objects, by the parameter names the API uses for their ids."""

    user: str
    ids: dict[str, int | str] = field(default_factory=dict)
    zarr_dir: str = ""


async def _call(api: Any, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
    status, answer = await api(method, path, body, **kwargs)
    assert status < 300, (method, path, status, answer)
    return answer


async def make_world(api: Any, user: str, zarr_root: Path) -> World:
    world = World(user)
    task = await _call(
        api, "POST", "api/v2/task/", {**INSTANT_TASK, "name": f"Instant {user}"}, user=user
    )
    world.ids["task_id"] = task["id"]
    project = await _call(api, "POST", "api/v2/project/", {"name": f"{user}'s"}, user=user)
    project_path = f"api/v2/project/{project['id']}/"
    world.ids["project_id"] = project["id"]
    zarr_dir = zarr_root / user
    world.zarr_dir = str(zarr_dir)
    dataset = await _call(
        api, "POST", project_path + "dataset/", {"name": "d", "zarr_dir": str(zarr_dir)}, user=user
    )
    world.ids["dataset_id"] = dataset["id"]
    for index in range(3):
        world.ids["zarr_url"] = f"{zarr_dir}/plate.zarr/A/0{index}/0"
        await _call(
            api,
            "POST",
            f"{project_path}dataset/{dataset['id']}/images/",
            {
                "zarr_url": world.ids["zarr_url"],
                "attributes": {"well": f"A0{index}", "index": index},
                "types": {"is_3D": index % 2 == 0},
            },
            user=user,
        )
    workflow = await _call(api, "POST", project_path + "workflow/", {"name": "w"}, user=user)
    world.ids["workflow_id"] = workflow["id"]
    wftask = await _call(
        api,
        "POST",
        f"{project_path}workflow/{workflow['id']}/wftask/",
        {"args_non_parallel": {"x": 1}},
        user=user,
        params={"task_id": str(task["id"])},
    )
    world.ids["workflow_task_id"] = wftask["id"]
    job = await _call(
        api,
        "POST",
        project_path + "job/submit/",
        {},
        user=user,
        params={"workflow_id": str(workflow["id"]), "dataset_id": str(dataset["id"])},
    )
    world.ids["job_id"] = job["id"]
    return world


async def wait_for_jobs(api: Any, worlds: list[World], timeout: float = 60.0) -> None:
    """Jobs change the database as they run: the fuzzer starts once they are over."""
    deadline = time.monotonic() + timeout
    for world in worlds:
        path = f"api/v2/project/{world.ids['project_id']}/job/{world.ids['job_id']}/"
        while (await _call(api, "GET", path, user=world.user))["status"] == "submitted":
            assert time.monotonic() < deadline, f"the seed job of {world.user} did not end"
            await asyncio.sleep(0.1)


async def make_worlds(api: Any, zarr_root: Path) -> list[World]:
    worlds = [await make_world(api, user, zarr_root) for user in FUZZ_USERS]
    carol = await _call(api, "GET", "auth/current-user/", user="carol")
    group = await _call(api, "POST", "auth/group/", {"name": "fuzz-group"}, user="admin")
    for world in worlds:
        # The users and groups that admin routes may change: never the fuzz callers themselves.
        world.ids["user_id"] = carol["id"]
        world.ids["group_id"] = group["id"]
    await wait_for_jobs(api, worlds)
    return worlds
