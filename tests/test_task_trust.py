"""Who may run which task, and who may change what it runs (services/task_trust.py).

A job runs its tasks' commands as the submitting user, so it runs only tasks without owner
(an administrator's collection), the submitter's own tasks, and administrators' tasks. A task
another user owns is refused wherever it would enter a workflow (by id, by source in an
import) and at submission; its owner cannot change what it runs while other users'
workflows use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from fractal_jupyter.db.models import Task, WorkflowTask
from fractal_jupyter.demo_tasks.manifest import demo_task_bodies
from fractal_jupyter.runner.files import JobSpec
from tests.conftest import fractal_state_of
from tests.support.jobs import make_workflow, wait_for_job
from tests.support.task_packages import build_task_wheel, mock_manifest
from tests.test_task_collection import COLLECT, wait_for_collection

RULE = "a job runs only the tasks of task groups that the submitting user owns"


def database_of(jp_serverapp: Any) -> Any:
    return fractal_state_of(jp_serverapp).database


async def workspace(api: Any, user: str, zarr_dir: str = "/tmp/unused") -> tuple[str, Any, Any]:
    """`user`'s project path, a dataset and an empty workflow."""
    status, project = await api("POST", "api/v2/project/", {"name": f"{user}'s"}, user=user)
    assert status == 201, project
    path = f"api/v2/project/{project['id']}/"
    _, dataset = await api(
        "POST", path + "dataset/", {"name": "d", "zarr_dir": zarr_dir}, user=user
    )
    _, workflow = await api("POST", path + "workflow/", {"name": "w"}, user=user)
    return path, dataset, workflow


async def create_task(api: Any, user: str, name: str = "Step", source: str = "step") -> Any:
    body = {"name": name, "source": source, "command_non_parallel": "/usr/bin/true"}
    status, task = await api("POST", "api/v2/task/", body, user=user)
    assert status == 201 and task["owner"] == user, task
    return task


async def put_in_workflow(jp_serverapp: Any, workflow_id: int, task: dict[str, Any]) -> None:
    """A workflow entry made behind the API's back: a row from before this rule existed."""
    async with database_of(jp_serverapp).session(write=True) as session:
        taken = (
            await session.scalars(
                select(WorkflowTask.order).where(WorkflowTask.workflow_id == workflow_id)
            )
        ).all()
        session.add(
            WorkflowTask(
                workflow_id=workflow_id,
                order=len(taken),
                task_id=task["id"],
                task_type=task["type"],
                input_filters={"attributes": {}, "types": {}},
            )
        )


async def submit(api: Any, path: str, workflow: Any, dataset: Any, user: str) -> tuple[int, Any]:
    return await api(
        "POST",
        path + "job/submit/",
        {},
        params={"workflow_id": str(workflow["id"]), "dataset_id": str(dataset["id"])},
        user=user,
    )


async def test_another_users_task_cannot_enter_a_workflow(api):
    alices = await create_task(api, "alice", name="Alice's step")
    admins = await create_task(api, "admin", name="Admin's step")
    bobs = await create_task(api, "bob", name="Bob's step")
    path, _, workflow = await workspace(api, "bob")
    target = f"{path}workflow/{workflow['id']}/wftask/"

    status, answer = await api(
        "POST", target, {}, params={"task_id": str(alices["id"])}, user="bob"
    )
    assert status == 422, answer
    detail = answer["detail"]
    assert detail.startswith(f"Cannot add task {alices['id']} to the workflow: user 'bob'")
    assert f"task {alices['id']} 'Alice's step' (owner 'alice')" in detail
    assert RULE in detail
    _, unchanged = await api("GET", f"{path}workflow/{workflow['id']}/", user="bob")
    assert unchanged["task_list"] == []

    # Their own tasks and administrators' tasks are fine.
    for task in (bobs, admins):
        status, answer = await api(
            "POST", target, {}, params={"task_id": str(task["id"])}, user="bob"
        )
        assert status == 201, answer


async def test_import_naming_another_users_task_is_refused(api):
    await create_task(api, "alice", name="Alice's step", source="step")
    await create_task(api, "admin", name="Admin's step", source="step")
    path, _, _ = await workspace(api, "bob")
    _, before = await api("GET", "api/v2/workflow/", user="bob")
    body = {
        "name": "imported",
        "task_list": [{"task": {"source": "admin:step"}}, {"task": {"source": "alice:step"}}],
    }
    status, answer = await api("POST", path + "workflow/import/", body, user="bob")
    assert status == 422, answer
    assert answer["detail"].startswith("Cannot import the workflow: user 'bob' may not run task")
    assert "'Alice's step' (owner 'alice')" in answer["detail"]
    assert "Admin's step" not in answer["detail"]
    _, after = await api("GET", "api/v2/workflow/", user="bob")
    assert after == before

    body["task_list"] = body["task_list"][:1]
    status, imported = await api("POST", path + "workflow/import/", body, user="bob")
    assert status == 201, imported
    assert imported["task_list"][0]["task"]["source"] == "admin:step"


async def test_submission_refuses_another_users_task(api, jp_serverapp):
    bobs = await create_task(api, "bob", name="Bob's step")
    alices = await create_task(api, "alice", name="Alice's step")
    path, dataset, workflow = await workspace(api, "bob")
    await api(
        "POST",
        f"{path}workflow/{workflow['id']}/wftask/",
        {},
        params={"task_id": str(bobs["id"])},
        user="bob",
    )
    await put_in_workflow(jp_serverapp, workflow["id"], alices)

    status, answer = await submit(api, path, workflow, dataset, "bob")
    assert status == 422, answer
    detail = answer["detail"]
    assert detail.startswith("Cannot submit the job: user 'bob' may not run ")
    assert f"task {alices['id']} 'Alice's step' (owner 'alice')" in detail
    assert "Bob's step" not in detail and RULE in detail
    _, jobs = await api("GET", f"{path}job/", user="bob")
    assert jobs == []


