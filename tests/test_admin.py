"""The admin API (`admin/v2/`) and the rule that only admins reach it, nor the user and group
administration: checked on every such route of the route table, so new routes are covered."""

from __future__ import annotations

import asyncio
import io
import re
import time
import zipfile
from datetime import UTC, datetime, timedelta, timezone

import pytest

from fractal_jupyter.handlers.base import operations_of
from fractal_jupyter.handlers.routes import ROUTES
from tests.support.jobs import make_workflow, processes_mentioning, register_tasks, wait_for_job

# Routes of admins only: everything under these prefixes, plus these exact paths.
ADMIN_PREFIXES = ("/admin/", "/auth/users/", "/auth/group/")
ADMIN_PATHS = {"/auth/register/", "/api/settings/"}
# A body each admin write accepts, so that a 403 cannot hide behind a 422.
VALID_BODIES = {
    ("post", "/auth/register/"): {"email": "new@lab.org"},
    ("post", "/auth/group/"): {"name": "g"},
    ("patch", "/admin/v2/job/{job_id}/"): {"status": "failed"},
    # (A list of task ids: `{}` would be refused as a body before the caller is looked at.)
    ("post", "/admin/v2/task/make-core/"): [1],
    ("post", "/admin/v2/task/make-not-core/"): [1],
}
PLATE = {"rows": "A", "columns": 2, "fields": 1}


def admin_operations():
    found = []
    for route in ROUTES:
        if route.path.startswith(ADMIN_PREFIXES) or route.path in ADMIN_PATHS:
            for method in operations_of(route.handler):
                found.append((method, route.path))
    return found


def test_the_admin_routes_are_all_found():
    operations = admin_operations()
    # 17 at the time of writing; more is fine, fewer means routes went missing.
    assert len(operations) >= 17, operations
    assert ("get", "/admin/v2/task/") in operations
    assert ("patch", "/auth/users/{user_id}/settings/") in operations


async def test_non_admins_get_403_on_every_admin_route(api):
    _, me = await api("GET", "auth/current-user/")
    for method, path in admin_operations():
        url = re.sub(r"\{\w+\}", str(me["id"]), path).lstrip("/")
        body = VALID_BODIES.get((method, path), {} if method in ("post", "patch") else None)
        status, answer = await api(method.upper(), url, body)
        assert status == 403, (method, path, status, answer)
        assert "administrators" in answer["detail"]
        # Admins get through (to an answer of the route itself).
        status, answer = await api(method.upper(), url, body, user="admin")
        assert status != 403, (method, path, answer)
    # Nothing was written by the refused calls.
    _, users = await api("GET", "auth/users/", user="admin")
    assert "new@lab.org" in {user["email"] for user in users}  # the admin's call
    _, groups = await api("GET", "auth/group/", user="admin")
    assert [group["name"] for group in groups] == ["All", "g"]


@pytest.fixture
def jobs_env(api, jp_asyncio_loop, tmp_path):
    """Alice: a project with a finished job. Bob: a project with a long running job.
    The tasks are an admin's: both users' jobs may run them."""

    async def make():
        tasks = await register_tasks(api, user="admin")
        made = {}
        for user in ("alice", "bob"):
            _, project = await api("POST", "api/v2/project/", {"name": f"{user}'s"}, user=user)
            path = f"api/v2/project/{project['id']}/"
            _, dataset = await api(
                "POST",
                path + "dataset/",
                {"name": "d", "zarr_dir": str(tmp_path / user)},
                user=user,
            )
            made[user] = (project, path, dataset)
        project, path, dataset = made["alice"]
        workflow = await make_workflow(
            api, path, "quick", [(tasks["Create demo plate"], {"args_non_parallel": PLATE})]
        )
        status, job = await api(
            "POST",
            path + "job/submit/",
            {},
            params={"workflow_id": str(workflow["id"]), "dataset_id": str(dataset["id"])},
        )
        assert status == 202, job
        done = await wait_for_job(api, path, job["id"])
        assert done["status"] == "done", done["log"]
        return tasks, made, done

    return jp_asyncio_loop.run_until_complete(make())


