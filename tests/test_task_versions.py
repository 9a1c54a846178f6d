"""Versions of a task: tasks made without source (2.7+), the portable workflow export and
import (`{pkg_name, version, name}`), version-update candidates and replace-task (2.26)."""

from __future__ import annotations

from typing import Any

SCHEMA_V1 = {
    "type": "object",
    "properties": {
        "zarr_url": {"type": "string"},
        "sigma": {"type": "number"},
        "mode": {"type": "string"},
    },
    "additionalProperties": False,
}
# 2.0 dropped `mode` and made `sigma` an integer.
SCHEMA_V2 = {
    "type": "object",
    "properties": {
        "zarr_url": {"type": "string"},
        "sigma": {"type": "integer"},
        "level": {"type": "integer"},
    },
    "additionalProperties": False,
}


async def make_task(api: Any, version: str, schema: dict[str, Any], user: str = "admin") -> Any:
    status, task = await api(
        "POST",
        "api/v2/task/",
        {
            "name": "Smooth Image",
            "version": version,
            "command_parallel": "python smooth.py",
            "args_schema_parallel": schema,
        },
        user=user,
    )
    assert status == 201, task
    return task


async def workflow_with(api: Any, project_path: str, task: Any, args: dict[str, Any]) -> str:
    _, workflow = await api("POST", project_path + "workflow/", {"name": "wf"})
    path = f"{project_path}workflow/{workflow['id']}/"
    status, entry = await api(
        "POST", path + "wftask/", {"args_parallel": args}, params={"task_id": str(task["id"])}
    )
    assert status == 201, entry
    return path


async def test_task_without_source(api: Any) -> None:
    task = await make_task(api, "1.0", SCHEMA_V1)
    assert (task["source"], task["owner"], task["version"]) == (
        "admin:smooth_image:1.0",
        "admin",
        "1.0",
    )
    status, again = await api(
        "POST",
        "api/v2/task/",
        {"name": "Smooth Image", "version": "1.0", "command_parallel": "python x.py"},
        user="admin",
    )
    assert status == 422 and "already used" in again["detail"]
    status, answer = await api(
        "POST", "api/v2/task/", {"name": "x", "command_parallel": "python x.py"}
    )
    assert status == 422 and "needs a `version`" in str(answer["detail"])


async def test_portable_export_and_import(api: Any, project_path: str) -> None:
    v1 = await make_task(api, "1.0", SCHEMA_V1)
    path = await workflow_with(api, project_path, v1, {"sigma": 1.5})
    status, exported = await api("GET", path + "export/")
    assert status == 200
    assert exported["task_list"][0]["task"] == {
        "source": "admin:smooth_image:1.0",
        "pkg_name": "smooth-image",
        "version": "1.0",
        "name": "Smooth Image",
    }
    # The 2.7+ form (no source): the same version is found.
    portable = {
        "name": "portable",
        "task_list": [
            {
                "task": {"pkg_name": "Smooth_Image", "version": "1.0", "name": "Smooth Image"},
                "args_parallel": {"sigma": 2},
            }
        ],
    }
    status, imported = await api("POST", project_path + "workflow/import/", portable)
    assert status == 201, imported
    assert imported["task_list"][0]["task_id"] == v1["id"]
    assert imported["task_list"][0]["warning"] is None
    # An unknown version: the newest one, said in `warning`.
    v2 = await make_task(api, "2.0", SCHEMA_V2)
    portable["name"] = "other version"
    portable["task_list"][0]["task"]["version"] = "0.5"
    status, imported = await api("POST", project_path + "workflow/import/", portable)
    assert status == 201, imported
    assert imported["task_list"][0]["task_id"] == v2["id"]
    assert "imported version 2.0" in imported["task_list"][0]["warning"]
    # Our own export (source and package) imports as it was exported.
    exported["name"] = "round trip"
    status, imported = await api("POST", project_path + "workflow/import/", exported)
    assert status == 201 and imported["task_list"][0]["task_id"] == v1["id"]
    # An export from elsewhere: its source is unknown here, its package is known.
    exported["name"] = "from elsewhere"
    exported["task_list"][0]["task"]["source"] = "pip_remote:elsewhere:1.0::py3.11:x"
    status, imported = await api("POST", project_path + "workflow/import/", exported)
    assert status == 201 and imported["task_list"][0]["task_id"] == v1["id"]