async def test_owner_cannot_change_what_runs_while_others_use_it(api, jp_serverapp):
    task = await create_task(api, "alice")
    task_path = f"api/v2/task/{task['id']}/"
    # Alice's own workflow using it does not stop her.
    _, _, alice_workflow = await workspace(api, "alice")
    await put_in_workflow(jp_serverapp, alice_workflow["id"], task)
    status, changed = await api("PATCH", task_path, {"command_non_parallel": "/usr/bin/env"})
    assert status == 200 and changed["command_non_parallel"] == "/usr/bin/env", changed

    _, _, bob_workflow = await workspace(api, "bob")
    await put_in_workflow(jp_serverapp, bob_workflow["id"], task)
    for change in (
        {"command_non_parallel": "/usr/bin/evil"},
        {"input_types": {"is_3D": True}},
        {"output_types": {"is_3D": False}, "name": "renamed"},
    ):
        status, answer = await api("PATCH", task_path, change)
        assert status == 422, (change, answer)
        assert (
            f"of TaskV2 {task['id']}: it is used in 1 workflow(s) of other users"
            in (answer["detail"])
        )
    _, unchanged = await api("GET", task_path)
    assert unchanged == changed

    # What does not change what runs may change; the same value is no change.
    body = {"name": "renamed", "command_non_parallel": "/usr/bin/env", "tags": ["x"]}
    status, renamed = await api("PATCH", task_path, body)
    assert status == 200 and renamed["name"] == "renamed", renamed
    # Administrators may: they already decide what every user runs.
    status, fixed = await api(
        "PATCH", task_path, {"command_non_parallel": "/usr/bin/true"}, user="admin"
    )
    assert status == 200 and fixed["command_non_parallel"] == "/usr/bin/true", fixed


async def test_own_admin_and_collected_tasks_run(api, jp_serverapp, tmp_path):
    """Bob's job runs a task without owner, an admin's task and his own; a PATCH after the
    submission does not change the submitted job (it runs what submission wrote down)."""
    bodies = {body["name"]: body for body in demo_task_bodies()}
    owners = {"Create demo plate": "admin", "Measure intensity": "admin", "Project image": "bob"}
    tasks = {}
    for name, owner in owners.items():
        status, tasks[name] = await api("POST", "api/v2/task/", bodies[name], user=owner)
        assert status == 201, tasks[name]
    async with database_of(jp_serverapp).session(write=True) as session:
        collected = tasks["Create demo plate"]["id"]
        await session.execute(update(Task).where(Task.id == collected).values(owner=None))
    path, dataset, _ = await workspace(api, "bob", str(tmp_path / "zarr"))
    bob = _as(api, "bob")
    workflow = await make_workflow(
        bob,
        path,
        "mixed",
        [
            (
                tasks["Create demo plate"],
                {"args_non_parallel": {"rows": "A", "columns": 1, "fields": 1}},
            ),
            (tasks["Measure intensity"], {}),
            (tasks["Project image"], {}),
        ],
    )
    status, job = await submit(api, path, workflow, dataset, "bob")
    assert status == 202, job
    status, patched = await api(
        "PATCH",
        f"api/v2/task/{tasks['Project image']['id']}/",
        {"command_parallel": "/no/such/command"},
        user="bob",
    )
    assert status == 200, patched
    job = await wait_for_job(bob, path, job["id"])
    assert job["status"] == "done", job["log"]
    spec = JobSpec.read(Path(job["working_dir"]))
    assert spec.tasks[2].command_parallel == tasks["Project image"]["command_parallel"]
    _, page = await api("POST", f"{path}dataset/{dataset['id']}/images/query/", {}, user="bob")
    assert page["total_count"] == 2, page  # the plate's image and its projection


async def test_a_users_pip_collection_is_theirs(api, tmp_path):
    """An administrator's collection has no owner (tests/test_task_collection.py); anyone
    else's belongs to them, so it runs only in their own jobs."""
    wheel = build_task_wheel(tmp_path / "wheels", manifest=mock_manifest())
    status, state = await api("POST", COLLECT + "pip/", {"package": str(wheel)}, user="bob")
    assert status == 201, state
    final, _ = await wait_for_collection(api, state["id"])
    assert final["data"]["status"] == "OK", final["data"].get("log")
    tasks = final["data"]["task_list"]
    assert [task["owner"] for task in tasks] == ["bob"] * 3
    assert tasks[0]["source"].startswith("pip_local:fractal_tasks_mock:0.1.0:")

    path, _, workflow = await workspace(api, "alice")
    status, answer = await api(
        "POST",
        f"{path}workflow/{workflow['id']}/wftask/",
        {},
        params={"task_id": str(tasks[0]["id"])},
    )
    assert status == 422 and "(owner 'bob')" in answer["detail"], answer
    status, renamed = await api(
        "PATCH", f"api/v2/task/{tasks[0]['id']}/", {"name": "Mine"}, user="bob"
    )
    assert status == 200 and renamed["name"] == "Mine", renamed


def _as(api: Any, user: str) -> Any:
    """`api` as `user`, for the job helpers (which call `api` without a user)."""

    async def call(*args: Any, **kwargs: Any) -> Any:
        return await api(*args, user=user, **kwargs)

    return call
