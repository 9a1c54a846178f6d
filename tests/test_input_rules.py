"""Input rules of issue 16: NaN and Infinity, commands that cannot run, usernames and their
e-mail addresses, null in PATCH bodies, path ids, paths without their trailing slash.

Each refusal is a 4xx whose `detail` says what is wrong, and nothing is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fractal_jupyter.runner.call import command_line
from fractal_jupyter.runner.interface import TaskCall, TaskFailed
from fractal_jupyter.services.users import EMAIL_DOMAIN
from tests.conftest import fractal_state_of
from tests.support.task_packages import build_task_wheel, mock_manifest
from tests.test_task_collection import COLLECT, wait_for_collection

TASK = {"name": "t", "source": "t", "command_non_parallel": "python t.py"}
SCHEMA = {"type": "object", "properties": {"x": {"type": "number"}}}


@pytest.fixture
def workflow(api, jp_asyncio_loop):
    """A project path, a workflow path with one workflow task (its path), and the task."""

    async def make() -> tuple[str, str, str, dict[str, Any]]:
        _, project = await api("POST", "api/v2/project/", {"name": "p"})
        project_path = f"api/v2/project/{project['id']}/"
        _, task = await api(
            "POST",
            "api/v2/task/",
            {**TASK, "command_parallel": "python p.py", "args_schema_parallel": SCHEMA},
        )
        _, wf = await api("POST", project_path + "workflow/", {"name": "w"})
        workflow_path = f"{project_path}workflow/{wf['id']}/"
        status, entry = await api(
            "POST", workflow_path + "wftask/", {}, params={"task_id": str(task["id"])}
        )
        assert status == 201, entry
        return project_path, workflow_path, f"{workflow_path}wftask/{entry['id']}/", task

    return jp_asyncio_loop.run_until_complete(make())


def assert_refused(status: int, body: Any, loc: list[Any], *words: str) -> None:
    assert status == 422, body
    problems = [item for item in body["detail"] if item["loc"][: len(loc)] == loc]
    assert problems, body
    for word in words:
        assert word in problems[0]["msg"], (word, body)


# -- NaN and Infinity -------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, raw_value",
    [
        ("meta_non_parallel", '{"mem": NaN}'),
        ("meta_parallel", '{"sizes": [1, Infinity]}'),
        ("args_schema_parallel", '{"type": "object", "maximum": -Infinity}'),
    ],
)
async def test_task_json_refuses_nan(api, field, raw_value):
    body = (
        json.dumps({**TASK, "command_parallel": "python p.py"})[:-1] + f', "{field}": {raw_value}}}'
    )
    status, answer = await api("POST", "api/v2/task/", raw_body=body.encode())
    assert_refused(status, answer, ["body", field], "NaN or infinite", "finite")
    _, tasks = await api("GET", "api/v2/task/")
    assert tasks == []


async def test_workflow_task_json_refuses_nan(api, workflow):
    project_path, workflow_path, entry_path, task = workflow
    _, before = await api("GET", entry_path)
    for field, raw_value, where in [
        ("args_parallel", '{"x": NaN}', "['x']"),
        ("meta_parallel", '{"a": {"b": [0, -Infinity]}}', "['a']['b'][1]"),
        ("meta_non_parallel", '{"a": Infinity}', "['a']"),
    ]:
        raw = f'{{"{field}": {raw_value}}}'.encode()
        status, answer = await api("PATCH", entry_path, raw_body=raw)
        assert_refused(status, answer, ["body", field], f"the value{where} is NaN or infinite")
        status, answer = await api(
            "POST", workflow_path + "wftask/", raw_body=raw, params={"task_id": str(task["id"])}
        )
        assert_refused(status, answer, ["body", field], "NaN or infinite")
    _, after = await api("GET", entry_path)
    assert after == before
    _, wf = await api("GET", workflow_path)
    assert len(wf["task_list"]) == 1

    raw = json.dumps(
        {"name": "imported", "task_list": [{"task": {"source": task["source"]}}]}
    ).replace('"task": {', '"args_parallel": {"x": NaN}, "task": {')
    status, answer = await api("POST", project_path + "workflow/import/", raw_body=raw.encode())
    assert_refused(status, answer, ["body", "task_list", 0, "args_parallel"], "NaN")
    _, workflows = await api("GET", project_path + "workflow/")
    assert [w["name"] for w in workflows] == ["w"]


# -- commands that cannot run -----------------------------------------------------------

UNRUNNABLE = [
    ("python 'task.py", "a quote is not closed"),
    ('python "task.py', "a quote is not closed"),
    ("python task\0.py", "NUL"),
    ("'' task.py", "names no program"),
    ('""', "names no program"),
]


@pytest.mark.parametrize("command, reason", UNRUNNABLE)
async def test_unrunnable_commands_are_refused(api, command, reason):
    status, answer = await api("POST", "api/v2/task/", {**TASK, "command_non_parallel": command})
    assert_refused(status, answer, ["body", "command_non_parallel"], reason)
    _, tasks = await api("GET", "api/v2/task/")
    assert tasks == []

    _, task = await api("POST", "api/v2/task/", {**TASK, "command_parallel": "python p.py"})
    status, answer = await api("PATCH", f"api/v2/task/{task['id']}/", {"command_parallel": command})
    assert_refused(status, answer, ["body", "command_parallel"], reason)
    _, unchanged = await api("GET", f"api/v2/task/{task['id']}/")
    assert unchanged["command_parallel"] == "python p.py"


def test_the_runner_refuses_a_stored_unrunnable_command_with_its_reason(tmp_path):
    """A task stored before the API checked: the job fails with the reason, no traceback."""
    call = TaskCall(1, "t", "python 'task.py", {}, "0_t", "0", "non_parallel")
    with pytest.raises(TaskFailed, match="a quote is not closed"):
        command_line(call, tmp_path / "args.json", tmp_path / "out.json")


async def test_custom_collection_refuses_an_unrunnable_executable(api):
    import sys

    import fractal_jupyter

    manifest = {
        "manifest_version": "2",
        "task_list": [{"name": "Odd", "executable_non_parallel": "demo_tasks/it's.py"}],
    }
    body = {
        "manifest": manifest,
        "python_interpreter": sys.executable,
        "source": "odd",
        "package_root": str(Path(fractal_jupyter.__file__).parent),
    }
    status, answer = await api("POST", COLLECT + "custom/", body)
    assert_refused(
        status,
        answer,
        ["body", "manifest", "task_list", 0, "executable_non_parallel"],
        "a quote is not closed",
    )
    manifest["task_list"][0] = {
        "name": "Odd",
        "executable_non_parallel": "demo_tasks/create_plate.py",
        "meta_non_parallel": {"x": float("nan")},
    }
    status, answer = await api("POST", COLLECT + "custom/", raw_body=json.dumps(body).encode())
    assert_refused(status, answer, ["body", "manifest", "task_list", 0], "NaN")
    _, tasks = await api("GET", "api/v2/task/")
    assert tasks == []


async def test_pip_collection_of_a_manifest_with_an_unrunnable_executable_fails(api, tmp_path):
    manifest = mock_manifest()
    manifest["task_list"][2]["executable_parallel"] = "tasks/measure\0.py"
    wheel = build_task_wheel(tmp_path, name="nul-command", manifest=manifest)
    status, state = await api("POST", COLLECT + "pip/", {"package": str(wheel)})
    assert status == 201, state
    final, _ = await wait_for_collection(api, state["id"])
    data = final["data"]
    assert data["status"] == "fail", data
    assert "executable_parallel" in data["info"] and "NUL" in data["info"], data["info"]
    assert "NUL" in data["log"] and "task collection failed" in data["log"]
    _, tasks = await api("GET", "api/v2/task/")
    assert tasks == []


# -- usernames and e-mail addresses -----------------------------------------------------

BAD_USERNAMES = [
    ("a\0b", "control characters (found U+0000)"),
    ("a\nb", "U+000A"),
    ("a\u2028b", "U+2028"),
    ("   ", "at least 1 character"),
    ("x" * 256, "at most 255 characters"),
]


async def user_id(api, name: str) -> int:
    _, users = await api("GET", "auth/users/", user="admin")
    return next(user["id"] for user in users if user["username"] == name)


@pytest.mark.parametrize("username, reason", BAD_USERNAMES)
async def test_usernames_follow_one_rule(api, username, reason):
    await api("GET", "auth/current-user/")  # alice
    alice = await user_id(api, "alice")
    status, answer = await api(
        "PATCH", f"auth/users/{alice}/", {"username": username}, user="admin"
    )
    assert_refused(status, answer, ["body", "username"], reason)
    status, answer = await api(
        "POST", "auth/register/", {"email": "new@lab.org", "username": username}, user="admin"
    )
    assert_refused(status, answer, ["body", "username"], reason)
    _, users = await api("GET", "auth/users/", user="admin")
    assert sorted(user["username"] for user in users) == ["admin", "alice"]


async def test_a_username_taken_from_the_email_follows_the_rule_too(api):
    status, answer = await api(
        "POST", "auth/register/", {"email": "a\u0085b@lab.org"}, user="admin"
    )
    assert status == 422, answer
    status, answer = await api(
        "POST", "auth/register/", {"email": "x" * 256 + "@lab.org"}, user="admin"
    )
    assert_refused(status, answer, ["body"], "at most 255 characters")


async def test_a_jupyter_identity_that_breaks_the_rule_gets_a_clear_403(api):
    for name, reason in [("x" * 300, "at most 255"), ("a\tb", "U+0009")]:
        status, answer = await api("GET", "api/v2/project/", user=name)
        assert status == 403, answer
        assert "cannot use Fractal" in answer["detail"] and reason in answer["detail"]
    _, users = await api("GET", "auth/users/", user="admin")
    assert [user["username"] for user in users] == ["admin"]


async def test_a_renamed_user_takes_its_made_up_email_along(api):
    await api("GET", "auth/current-user/")
    alice = await user_id(api, "alice")
    status, renamed = await api(
        "PATCH", f"auth/users/{alice}/", {"username": "alice2"}, user="admin"
    )
    assert status == 200, renamed
    assert renamed["email"] == f"alice2@{EMAIL_DOMAIN}"
    # A new Jupyter user "alice" gets the made-up address that is free again.
    status, me = await api("GET", "auth/current-user/")
    assert status == 200, me
    assert (me["username"], me["email"]) == ("alice", f"alice@{EMAIL_DOMAIN}")
    assert me["id"] != alice
    _, users = await api("GET", "auth/users/", user="admin")
    emails = [user["email"] for user in users]
    assert len(emails) == len(set(emails)) == 3

    # A real address stays when its user is renamed.
    await api("PATCH", f"auth/users/{alice}/", {"email": "al@lab.org"}, user="admin")
    _, again = await api("PATCH", f"auth/users/{alice}/", {"username": "alice3"}, user="admin")
    assert again["email"] == "al@lab.org"


async def test_made_up_addresses_are_reserved_and_emails_unique(api):
    await api("GET", "auth/current-user/")
    await api("GET", "auth/current-user/", user="bob")
    alice, bob = await user_id(api, "alice"), await user_id(api, "bob")
    for email in (f"alice@{EMAIL_DOMAIN}", f"carol@{EMAIL_DOMAIN.upper()}"):
        status, answer = await api("PATCH", f"auth/users/{bob}/", {"email": email}, user="admin")
        assert status == 422, answer
        assert f"user 'bob' may only have 'bob@{EMAIL_DOMAIN}'" in answer["detail"]
        status, answer = await api(
            "POST", "auth/register/", {"email": email, "username": "carol"}, user="admin"
        )
        assert status == 422 and "made up from usernames" in answer["detail"], answer
    # Its own made-up address is fine, and so is a rename with the new made-up address.
    status, answer = await api(
        "PATCH",
        f"auth/users/{bob}/",
        {"username": "robert", "email": f"robert@{EMAIL_DOMAIN}"},
        user="admin",
    )
    assert status == 200 and answer["email"] == f"robert@{EMAIL_DOMAIN}", answer

    await api("PATCH", f"auth/users/{alice}/", {"email": "alice@lab.org"}, user="admin")
    status, answer = await api(
        "PATCH", f"auth/users/{bob}/", {"email": "Alice@Lab.org"}, user="admin"
    )
    assert (status, answer) == (400, {"detail": "UPDATE_USER_EMAIL_ALREADY_EXISTS"})
    status, answer = await api(
        "POST", "auth/register/", {"email": "ALICE@lab.org", "username": "dave"}, user="admin"
    )
    assert (status, answer) == (400, {"detail": "REGISTER_USER_ALREADY_EXISTS"})
    _, users = await api("GET", "auth/users/", user="admin")
    assert sorted((u["username"], u["email"]) for u in users) == [
        ("admin", f"admin@{EMAIL_DOMAIN}"),
        ("alice", "alice@lab.org"),
        ("robert", f"robert@{EMAIL_DOMAIN}"),
    ]


# -- null in PATCH bodies ---------------------------------------------------------------


async def test_null_is_refused_where_there_is_nothing_to_unset(api, workflow):
    project_path, workflow_path, entry_path, task = workflow
    _, group = await api("POST", "auth/group/", {"name": "g"}, user="admin")
    cases = [
        (project_path, {"name": None}, "alice"),
        (workflow_path, {"name": None}, "alice"),
        (workflow_path, {"reordered_workflowtask_ids": None}, "alice"),
        (f"api/v2/task/{task['id']}/", {"name": None}, "alice"),
        (f"api/v2/task/{task['id']}/", {"input_types": None}, "alice"),
        (f"auth/group/{group['id']}/", {"viewer_paths": None}, "admin"),
    ]
    for path, body, user in cases:
        _, before = await api("GET", path, user=user)
        status, answer = await api("PATCH", path, body, user=user)
        assert_refused(status, answer, ["body", next(iter(body))], "not set to null")
        _, after = await api("GET", path, user=user)
        assert after == before, path
    # What null means something for stays accepted: a workflow task's arguments and meta.
    status, entry = await api("PATCH", entry_path, {"args_parallel": None, "meta_parallel": None})
    assert status == 200 and entry["args_parallel"] is None, entry
    status, patched = await api("PATCH", f"api/v2/task/{task['id']}/", {"version": None})
    assert status == 200 and patched["version"] is None


# -- path ids ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["+{id}", "%20{id}", "{id}%20", "{id}_0", "%EF%BC%91", "0x{id}", "{id}.0", "-0x1"]
)
async def test_path_ids_are_plain_decimal(api, text):
    _, project = await api("POST", "api/v2/project/", {"name": "p"})
    assert project["id"] == 1
    status, answer = await api("GET", f"api/v2/project/{text.format(id=project['id'])}/")
    assert_refused(status, answer, ["path", "project_id"], "ASCII digits")
    status, answer = await api(
        "PATCH", f"api/v2/project/{text.format(id=project['id'])}/", {"name": "q"}
    )
    assert status == 422, answer
    _, same = await api("GET", "api/v2/project/1/")
    assert same["name"] == "p"


async def test_plain_path_ids_still_work(api):
    _, project = await api("POST", "api/v2/project/", {"name": "p"})
    for text in ("1", "01"):
        status, answer = await api("GET", f"api/v2/project/{text}/")
        assert status == 200 and answer["id"] == project["id"]
    status, answer = await api("GET", "api/v2/project/-1/")
    assert (status, answer) == (404, {"detail": "Project not found"})


# -- paths without their trailing slash -------------------------------------------------


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("GET", "api/v2/project", None),
        ("POST", "api/v2/project", {"name": "p"}),
        ("PATCH", "api/v2/project/1", {"name": "q"}),
        ("DELETE", "api/v2/project/1", None),
        ("POST", "api/v2/project/1/dataset/1/images/query", {}),
    ],
)
async def test_a_path_without_its_slash_is_redirected_for_every_method(
    jp_fetch, api, method, path, body
):
    await api("POST", "api/v2/project/", {"name": "p"})
    response = await jp_fetch(
        "fractal",
        path,
        method=method,
        body=None if body is None else json.dumps(body),
        params={"a": "b"},
        headers={"X-Test-User": "alice"},
        follow_redirects=False,
        raise_error=False,
        allow_nonstandard_methods=True,
    )
    assert response.code == 307, response.body
    assert response.headers["Location"].endswith(f"/fractal/{path}/?a=b")
    _, projects = await api("GET", "api/v2/project/")
    assert [p["name"] for p in projects] == ["p"]


async def test_unknown_methods_without_the_slash_get_json(jp_fetch):
    response = await jp_fetch(
        "fractal",
        "api/v2/project",
        method="OPTIONS",
        follow_redirects=False,
        raise_error=False,
    )
    assert response.code == 405
    assert json.loads(response.body) == {"detail": "Method Not Allowed"}


async def test_a_made_up_address_left_behind_by_an_older_rename_is_a_clear_refusal(
    api, jp_serverapp
):
    """Before made-up addresses followed renames, a renamed user kept `<old>@...`."""
    from sqlalchemy import update

    from fractal_jupyter.db.models import User

    await api("GET", "auth/current-user/")
    state = fractal_state_of(jp_serverapp)
    async with state.database.session(write=True) as session:
        await session.execute(
            update(User).where(User.username == "alice").values(username="alice-old")
        )
    state.forget_users()
    status, answer = await api("GET", "auth/current-user/")
    assert status == 422, answer
    assert f"alice@{EMAIL_DOMAIN} belongs to another user" in answer["detail"]
    old = await user_id(api, "alice-old")
    await api("PATCH", f"auth/users/{old}/", {"email": "old@lab.org"}, user="admin")
    status, me = await api("GET", "auth/current-user/")
    assert status == 200 and me["email"] == f"alice@{EMAIL_DOMAIN}", me