async def test_import_refusals(api: Any, project_path: str) -> None:
    await make_task(api, "1.0", SCHEMA_V1)
    await make_task(api, "1.0", SCHEMA_V1, user="bob")  # bob's: alice's jobs may not run it
    cases = [
        ({"pkg_name": "nothing", "name": "Smooth Image"}, "package 'nothing'"),
        ({"pkg_name": "smooth-image", "name": "Blur"}, "no task 'Blur'"),
        ({"name": "Smooth Image"}, "named by `source`, or by `pkg_name` and `name`"),
    ]
    for position, (task, expected) in enumerate(cases):
        body = {"name": f"bad {position}", "task_list": [{"task": task}]}
        status, answer = await api("POST", project_path + "workflow/import/", body)
        assert status == 422, answer
        assert expected in str(answer["detail"])
    _, workflows = await api("GET", project_path + "workflow/")
    assert workflows == []  # nothing half-imported
    # bob's copy is not a candidate for alice, the administrator's is.
    named = {"pkg_name": "smooth-image", "name": "Smooth Image"}
    body = {"name": "ok", "task_list": [{"task": named}]}
    status, answer = await api("POST", project_path + "workflow/import/", body)
    assert status == 201 and answer["task_list"][0]["task"]["owner"] == "admin"


async def test_version_update_and_replace(api: Any, project_path: str) -> None:
    v1 = await make_task(api, "1.0", SCHEMA_V1)
    path = await workflow_with(api, project_path, v1, {"sigma": 1.5, "mode": "fast"})
    status, candidates = await api("GET", path + "version-update-candidates/")
    assert (status, candidates) == (200, [[]])
    v2 = await make_task(api, "2.0", SCHEMA_V2)
    v10 = await make_task(api, "10.0", SCHEMA_V1)
    await make_task(api, "11.0", SCHEMA_V1, user="bob")  # not runnable by alice
    status, candidates = await api("GET", path + "version-update-candidates/")
    assert candidates == [
        [{"task_id": v2["id"], "version": "2.0"}, {"task_id": v10["id"], "version": "10.0"}]
    ]
    _, workflow = await api("GET", path)
    old_id = workflow["task_list"][0]["id"]
    params = {"workflow_task_id": str(old_id), "task_id": str(v2["id"])}
    status, replaced = await api("POST", path + "wftask/replace-task/", {}, params=params)
    assert status == 201, replaced
    assert replaced["task_id"] == v2["id"] and replaced["order"] == 0
    assert replaced["args_parallel"] is None
    assert sorted((d["loc"], d["value"]) for d in replaced["dropped_arguments"]) == [
        (["args_parallel", "mode"], "fast"),
        (["args_parallel", "sigma"], 1.5),
    ]
    _, workflow = await api("GET", path)
    assert [t["task_id"] for t in workflow["task_list"]] == [v2["id"]]
    status, candidates = await api("GET", path + "version-update-candidates/")
    assert candidates == [[{"task_id": v10["id"], "version": "10.0"}]]
    # Back to a schema that takes sigma: given arguments are checked, and kept.
    params = {"workflow_task_id": str(replaced["id"]), "task_id": str(v10["id"])}
    body = {"args_parallel": {"sigma": 2.5}}
    status, back = await api("POST", path + "wftask/replace-task/", body, params=params)
    assert status == 201 and back["args_parallel"] == {"sigma": 2.5}
    assert back["dropped_arguments"] == []


