import pytest

from tests.support.tasks_core import task_create_bodies, tasks_core_manifest

SIMPLE = {
    "name": "my task",
    "source": "my-source",
    "command_parallel": "python /opt/task.py",
    "meta_parallel": {"cpus_per_task": 2},
    "args_schema_parallel": {
        "type": "object",
        "properties": {"sigma": {"type": "number"}},
        "additionalProperties": False,
    },
    "input_types": {"is_3D": True},
    "output_types": {"is_3D": False},
    "docs_link": "https://example.org/docs",
}


async def test_task_lifecycle(api):
    status, task = await api("POST", "api/v2/task/", SIMPLE, user="carol")
    assert status == 201, task
    assert task["source"] == "carol:my-source" and task["owner"] == "carol"
    assert task["type"] == "parallel"
    assert task["meta_non_parallel"] == {} and task["meta_parallel"] == {"cpus_per_task": 2}
    assert task["docs_link"] == "https://example.org/docs"
    assert task["tags"] == [] and task["category"] is None

    # Every user reads every task.
    status, listed = await api("GET", "api/v2/task/", user="dave")
    assert listed == [task]
    status, slim = await api("GET", "api/v2/task/", params={"args_schema_parallel": "false"})
    assert slim[0]["args_schema_parallel"] is None
    status, one = await api("GET", f"api/v2/task/{task['id']}/", user="dave")
    assert one == task

    # Only the owner (or an admin) changes or deletes it.
    status, body = await api("PATCH", f"api/v2/task/{task['id']}/", {"name": "x"}, user="dave")
    assert status == 403 and "cannot modify" in body["detail"]
    status, body = await api("DELETE", f"api/v2/task/{task['id']}/", user="dave")
    assert status == 403
    status, patched = await api(
        "PATCH", f"api/v2/task/{task['id']}/", {"name": "renamed", "version": "2"}, user="carol"
    )
    assert (patched["name"], patched["version"]) == ("renamed", "2")
    status, patched = await api(
        "PATCH", f"api/v2/task/{task['id']}/", {"tags": ["Segmentation"]}, user="admin"
    )
    assert patched["tags"] == ["Segmentation"]
    status, body = await api(
        "PATCH",
        f"api/v2/task/{task['id']}/",
        {"command_non_parallel": "python x.py"},
        user="carol",
    )
    assert status == 422 and "command_non_parallel" in body["detail"]
    status, _ = await api("DELETE", f"api/v2/task/{task['id']}/", user="carol")
    assert status == 204
    status, body = await api("GET", f"api/v2/task/{task['id']}/")
    assert (status, body) == (404, {"detail": "TaskV2 not found"})


async def test_task_type_follows_commands(api):
    cases = [
        ({"command_non_parallel": "a"}, "non_parallel"),
        ({"command_parallel": "a"}, "parallel"),
        ({"command_non_parallel": "a", "command_parallel": "b"}, "compound"),
        ({"command_non_parallel": "a", "type": "converter_non_parallel"}, "converter_non_parallel"),
        (
            {"command_non_parallel": "a", "command_parallel": "b", "type": "converter_compound"},
            "converter_compound",
        ),
    ]
    for index, (commands, expected) in enumerate(cases):
        status, task = await api(
            "POST", "api/v2/task/", {"name": "t", "source": f"s{index}", **commands}
        )
        assert (status, task["type"]) == (201, expected)


@pytest.mark.parametrize(
    "body, where",
    [
        ({"name": "t", "source": "s"}, "at least one valid command"),
        ({"name": "t", "source": "s", "command_parallel": "rm -rf / ; echo"}, "commands must"),
        (
            {"name": "t", "source": "s", "command_parallel": "a", "type": "non_parallel"},
            "does not fit",
        ),
        (
            {"name": "t", "source": "s", "command_parallel": "a", "meta_non_parallel": {"x": 1}},
            "meta_non_parallel",
        ),
        (
            {"name": "t", "source": "s", "command_non_parallel": "a", "args_schema_parallel": {}},
            "args_schema_parallel",
        ),
        (
            {
                "name": "t",
                "source": "s",
                "command_parallel": "a",
                "args_schema_parallel": {"type": "no-such-type"},
            },
            "not a valid JSON Schema",
        ),
        ({"name": "t", "source": "s", "command_parallel": "a", "docs_link": "ftp://x"}, "http"),
        ({"name": "t", "source": "s", "command_parallel": "a", "unknown": 1}, "unknown"),
        ({"name": 5, "source": "s", "command_parallel": "a"}, "name"),
    ],
)
async def test_bad_tasks_are_refused(api, body, where):
    status, answer = await api("POST", "api/v2/task/", body)
    assert status == 422
    assert where in str(answer["detail"])
    _, tasks = await api("GET", "api/v2/task/")
    assert tasks == []


async def test_sources_are_unique(api):
    body = {"name": "t", "source": "s", "command_parallel": "a"}
    assert (await api("POST", "api/v2/task/", body))[0] == 201
    status, answer = await api("POST", "api/v2/task/", body)
    assert (status, answer) == (422, {"detail": "Source 'alice:s' already used by some TaskV2"})
    assert (await api("POST", "api/v2/task/", body, user="bob"))[0] == 201


async def test_tasks_core_manifest_round_trips(api):
    manifest = tasks_core_manifest()
    for body in task_create_bodies(manifest):
        status, task = await api("POST", "api/v2/task/", body, user="admin")
        assert status == 201, task
        assert task["type"] == body["type"]
        assert task["tags"] == body.get("tags", [])
        assert task["category"] == body.get("category")
        assert task["args_schema_parallel"] == body.get("args_schema_parallel")
    _, tasks = await api("GET", "api/v2/task/")
    assert {task["name"] for task in tasks} == {entry["name"] for entry in manifest["task_list"]}