async def no_process_left(working_dir, timeout=30.0):
    """The job process reports the end just before it exits: give it a moment (a deadline,
    since a look through /proc is slow on a loaded machine)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not processes_mentioning(working_dir):
            return
        await asyncio.sleep(0.1)
    assert processes_mentioning(working_dir) == []


async def admin_wait_for_job(api, job_id, timeout=30.0):
    """Poll `admin/v2/job/{id}/` until the job ended."""
    for _ in range(int(timeout * 10)):
        status, job = await api("GET", f"admin/v2/job/{job_id}/", user="admin")
        assert status == 200, job
        if job["status"] != "submitted":
            return job
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} still running after {timeout} s")


async def test_admin_projects_and_jobs(api, jobs_env):
    tasks, made, alice_job = jobs_env
    alice_project = made["alice"][0]
    bob_project, bob_path, bob_dataset = made["bob"]
    _, bob = await api("GET", "auth/current-user/", user="bob")

    status, projects = await api("GET", "admin/v2/project/", user="admin")
    assert status == 200 and projects == [alice_project, bob_project]
    _, only = await api("GET", "admin/v2/project/", user="admin", params={"user_id": bob["id"]})
    assert only == [bob_project]
    _, only = await api(
        "GET", "admin/v2/project/", user="admin", params={"id": alice_project["id"]}
    )
    assert only == [alice_project]

    # Bob's long job, followed by the admin.
    _, long_workflow = await api("POST", bob_path + "workflow/", {"name": "long"}, user="bob")
    for task, body in [
        (tasks["Create demo plate"], {"args_non_parallel": PLATE}),
        (tasks["Misbehave"], {"args_parallel": {"mode": "sleep", "seconds": 120}}),
    ]:
        status, answer = await api(
            "POST",
            f"{bob_path}workflow/{long_workflow['id']}/wftask/",
            body,
            params={"task_id": str(task["id"])},
            user="bob",
        )
        assert status == 201, answer
    status, bob_job = await api(
        "POST",
        bob_path + "job/submit/",
        {},
        params={"workflow_id": str(long_workflow["id"]), "dataset_id": str(bob_dataset["id"])},
        user="bob",
    )
    assert status == 202, bob_job

    async def listed(**params):
        status, jobs = await api(
            "GET", "admin/v2/job/", user="admin", params={k: str(v) for k, v in params.items()}
        )
        assert status == 200, jobs
        return [job["id"] for job in jobs]

    both = [alice_job["id"], bob_job["id"]]
    assert await listed() == both
    assert await listed(user_id=bob["id"]) == [bob_job["id"]]
    assert await listed(project_id=alice_project["id"]) == [alice_job["id"]]
    assert await listed(dataset_id=bob_dataset["id"]) == [bob_job["id"]]
    assert await listed(workflow_id=long_workflow["id"]) == [bob_job["id"]]
    assert await listed(status="submitted") == [bob_job["id"]]
    assert await listed(status="done") == [alice_job["id"]]
    assert await listed(id=alice_job["id"], status="submitted") == []
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    in_an_hour = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert await listed(start_timestamp_min=an_hour_ago, start_timestamp_max=in_an_hour) == both
    assert await listed(start_timestamp_min=in_an_hour) == []
    assert await listed(start_timestamp_max=alice_job["start_timestamp"]) == [alice_job["id"]]
    assert await listed(end_timestamp_min=an_hour_ago) == [alice_job["id"]]  # bob's has none
    assert await listed(end_timestamp_max=an_hour_ago) == []
    # Another time zone, same instant.
    later = datetime.fromisoformat(alice_job["end_timestamp"]) + timedelta(seconds=1)
    shifted = later.astimezone(timezone(timedelta(hours=5))).isoformat()
    assert await listed(end_timestamp_max=shifted) == [alice_job["id"]]

    status, body = await api(
        "GET", "admin/v2/job/", user="admin", params={"start_timestamp_min": "2024-01-01T00:00:00"}
    )
    assert (status, body) == (
        422,
        {"detail": "The timestamp provided has no timezone information: 2024-01-01 00:00:00"},
    )
    status, body = await api("GET", "admin/v2/job/", user="admin", params={"status": "running"})
    assert status == 422
    _, without_log = await api("GET", "admin/v2/job/", user="admin", params={"log": "false"})
    assert [job["log"] for job in without_log] == [None, None]

    status, job = await api("GET", f"admin/v2/job/{alice_job['id']}/", user="admin")
    assert status == 200 and job == alice_job
    status, body = await api("GET", "admin/v2/job/9999/", user="admin")
    assert (status, body) == (404, {"detail": "Job 9999 not found"})

    # Download: the job folder as a zip.
    status, _ = await api("GET", "admin/v2/job/9999/download/", user="admin")
    assert status == 404

    # Stop bob's job as the admin: it ends failed, its task processes are gone.
    for _ in range(150):
        if processes_mentioning(f"{bob_job['working_dir']}/1_misbehave"):
            break
        await asyncio.sleep(0.1)
    status, body = await api("GET", f"admin/v2/job/{bob_job['id']}/stop/", user="admin")
    assert (status, body) == (202, None)
    stopped = await admin_wait_for_job(api, bob_job["id"])
    assert stopped["status"] == "failed" and "stopped" in stopped["log"]
    await no_process_left(bob_job["working_dir"])
    status, body = await api("GET", f"admin/v2/job/{bob_job['id']}/stop/", user="admin")
    assert status == 422 and "not running" in body["detail"]


async def test_admin_downloads_any_job(api, jp_fetch, jobs_env):
    _, _, alice_job = jobs_env
    response = await jp_fetch(
        "fractal",
        f"admin/v2/job/{alice_job['id']}/download/",
        headers={"X-Test-User": "admin"},
    )
    assert response.code == 200
    assert response.headers["Content-Type"] == "application/x-zip-compressed"
    names = zipfile.ZipFile(io.BytesIO(response.body)).namelist()
    assert "workflow.log" in names


async def test_admin_marks_a_running_job_failed(api, jobs_env):
    tasks, made, alice_job = jobs_env
    _, bob_path, bob_dataset = made["bob"]
    _, workflow = await api("POST", bob_path + "workflow/", {"name": "long"}, user="bob")
    status, _ = await api(
        "POST",
        f"{bob_path}workflow/{workflow['id']}/wftask/",
        {"args_parallel": {"mode": "sleep", "seconds": 120}},
        params={"task_id": str(tasks["Misbehave"]["id"])},
        user="bob",
    )
    # An image to run on, so the sleeping task starts.
    zarr_dir = bob_dataset["zarr_dir"]
    await api(
        "POST",
        f"{bob_path}dataset/{bob_dataset['id']}/images/",
        {"zarr_url": f"{zarr_dir}/img"},
        user="bob",
    )
    status, job = await api(
        "POST",
        bob_path + "job/submit/",
        {},
        params={"workflow_id": str(workflow["id"]), "dataset_id": str(bob_dataset["id"])},
        user="bob",
    )
    assert status == 202, job
    for body in ({"status": "done"}, {"status": "submitted"}):
        status, answer = await api("PATCH", f"admin/v2/job/{job['id']}/", body, user="admin")
        assert (status, answer) == (422, {"detail": f"Cannot set job status to {body['status']}"})
    status, answer = await api("PATCH", f"admin/v2/job/{job['id']}/", {"status": "x"}, user="admin")
    assert status == 422
    status, failed = await api(
        "PATCH", f"admin/v2/job/{job['id']}/", {"status": "failed"}, user="admin"
    )
    assert status == 200
    assert failed["status"] == "failed" and failed["end_timestamp"] is not None
    assert "marked as failed by a Fractal administrator" in failed["log"]
    await no_process_left(job["working_dir"])
    _, seen_by_bob = await api("GET", f"{bob_path}job/{job['id']}/", user="bob")
    assert seen_by_bob["status"] == "failed"
    # A finished job may be marked failed too (as 2.6.4).
    status, answer = await api(
        "PATCH", f"admin/v2/job/{alice_job['id']}/", {"status": "failed"}, user="admin"
    )
    assert status == 200 and answer["status"] == "failed"
    status, _ = await api("PATCH", "admin/v2/job/9999/", {"status": "failed"}, user="admin")
    assert status == 404


async def test_admin_task_query(api, jobs_env):
    tasks, made, _ = jobs_env
    alice_project = made["alice"][0]
    _, alice = await api("GET", "auth/current-user/")
    _, all_tasks = await api("GET", "admin/v2/task/", user="admin")
    assert {item["task"]["id"] for item in all_tasks} == {task["id"] for task in tasks.values()}
    plate = tasks["Create demo plate"]
    status, found = await api("GET", "admin/v2/task/", user="admin", params={"id": plate["id"]})
    assert status == 200
    assert found == [
        {
            "task": {
                key: plate[key]
                for key in (
                    "id",
                    "name",
                    "type",
                    "command_non_parallel",
                    "command_parallel",
                    "source",
                    "owner",
                    "version",
                )
            },
            "relationships": [
                {
                    "workflow_id": found[0]["relationships"][0]["workflow_id"],
                    "workflow_name": "quick",
                    "project_id": alice_project["id"],
                    "project_name": alice_project["name"],
                    "project_users": [{"id": alice["id"], "email": alice["email"]}],
                }
            ],
        }
    ]
    _, by_name = await api("GET", "admin/v2/task/", user="admin", params={"name": "MISBEHAVE"})
    assert [item["task"]["name"] for item in by_name] == ["Misbehave"]
    assert by_name[0]["relationships"] == []
    _, by_source = await api("GET", "admin/v2/task/", user="admin", params={"source": "misbeh"})
    assert [item["task"]["name"] for item in by_source] == ["Misbehave"]
    _, by_owner = await api("GET", "admin/v2/task/", user="admin", params={"owner": "admin"})
    assert len(by_owner) == len(tasks)
    _, users_tasks = await api("GET", "admin/v2/task/", user="admin", params={"kind": "users"})
    _, common = await api("GET", "admin/v2/task/", user="admin", params={"kind": "common"})
    assert (len(users_tasks), common) == (len(tasks), [])
    status, body = await api(
        "GET", "admin/v2/task/", user="admin", params={"max_number_of_results": "1"}
    )
    assert status == 422 and "Too many Tasks" in body["detail"]
    status, body = await api("GET", "admin/v2/task/", user="admin", params={"kind": "mine"})
    assert status == 422
