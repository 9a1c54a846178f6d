"""Task groups through HTTP (fractal-server 2.26's `api/v2/task-group/` and
`admin/v2/task-group/`): who sees and changes which group, and the lifecycle of a collected
one (deactivate, reactivate, delete) on a tiny wheel built here.

The same lifecycle with the real fractal-tasks-core, with jobs: tests/e2e/test_tasks_core.py.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from fractal_jupyter.db.models import TaskGroupActivity
from tests.support.jobs import make_workflow
from tests.support.task_packages import build_task_wheel, mock_manifest
from tests.test_task_collection import COLLECT, PY, collector_of, wait_for_collection
from tests.test_task_trust import workspace

GROUPS = "api/v2/task-group/"
ADMIN_GROUPS = "admin/v2/task-group/"


async def wait_for_activity(
    api: Any, activity_id: int, user: str = "alice", timeout: float = 300.0
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ended activity, and what was seen of it while it ran."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        status, activity = await api("GET", f"{GROUPS}activity/{activity_id}/", user=user)
        assert status == 200, activity
        if activity["status"] in ("OK", "failed"):
            return activity, seen
        seen.append(activity)
        assert time.monotonic() < deadline, f"activity {activity_id} still running"
        await asyncio.sleep(0.1)


async def new_task(api: Any, user: str, name: str) -> dict[str, Any]:
    body = {"name": name, "source": name.lower(), "command_non_parallel": "/usr/bin/true"}
    status, task = await api("POST", "api/v2/task/", body, user=user)
    assert status == 201, task
    return dict(task)


def snapshot(folder: Path) -> list[str]:
    if not folder.exists():
        return []
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


async def test_hand_made_tasks_are_groups_of_their_owner(api):
    carol = await new_task(api, "carol", "Carols")
    await new_task(api, "dave", "Daves")
    admins = await new_task(api, "admin", "Admins")

    status, listed = await api("GET", GROUPS, user="carol")
    assert status == 200
    # carol sees her own group and the administrator's (shared with All), not dave's.
    assert [name for name, _ in listed] == ["Admins", "Carols"]
    (mine,) = dict(listed)["Carols"]
    assert mine["origin"] == "other" and mine["version"] == "0" and mine["active"] is True
    assert mine["user_email"] == "carol@fractal-jupyter.localhost"
    assert mine["user_group_id"] is None and mine["in_use"] is False
    assert [task["id"] for task in mine["task_list"]] == [carol["id"]]
    assert mine["task_list"][0]["version"] == "0" and mine["task_list"][0]["is_core"] is False
    (shared,) = dict(listed)["Admins"]
    assert shared["user_group_id"] is not None
    assert shared["task_list"][0]["id"] == admins["id"]
    _, owned = await api("GET", GROUPS, user="carol", params={"only_owner": "true"})
    assert [name for name, _ in owned] == ["Carols"]
    # The listing keeps each group's rendered tasks while they are unchanged: a change shows.
    status, _ = await api(
        "PATCH", f"api/v2/task/{carol['id']}/", {"tags": ["renamed"]}, user="carol"
    )
    assert status == 200
    _, owned = await api("GET", GROUPS, user="carol", params={"only_owner": "true"})
    assert owned[0][1][0]["task_list"][0]["tags"] == ["renamed"]

    status, one = await api("GET", f"{GROUPS}{mine['id']}/", user="carol")
    assert status == 200 and one["task_list"][0]["source"] == "carol:carols"

    # Another user: 403 for reading, changing, deactivating; 404 for an unknown group.
    status, body = await api("GET", f"{GROUPS}{mine['id']}/", user="dave")
    assert (status, body["detail"]) == (
        403,
        f"Current user has no read access to TaskGroupV2 {mine['id']}.",
    )
    for path in ("", "deactivate/", "reactivate/", "delete/"):
        method = "PATCH" if not path else "POST"
        status, body = await api(
            method, f"{GROUPS}{mine['id']}/{path}", {} if not path else None, user="dave"
        )
        assert status == 403 and "no full access" in body["detail"], (path, body)
    status, body = await api("GET", f"{GROUPS}999999/", user="carol")
    assert (status, body) == (404, {"detail": "TaskGroupV2 999999 not found"})
    status, body = await api("POST", f"{GROUPS}999999/deactivate/", user="carol")
    assert status == 404

    # Sharing: only with a group the owner belongs to; members may then run its tasks.
    dave_path, _, dave_workflow = await workspace(api, "dave")
    add_to_daves = (
        "POST",
        f"{dave_path}workflow/{dave_workflow['id']}/wftask/",
        {},
    )
    status, body = await api(*add_to_daves, params={"task_id": carol["id"]}, user="dave")
    assert status == 422 and f"of task group {mine['id']}" in body["detail"]
    _, everyone = await api("GET", "auth/group/", user="admin")
    all_id = next(group["id"] for group in everyone if group["name"] == "All")
    _, other = await api("POST", "auth/group/", {"name": "others"}, user="admin")
    status, body = await api(
        "PATCH", f"{GROUPS}{mine['id']}/", {"user_group_id": other["id"]}, user="carol"
    )
    assert status == 403 and "does not belong to UserGroup" in body["detail"]
    status, body = await api("PATCH", f"{GROUPS}{mine['id']}/", {"bogus": 1}, user="carol")
    assert status == 422
    # (the same rule when a task is made: POST api/v2/task/?user_group_id=...)
    body = {"name": "Shared", "source": "shared", "command_non_parallel": "/usr/bin/true"}
    status, refused = await api(
        "POST", "api/v2/task/", body, user="carol", params={"user_group_id": other["id"]}
    )
    assert status == 403 and "does not belong to UserGroup" in refused["detail"]
    status, _ = await api(
        "POST", "api/v2/task/", body, user="carol", params={"user_group_id": 9999}
    )
    assert status == 404
    status, shared = await api(
        "POST", "api/v2/task/", body, user="carol", params={"user_group_id": all_id}
    )
    assert status == 201, shared
    _, listed = await api("GET", GROUPS, user="dave")
    assert [group["user_group_id"] for group in dict(listed)["Shared"]] == [all_id]
    status, patched = await api(
        "PATCH", f"{GROUPS}{mine['id']}/", {"user_group_id": all_id}, user="carol"
    )
    assert status == 200 and patched["user_group_id"] == all_id
    status, seen = await api("GET", f"{GROUPS}{mine['id']}/", user="dave")
    assert status == 200 and seen["id"] == mine["id"]
    status, body = await api(*add_to_daves, params={"task_id": carol["id"]}, user="dave")
    assert status == 201, body

    # Admin routes: every group, paged and filtered; non-admins refused.
    status, page = await api("GET", ADMIN_GROUPS, user="admin", params={"origin": "other"})
    assert status == 200 and page["total_count"] == 4
    assert {item["user_id"] for item in page["items"]} == {
        item["user_id"] for item in page["items"] if item["user_id"] is not None
    }
    status, page = await api(
        "GET", ADMIN_GROUPS, user="admin", params={"private": "true", "page_size": "1"}
    )
    assert (page["total_count"], page["page_size"], len(page["items"])) == (1, 1, 1)
    assert page["items"][0]["pkg_name"] == "Daves"
    status, _ = await api("GET", ADMIN_GROUPS, user="carol")
    assert status == 403
    status, body = await api("GET", ADMIN_GROUPS, user="admin", params={"page": "0"})
    assert status == 422 and "page=0" in body["detail"]


async def test_admin_makes_a_group_core_and_not_core(api):
    """fractal-server 2.26's `admin/v2/task-group/{id}/make-core/` and `make-not-core/`:
    administrators only, every task of the group, refused (nothing changed) when another
    core task has the same name, package name and version; reads show `is_core`."""
    body = {"name": "Core", "command_non_parallel": "/usr/bin/true"}
    _, carols = await api("POST", "api/v2/task/", {**body, "source": "core-c"}, user="carol")
    _, daves = await api("POST", "api/v2/task/", {**body, "source": "core-d"}, user="dave")
    _, listed = await api("GET", GROUPS, user="carol")
    (carol_group,) = dict(listed)["Core"]
    _, listed = await api("GET", GROUPS, user="dave")
    (dave_group,) = dict(listed)["Core"]
    assert (carol_group["pkg_name"], carol_group["version"]) == ("Core", "0")
    assert (dave_group["pkg_name"], dave_group["version"]) == ("Core", "0")

    async def core_of(user: str, task: dict[str, Any], group: dict[str, Any]) -> set[bool]:
        """`is_core` of the task as every read shows it (all the same)."""
        _, tasks = await api("GET", "api/v2/task/", user=user)
        _, one = await api("GET", f"api/v2/task/{task['id']}/", user=user)
        _, listed = await api("GET", GROUPS, user=user)
        _, read = await api("GET", f"{GROUPS}{group['id']}/", user=user)
        _, admin_read = await api("GET", f"{ADMIN_GROUPS}{group['id']}/", user="admin")
        return {
            next(t["is_core"] for t in tasks if t["id"] == task["id"]),
            one["is_core"],
            next(g for g in dict(listed)["Core"] if g["id"] == group["id"])["task_list"][0][
                "is_core"
            ],
            read["task_list"][0]["is_core"],
            admin_read["task_list"][0]["is_core"],
        }

    assert await core_of("carol", carols, carol_group) == {False}
    for action in ("make-core", "make-not-core"):
        status, refused = await api("POST", f"{ADMIN_GROUPS}{carol_group['id']}/{action}/")
        assert status == 403, refused
        status, missing = await api("POST", f"{ADMIN_GROUPS}999999/{action}/", user="admin")
        assert (status, missing) == (404, {"detail": "TaskGroupV2 999999 not found"})
    assert await core_of("carol", carols, carol_group) == {False}

    status, answer = await api(
        "POST", f"{ADMIN_GROUPS}{carol_group['id']}/make-core/", user="admin"
    )
    assert (status, answer) == (200, None)
    assert await core_of("carol", carols, carol_group) == {True}
    # Again: still core (the group's own task is no duplicate).
    status, _ = await api("POST", f"{ADMIN_GROUPS}{carol_group['id']}/make-core/", user="admin")
    assert status == 200
    # dave's task has the same name, package name and version: refused, nothing changed.
    status, clash = await api("POST", f"{ADMIN_GROUPS}{dave_group['id']}/make-core/", user="admin")
    assert status == 422
    assert clash["detail"] == (
        f"Task 'Core' of Core 0 is core already as task {carols['id']}: at most one task of "
        "a name, package and version can be core. Nothing was changed."
    )
    assert await core_of("dave", daves, dave_group) == {False}

    status, answer = await api(
        "POST", f"{ADMIN_GROUPS}{carol_group['id']}/make-not-core/", user="admin"
    )
    assert (status, answer) == (200, None)
    assert await core_of("carol", carols, carol_group) == {False}
    status, _ = await api("POST", f"{ADMIN_GROUPS}{dave_group['id']}/make-core/", user="admin")
    assert status == 200
    assert await core_of("dave", daves, dave_group) == {True}
    assert await core_of("carol", carols, carol_group) == {False}


async def test_admin_makes_tasks_core_by_id(api):
    """fractal-server 2.26's `admin/v2/task/make-core/` and `make-not-core/`: a non-empty list
    of distinct task ids; 404 for an unknown one, 422 for two tasks that would be twin core
    tasks or one with a core twin already; nothing changed on a refusal."""
    body = {"command_non_parallel": "/usr/bin/true"}
    made = {}
    for user, name, source in [("carol", "A", "a-c"), ("carol", "B", "b-c"), ("dave", "A", "a-d")]:
        status, task = await api(
            "POST", "api/v2/task/", {**body, "name": name, "source": source}, user=user
        )
        assert status == 201, task
        made[source] = task["id"]
    carol_a, carol_b, dave_a = made["a-c"], made["b-c"], made["a-d"]

    async def core() -> set[int]:
        _, tasks = await api("GET", "api/v2/task/", user="admin")
        return {task["id"] for task in tasks if task["is_core"]}

    make_core, make_not_core = "admin/v2/task/make-core/", "admin/v2/task/make-not-core/"
    status, _ = await api("POST", make_core, [carol_a], user="carol")
    assert status == 403
    for bad in ([], [carol_a, carol_a], [-1], {"task_ids": [carol_a]}):
        status, refused = await api("POST", make_core, bad, user="admin")
        assert status == 422, (bad, refused)
    status, refused = await api("POST", make_core, [carol_a, carol_a], user="admin")
    assert "repeated" in str(refused["detail"])
    status, refused = await api("POST", make_core, [carol_a, 999999], user="admin")
    assert (status, refused) == (
        404,
        {"detail": "No task with the ids [999999]. Nothing was changed."},
    )
    status, refused = await api("POST", make_core, [carol_a, dave_a], user="admin")
    assert status == 422 and "at most one of them can be core" in refused["detail"]
    assert await core() == set()

    status, answer = await api("POST", make_core, [carol_a, carol_b], user="admin")
    assert (status, answer) == (200, None)
    assert await core() == {carol_a, carol_b}
    status, refused = await api("POST", make_core, [dave_a], user="admin")
    assert status == 422
    assert refused["detail"] == (
        f"Task 'A' of A 0 is core already as task {carol_a}: at most one task of a name, "
        "package and version can be core. Nothing was changed."
    )
    status, refused = await api("POST", make_not_core, [carol_a, 999999], user="admin")
    assert status == 404
    assert await core() == {carol_a, carol_b}

    status, answer = await api("POST", make_not_core, [carol_a], user="admin")
    assert (status, answer) == (200, None)
    status, _ = await api("POST", make_core, [dave_a], user="admin")
    assert status == 200
    assert await core() == {carol_b, dave_a}


async def test_deactivated_hand_made_task_is_refused_at_submission(api):
    path, dataset, workflow = await workspace(api, "alice")
    task = await new_task(api, "alice", "Step")
    await make_workflow(api, path, "w2", [(task, {})])
    _, listed = await api("GET", GROUPS)
    (group,) = dict(listed)["Step"]
    assert group["in_use"] is True

    status, activity = await api("POST", f"{GROUPS}{group['id']}/deactivate/")
    assert status == 200 and activity["action"] == "deactivate", activity
    assert activity["status"] == "pending" and activity["taskgroupv2_id"] == group["id"]
    ended, _ = await wait_for_activity(api, activity["id"])
    assert ended["status"] == "OK", ended["log"]
    status, body = await api("POST", f"{GROUPS}{group['id']}/deactivate/")
    assert (status, body["detail"]) == (
        422,
        f"Cannot deactivate TaskGroupV2 {group['id']}: it is not active.",
    )
    _, workflows = await api("GET", path + "workflow/")
    used = next(w for w in workflows if w["name"] == "w2")
    status, body = await api(
        "POST",
        path + "job/submit/",
        {},
        params={"workflow_id": str(used["id"]), "dataset_id": str(dataset["id"])},
    )
    assert status == 422, body
    assert f"deactivated task groups: task group {group['id']} (Step 0)" in body["detail"]
    # ... and cannot enter another workflow either.
    status, body = await api(
        "POST", f"{path}workflow/{workflow['id']}/wftask/", {}, params={"task_id": task["id"]}
    )
    assert status == 422 and f"task group {group['id']}" in body["detail"]

    # Deleting a group in use is refused; nothing changes.
    status, body = await api("POST", f"{GROUPS}{group['id']}/delete/")
    assert status == 422 and "used in 1 workflow(s)" in body["detail"]
    status, still = await api("GET", f"{GROUPS}{group['id']}/")
    assert status == 200 and still["active"] is False and len(still["task_list"]) == 1

    # The caller's activities; another user's are not theirs.
    status, mine = await api("GET", f"{GROUPS}activity/")
    assert [a["id"] for a in mine] == [activity["id"]]
    _, filtered = await api("GET", f"{GROUPS}activity/", params={"action": "collect"})
    assert filtered == []
    status, body = await api("GET", f"{GROUPS}activity/{activity['id']}/", user="bob")
    assert status == 403
    status, body = await api("GET", f"{GROUPS}activity/999999/")
    assert status == 404
    status, page = await api("GET", "admin/v2/task-group/activity/", user="admin")
    assert status == 200 and page["total_count"] == 1

    status, activity = await api("POST", f"{GROUPS}{group['id']}/reactivate/")
    ended, _ = await wait_for_activity(api, activity["id"])
    assert ended["status"] == "OK"
    status, body = await api("POST", f"{GROUPS}{group['id']}/reactivate/")
    assert (status, body["detail"]) == (
        422,
        f"Cannot reactivate TaskGroupV2 {group['id']}: it is active already.",
    )


async def test_collected_group_lifecycle(api, jp_serverapp, tmp_path):
    """A user's collection is a private group; deactivation removes its venv and keeps its
    freeze, reactivation rebuilds the same, deletion removes tasks and files."""
    wheel = build_task_wheel(tmp_path / "wheels", manifest=mock_manifest())
    status, state = await api("POST", COLLECT + "pip/", {"package": str(wheel)})
    assert status == 201, state
    final, _ = await wait_for_collection(api, state["id"])
    assert final["data"]["status"] == "OK", final["data"].get("log")

    _, activities = await api("GET", f"{GROUPS}activity/")
    (collect,) = activities
    assert collect["action"] == "collect" and collect["status"] == "OK"
    assert (collect["pkg_name"], collect["version"]) == ("fractal-tasks-mock", "0.1.0")
    assert "collection OK" in collect["log"]
    group_id = collect["taskgroupv2_id"]
    status, group = await api("GET", f"{GROUPS}{group_id}/")
    folder = Path(collector_of(jp_serverapp).tasks_dir) / ".fractal" / "fractal-tasks-mock0.1.0"
    assert group["origin"] == "wheel-file" and group["path"] == str(folder)
    assert group["venv_path"] == str(folder / "venv") and group["python_version"] == PY
    assert group["archive_path"] == str(wheel) and group["user_group_id"] is None
    assert [t["id"] for t in group["task_list"]] == [t["id"] for t in final["data"]["task_list"]]
    status, body = await api("GET", f"{GROUPS}{group_id}/", user="bob")
    assert status == 403
    # Refusals change nothing on disk: someone else's group, reactivating an active group,
    # deleting a group in use.
    before = snapshot(folder)
    for action in ("deactivate", "reactivate", "delete"):
        status, body = await api("POST", f"{GROUPS}{group_id}/{action}/", user="bob")
        assert status == 403 and "no full access" in body["detail"]
    status, body = await api("POST", f"{GROUPS}{group_id}/reactivate/")
    assert status == 422 and "active already" in body["detail"]
    path, _, _ = await workspace(api, "alice")
    await make_workflow(api, path, "uses it", [(group["task_list"][0], {})])
    status, body = await api("POST", f"{GROUPS}{group_id}/delete/")
    assert status == 422 and "used in 1 workflow(s)" in body["detail"]
    assert snapshot(folder) == before
    _, activities = await api("GET", f"{GROUPS}activity/")
    assert len(activities) == 1
    status, _ = await api("DELETE", path)
    assert status == 204

    status, activity = await api("POST", f"{GROUPS}{group_id}/deactivate/")
    assert status == 200
    status, body = await api("POST", f"{GROUPS}{group_id}/deactivate/")
    assert status == 422  # pending already, or not active any more
    ended, _ = await wait_for_activity(api, activity["id"])
    assert ended["status"] == "OK", ended["log"]
    assert "MB freed" in ended["log"]
    assert not (folder / "venv").exists() and (folder / "collection_freeze.txt").exists()
    _, group = await api("GET", f"{GROUPS}{group_id}/")
    assert group["active"] is False
    _, admin_view = await api("GET", f"{ADMIN_GROUPS}{group_id}/", user="admin")
    freeze = (folder / "collection_freeze.txt").read_text()
    assert "fractal-tasks-mock @ file://" in freeze
    assert admin_view["user_id"] is not None

    status, activity = await api("POST", f"{GROUPS}{group_id}/reactivate/")
    assert status == 200
    ended, seen = await wait_for_activity(api, activity["id"])
    assert ended["status"] == "OK", ended["log"]
    assert "install --no-deps -r" in ended["log"]
    assert any(a["log"] for a in seen), "no log seen while it ran"
    _, group = await api("GET", f"{GROUPS}{group_id}/")
    assert group["active"] is True
    for task in group["task_list"]:
        for command in (task["command_non_parallel"], task["command_parallel"]):
            if command is not None:
                assert Path(command.split()[1]).is_file()
    assert (folder / "collection.json").exists()

    status, activity = await api("POST", f"{GROUPS}{group_id}/delete/")
    assert status == 202
    ended, _ = await wait_for_activity(api, activity["id"])
    assert ended["status"] == "OK", ended["log"]
    assert not folder.exists()
    status, _ = await api("GET", f"{GROUPS}{group_id}/")
    assert status == 404
    _, catalogue = await api("GET", "api/v2/task/")
    assert catalogue == []


async def test_client_methods(fractal_client, make_client, in_thread):
    from fractal_jupyter.client import FractalAPIError

    client = fractal_client
    task = await in_thread(
        client.create_task,
        {"name": "Mine", "source": "mine", "command_non_parallel": "/usr/bin/true"},
    )
    ((name, (group,)),) = await in_thread(client.list_task_groups, only_owner=True)
    assert name == "Mine" and group.task_list[0].id == task.id
    assert (await in_thread(client.get_task_group, group.id)).task_list[0].source == "alice:mine"
    with pytest.raises(FractalAPIError) as refused:
        await in_thread(make_client("bob").get_task_group, group.id)
    assert refused.value.status == 403
    assert (await in_thread(client.share_task_group, group.id, None)).user_group_id is None

    activity = await in_thread(client.deactivate_task_group, group.id)
    assert activity.action == "deactivate"
    for _ in range(100):
        activity = await in_thread(client.get_task_group_activity, activity.id)
        if activity.status in ("OK", "failed"):
            break
        await asyncio.sleep(0.05)
    assert activity.status == "OK"
    listed = await in_thread(client.list_task_group_activities, action="deactivate")
    assert [a.id for a in listed] == [activity.id]
    admin = make_client("admin")
    page = await in_thread(admin.admin_list_task_groups, active=False)
    assert [item.id for item in page.items] == [group.id]
    assert (await in_thread(admin.admin_get_task_group, group.id)).active is False
    activities = await in_thread(
        admin.admin_list_task_group_activities, user_id=group_owner_id(page)
    )
    assert activities.total_count == 1
    await in_thread(admin.admin_make_task_group_core, group.id)
    assert (await in_thread(client.get_task_group, group.id)).task_list[0].is_core is True
    await in_thread(admin.admin_make_task_group_not_core, group.id)
    assert (await in_thread(client.get_task_group, group.id)).task_list[0].is_core is False
    with pytest.raises(FractalAPIError) as refused:
        await in_thread(client.admin_make_task_group_core, group.id)
    assert refused.value.status == 403


def group_owner_id(page: Any) -> int:
    return int(page.items[0].user_id)


async def test_an_activity_whose_server_died_fails(api, jp_serverapp, tmp_path):
    collector = collector_of(jp_serverapp)
    _, me = await api("GET", "auth/current-user/")
    host = collector.runner.split(":")[0]
    log_file = tmp_path / "activity.log"
    log_file.write_text("half a log\n")
    async with collector.database.session(write=True) as session:
        session.add(
            TaskGroupActivity(
                id=77,
                user_id=me["id"],
                taskgroupv2_id=None,
                pkg_name="Ghost",
                version="0",
                status="ongoing",
                action="deactivate",
                log_file=str(log_file),
                runner=f"{host}:999999999",
            )
        )
    status, activity = await api("GET", f"{GROUPS}activity/77/")
    assert status == 200, activity
    assert activity["status"] == "failed" and activity["timestamp_ended"] is not None
    assert activity["log"].startswith("half a log")
    assert "stopped before it ended" in activity["log"]
    assert not log_file.exists()