async def test_replace_refusals(api: Any, project_path: str) -> None:
    v1 = await make_task(api, "1.0", SCHEMA_V1)
    v2 = await make_task(api, "2.0", SCHEMA_V2)
    bobs = await make_task(api, "3.0", SCHEMA_V2, user="bob")
    _, other = await api(
        "POST",
        "api/v2/task/",
        {"name": "np", "version": "1", "command_non_parallel": "python np.py"},
    )
    path = await workflow_with(api, project_path, v1, {"sigma": 1.5})
    _, workflow = await api("GET", path)
    wftask = workflow["task_list"][0]

    async def replace(task_id: Any, body: Any, wftask_id: Any = wftask["id"]) -> Any:
        params = {"workflow_task_id": str(wftask_id), "task_id": str(task_id)}
        return await api("POST", path + "wftask/replace-task/", body, params=params)

    status, answer = await replace(v2["id"], {"args_parallel": {"sigma": "x"}})
    assert status == 422 and answer["detail"][0]["loc"] == ["body", "args_parallel", "sigma"]
    status, answer = await replace(other["id"], {})
    assert status == 422 and "of type 'non_parallel'" in answer["detail"]
    status, answer = await replace(bobs["id"], {})
    assert status == 422 and "may not run" in answer["detail"]
    status, answer = await replace(9999, {})
    assert status == 404
    status, answer = await replace(v2["id"], {}, wftask_id=9999)
    assert status == 404
    status, answer = await api("POST", path + "wftask/replace-task/", {})
    assert status == 422 and answer["detail"][0]["loc"][0] == "query"
    status, answer = await api("GET", path + "version-update-candidates/", user="bob")
    assert status == 403
    _, after = await api("GET", path)
    assert after["task_list"] == workflow["task_list"]  # nothing changed


async def test_add_tasks_as_a_list(api: Any, project_path: str) -> None:
    """fractal-server 2.26's form (fractal-client 2.24's `workflow add-task`)."""
    v1 = await make_task(api, "1.0", SCHEMA_V1)
    v2 = await make_task(api, "2.0", SCHEMA_V2)
    path = await workflow_with(api, project_path, v1, {"sigma": 1.0})
    items = [
        {"task_id": v2["id"], "args_parallel": {"level": 1}, "type_filters": {"is_3D": True}},
        {"task_id": v1["id"], "meta_parallel": {"mem": 8}},
    ]
    status, added = await api("POST", path + "wftask/", items, params={"order": "0"})
    assert status == 201, added
    assert [(t["task_id"], t["order"]) for t in added] == [(v2["id"], 0), (v1["id"], 1)]
    assert added[0]["input_filters"] == {"attributes": {}, "types": {"is_3D": True}}
    assert added[1]["meta_parallel"] == {"mem": 8}
    _, workflow = await api("GET", path)
    assert [t["task_id"] for t in workflow["task_list"]] == [v2["id"], v1["id"], v1["id"]]
    # All or none: the second item's arguments are refused, the first is not added either.
    bad = [{"task_id": v1["id"]}, {"task_id": v2["id"], "args_parallel": {"level": "x"}}]
    status, answer = await api("POST", path + "wftask/", bad)
    assert status == 422
    assert answer["detail"][0]["loc"] == ["body", 1, "args_parallel", "level"]
    status, answer = await api("POST", path + "wftask/", [{"args_parallel": {}}])
    assert status == 422 and answer["detail"][0]["loc"] == ["body", 0, "task_id"]
    status, answer = await api("POST", path + "wftask/", [{"task_id": 9999}])
    assert status == 404
    # The object form still needs `task_id` in the query.
    status, answer = await api("POST", path + "wftask/", {})
    assert status == 422 and answer["detail"][0]["loc"] == ["query", "task_id"]
    _, after = await api("GET", path)
    assert after["task_list"] == workflow["task_list"]


async def test_client_methods(api: Any, project_path: str, fractal_client: Any, in_thread: Any):
    v1 = await make_task(api, "1.0", SCHEMA_V1)
    v2 = await make_task(api, "2.0", SCHEMA_V2)
    path = await workflow_with(api, project_path, v1, {"sigma": 1.5})
    project_id, workflow_id = (int(part) for part in path.split("/")[3:6:2])
    candidates = await in_thread(fractal_client.version_update_candidates, project_id, workflow_id)
    assert [[(c.task_id, c.version) for c in found] for found in candidates] == [
        [(v2["id"], "2.0")]
    ]
    workflow = await in_thread(fractal_client.get_workflow, project_id, workflow_id)
    replaced = await in_thread(
        fractal_client.replace_workflow_task,
        project_id,
        workflow_id,
        workflow.task_list[0].id,
        v2["id"],
    )
    assert replaced.task_id == v2["id"]
    assert [d.loc for d in replaced.dropped_arguments] == [["args_parallel", "sigma"]]
    exported = await in_thread(fractal_client.export_workflow, project_id, workflow_id)
    assert exported.task_list[0].task.pkg_name == "smooth-image"
    exported.name = "copy"
    imported = await in_thread(fractal_client.import_workflow, project_id, exported)
    assert imported.task_list[0].task_id == v2["id"] and imported.task_list[0].warning is None
