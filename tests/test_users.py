"""Users on Jupyter identity: the caller's record and settings, admins' user API, register."""

from __future__ import annotations

import getpass

from fractal_jupyter.services.admin import sanitized_settings
from fractal_jupyter.services.users import EMAIL_DOMAIN
from tests.conftest import fractal_state_of
from tests.support.jobs import make_workflow, register_tasks, wait_for_job


async def ids(api, *names):
    """Make the users exist (first sight) and return their ids."""
    result = []
    for name in names:
        _, me = await api("GET", "auth/current-user/", user=name)
        result.append(me["id"])
    return result


async def test_current_user_groups_and_self_edit(api):
    status, me = await api("GET", "auth/current-user/", params={"group_names": "true"})
    assert status == 200
    assert me["username"] == "alice" and me["email"] == f"alice@{EMAIL_DOMAIN}"
    assert me["group_names"] == ["All"] and me["group_ids"] is None
    # Nothing of one's own record can be changed (UserUpdateStrict has no fields).
    status, body = await api("PATCH", "auth/current-user/", {"is_superuser": True})
    assert status == 422 and body["detail"][0]["loc"] == ["body", "is_superuser"]
    status, same = await api("PATCH", "auth/current-user/", {})
    assert status == 200 and same["is_superuser"] is False and same["group_names"] == ["All"]
    status, names = await api("GET", "auth/group-names/")
    assert (status, names) == (200, ["All"])


async def test_own_settings(api):
    status, mine = await api("GET", "auth/current-user/settings/")
    assert (status, mine) == (
        200,
        {"slurm_user": None, "slurm_accounts": [], "cache_dir": None, "ssh_username": None},
    )
    status, mine = await api(
        "PATCH",
        "auth/current-user/settings/",
        {"slurm_accounts": ["lab", "other"], "cache_dir": None},
    )
    assert status == 200
    assert mine["slurm_accounts"] == ["lab", "other"]
    assert mine["cache_dir"] is None
    _, again = await api("GET", "auth/current-user/settings/")
    assert again == mine
    # Only slurm_accounts and cache_dir are the user's to change; bad values are 422.
    for body, location in [
        ({"slurm_user": "root"}, "slurm_user"),
        ({"ssh_host": "x"}, "ssh_host"),
        ({"cache_dir": "relative/dir"}, "cache_dir"),
        ({"cache_dir": "/a;rm -rf"}, "cache_dir"),
        ({"cache_dir": "/scratch/alice/cache"}, "cache_dir"),  # not used: refused
        ({"slurm_accounts": ["a", "a"]}, "slurm_accounts"),
        ({"slurm_accounts": [1]}, "slurm_accounts"),
    ]:
        status, answer = await api("PATCH", "auth/current-user/settings/", body)
        assert status == 422, body
        assert answer["detail"][0]["loc"][:2] == ["body", location]
    _, unchanged = await api("GET", "auth/current-user/settings/")
    assert unchanged == mine
    # null clears.
    _, cleared = await api("PATCH", "auth/current-user/settings/", {"slurm_accounts": None})
    assert cleared["cache_dir"] is None and cleared["slurm_accounts"] == []


async def test_admin_reads_and_edits_anyones_settings(api):
    (bob,) = await ids(api, "bob")
    # 2.6.4's full shape, with the values that are true on this server (the unused settings
    # take no others: test_unused_settings_are_refused_with_the_reason).
    full = {
        "ssh_host": None,
        "ssh_username": None,
        "ssh_private_key_path": None,
        "ssh_tasks_dir": None,
        "ssh_jobs_dir": None,
        "slurm_user": "bob",
        "slurm_accounts": ["acc1"],
        "cache_dir": None,
    }
    status, settings = await api("PATCH", f"auth/users/{bob}/settings/", full, user="admin")
    assert status == 200 and settings == {"id": settings["id"], **full}
    status, read = await api("GET", f"auth/users/{bob}/settings/", user="admin")
    assert (status, read) == (200, settings)
    # Bob sees the reduced view (no private key path, no host).
    _, own = await api("GET", "auth/current-user/settings/", user="bob")
    assert own == {
        "slurm_user": "bob",
        "slurm_accounts": ["acc1"],
        "cache_dir": None,
        "ssh_username": None,
    }
    status, _ = await api(
        "PATCH", f"auth/users/{bob}/settings/", {"ssh_jobs_dir": "jobs"}, user="admin"
    )
    assert status == 422
    status, body = await api("PATCH", f"auth/users/{bob}/settings/", {"x": 1}, user="admin")
    assert status == 422 and body["detail"][0]["loc"] == ["body", "x"]
    status, body = await api("GET", "auth/users/9999/settings/", user="admin")
    assert (status, body) == (404, {"detail": "User not found."})


async def test_users_cannot_read_each_others_settings(api):
    alice, _ = await ids(api, "alice", "bob")
    await api(
        "PATCH", f"auth/users/{alice}/settings/", {"slurm_accounts": ["secret"]}, user="admin"
    )
    for method, body in (("GET", None), ("PATCH", {"slurm_accounts": ["stolen"]})):
        status, answer = await api(method, f"auth/users/{alice}/settings/", body, user="bob")
        assert status == 403, (method, answer)
        assert "secret" not in str(answer)
    # Bob's own settings route is his own.
    _, own = await api("GET", "auth/current-user/settings/", user="bob")
    assert own["slurm_accounts"] == []
    _, alices = await api("GET", f"auth/users/{alice}/settings/", user="admin")
    assert alices["slurm_accounts"] == ["secret"]


async def test_unused_settings_are_refused_with_the_reason(api, jp_serverapp, monkeypatch):
    """slurm_user, cache_dir and ssh_* have no effect here: only null or the value that is
    true anyway are accepted, anything else is a 422 that says why (docs/compatibility.md)."""
    alice, bob = await ids(api, "alice", "bob")
    refused = {
        "slurm_user": ("bob_hpc", "no sudo"),
        "cache_dir": ("/scratch/bob/cache", "FractalJupyter.working_dir"),
        "ssh_host": ("login.cluster", "FractalJupyter.slurm_ssh_host"),
        "ssh_username": ("bob_hpc", "FractalJupyter.slurm_ssh_user"),
        "ssh_private_key_path": ("/home/bob/.ssh/id_ed25519", "slurm_ssh_key_path"),
        "ssh_tasks_dir": ("/scratch/bob/tasks", "FractalJupyter.tasks_dir"),
        "ssh_jobs_dir": ("/scratch/bob/jobs", "FractalJupyter.slurm_ssh_remote_dir"),
    }
    for name, (value, why) in refused.items():
        body = {"slurm_accounts": ["changed"], name: value}
        status, answer = await api("PATCH", f"auth/users/{bob}/settings/", body, user="admin")
        assert status == 422, (name, answer)
        (problem,) = answer["detail"]
        assert problem["loc"] == ["body", name]
        assert f"{name} is not used by fractal-jupyter" in problem["msg"] and why in problem["msg"]
        assert f"not {value!r}" in problem["msg"]
    # Nothing of a refused request was written.
    _, settings = await api("GET", f"auth/users/{bob}/settings/", user="admin")
    assert settings["slurm_accounts"] == [] and settings["slurm_user"] is None
    # The user's own name is their slurm_user; for the owner of the server (under
    # JupyterHub: alice's server), the server's OS account too; null clears.
    monkeypatch.setattr(fractal_state_of(jp_serverapp), "server_owner", "alice")
    server_os_user = getpass.getuser()
    for user_id, value in ((bob, "bob"), (alice, "alice"), (alice, server_os_user), (bob, None)):
        status, answer = await api(
            "PATCH", f"auth/users/{user_id}/settings/", {"slurm_user": value}, user="admin"
        )
        assert (status, answer["slurm_user"]) == (200, value), answer
    if server_os_user != "bob":
        status, answer = await api(
            "PATCH", f"auth/users/{bob}/settings/", {"slurm_user": server_os_user}, user="admin"
        )
        assert status == 422 and "may only be null or 'bob'" in answer["detail"][0]["msg"]
    # With the slurm_ssh backend, the ssh_* values the server uses are accepted (and no other).
    state = fractal_state_of(jp_serverapp)
    ssh_config = {"runner_backend": "slurm_ssh", "slurm_ssh_host": "login.cluster"}
    monkeypatch.setattr(state, "config", {**state.config, **ssh_config})
    body = {"ssh_host": "login.cluster"}
    status, answer = await api("PATCH", f"auth/users/{bob}/settings/", body, user="admin")
    assert (status, answer["ssh_host"]) == (200, "login.cluster")
    body = {"ssh_host": "other.cluster"}
    status, answer = await api("PATCH", f"auth/users/{bob}/settings/", body, user="admin")
    assert status == 422 and "may only be null or 'login.cluster'" in answer["detail"][0]["msg"]


async def test_list_get_and_patch_users(api):
    alice, bob = await ids(api, "alice", "bob")
    status, listed = await api("GET", "auth/users/", user="admin")
    assert status == 200
    by_name = {user["username"]: user for user in listed}
    assert set(by_name) == {"alice", "bob", "admin"}
    assert by_name["admin"]["is_superuser"] is True and by_name["bob"]["is_superuser"] is False
    all_group = by_name["bob"]["group_ids"]
    assert len(all_group) == 1

    status, user = await api("GET", f"auth/users/{bob}/", user="admin")
    assert status == 200 and user["group_ids"] == all_group and user["username"] == "bob"
    _, user = await api("GET", f"auth/users/{bob}/", user="admin", params={"group_ids": "false"})
    assert user["group_ids"] is None
    status, body = await api("GET", "auth/users/9999/", user="admin")
    assert (status, body) == (404, {"detail": "User not found."})

    status, user = await api(
        "PATCH",
        f"auth/users/{bob}/",
        {"email": "bob@lab.org", "is_verified": False, "password": "ignored"},
        user="admin",
    )
    assert status == 200
    assert (user["email"], user["is_verified"], user["group_ids"]) == (
        "bob@lab.org",
        False,
        all_group,
    )
    status, body = await api(
        "PATCH", f"auth/users/{alice}/", {"email": "bob@lab.org"}, user="admin"
    )
    assert (status, body) == (400, {"detail": "UPDATE_USER_EMAIL_ALREADY_EXISTS"})
    status, body = await api("PATCH", f"auth/users/{alice}/", {"email": None}, user="admin")
    assert status == 422 and body["detail"][0]["loc"] == ["body", "email"]
    status, body = await api("PATCH", f"auth/users/{alice}/", {"email": "nope"}, user="admin")
    assert status == 422
    status, body = await api("PATCH", f"auth/users/{alice}/", {"username": "bob"}, user="admin")
    assert status == 422 and "already taken" in body["detail"]


async def test_is_superuser_follows_admin_users(api):
    (bob,) = await ids(api, "bob")
    status, body = await api("PATCH", f"auth/users/{bob}/", {"is_superuser": True}, user="admin")
    assert status == 422 and "FractalJupyter.admin_users" in body["detail"]
    status, user = await api("PATCH", f"auth/users/{bob}/", {"is_superuser": False}, user="admin")
    assert status == 200 and user["is_superuser"] is False
    # An admin cannot drop their own admin flag through the API either.
    _, admin = await api("GET", "auth/current-user/", user="admin")
    status, _ = await api(
        "PATCH", f"auth/users/{admin['id']}/", {"is_superuser": False}, user="admin"
    )
    assert status == 422
    status, _ = await api("GET", "auth/users/", user="bob")
    assert status == 403


async def test_deactivated_user_is_refused(api):
    (bob,) = await ids(api, "bob")
    _, project = await api("POST", "api/v2/project/", {"name": "p"}, user="bob")
    status, _ = await api("PATCH", f"auth/users/{bob}/", {"is_active": False}, user="admin")
    assert status == 200
    status, body = await api("GET", "api/v2/project/", user="bob")
    assert status == 403 and "deactivated" in body["detail"]
    status, _ = await api("PATCH", f"auth/users/{bob}/", {"is_active": True}, user="admin")
    _, projects = await api("GET", "api/v2/project/", user="bob")
    assert projects == [project]


async def test_register_presets_a_user_before_their_first_visit(api):
    status, user = await api(
        "POST",
        "auth/register/",
        {"email": "dave@lab.org", "password": "ignored", "username": "dave"},
        user="admin",
    )
    assert status == 201
    assert user["username"] == "dave" and user["email"] == "dave@lab.org"
    assert user["is_superuser"] is False and user["is_active"] and user["is_verified"]
    assert len(user["group_ids"]) == 1
    await api(
        "PATCH", f"auth/users/{user['id']}/settings/", {"slurm_accounts": ["x"]}, user="admin"
    )
    # Dave's first visit finds the record and its settings.
    _, me = await api("GET", "auth/current-user/", user="dave")
    assert me["id"] == user["id"] and me["email"] == "dave@lab.org"
    _, mine = await api("GET", "auth/current-user/settings/", user="dave")
    assert mine["slurm_accounts"] == ["x"]

    # Without username, the e-mail's local part is the Jupyter username; no password needed.
    status, erin = await api("POST", "auth/register/", {"email": "erin@lab.org"}, user="admin")
    assert status == 201 and erin["username"] == "erin"
    for body in (
        {"email": "dave@lab.org", "password": "x", "username": "other"},
        {"email": "new@lab.org", "password": "x", "username": "dave"},
    ):
        status, answer = await api("POST", "auth/register/", body, user="admin")
        assert (status, answer) == (400, {"detail": "REGISTER_USER_ALREADY_EXISTS"})
    status, answer = await api(
        "POST", "auth/register/", {"email": "x@lab.org", "is_superuser": True}, user="admin"
    )
    assert status == 422 and "admin_users" in answer["detail"]
    status, answer = await api("POST", "auth/register/", {"password": "x"}, user="admin")
    assert status == 422 and answer["detail"][0]["loc"] == ["body", "email"]
    status, answer = await api(
        "POST", "auth/register/", {"email": "z@lab.org", "username": " "}, user="admin"
    )
    assert status == 422
    _, listed = await api("GET", "auth/users/", user="admin")
    assert sorted(user["username"] for user in listed) == ["admin", "dave", "erin"]


async def test_api_settings_for_admins_without_secrets(api):
    status, settings = await api("GET", "api/settings/", user="admin")
    assert status == 200
    assert settings["admin_users"] == ["admin"]
    assert settings["db_url"].startswith(("sqlite+aiosqlite://", "postgresql"))
    assert "local_max_workers" in settings
    status, _ = await api("GET", "api/settings/")
    assert status == 403


def test_sanitized_settings_masks_secrets():
    shown = sanitized_settings(
        {
            "db_url": "postgresql+asyncpg://fractal:hunter2@db/fractal",
            "smtp_password": "hunter2",
            "api_token": "abc",
            "admin_users": {"b", "a"},
            "token_lifetime": 3600.0,
        }
    )
    assert "hunter2" not in str(shown)
    assert shown["db_url"] == "postgresql+asyncpg://fractal:***@db/fractal"
    assert shown["smtp_password"] == shown["api_token"] == "***"
    assert shown["admin_users"] == ["a", "b"] and shown["token_lifetime"] == 3600.0


async def test_viewer_paths_of_my_groups(api):
    (bob,) = await ids(api, "bob")
    _, group = await api(
        "POST",
        "auth/group/",
        {"name": "lab", "viewer_paths": ["/data/lab", "/shared"]},
        user="admin",
    )
    _, everyone = await api("GET", "auth/group/", user="admin")
    default = next(item for item in everyone if item["name"] == "All")
    await api("PATCH", f"auth/group/{default['id']}/", {"viewer_paths": ["/shared"]}, user="admin")
    await api("PATCH", f"auth/group/{group['id']}/", {"new_user_ids": [bob]}, user="admin")
    status, paths = await api("GET", "auth/current-user/viewer-paths/", user="bob")
    assert status == 200 and sorted(paths) == ["/data/lab", "/shared"]
    _, alice_paths = await api("GET", "auth/current-user/viewer-paths/")
    assert alice_paths == ["/shared"]


async def test_job_slurm_account_follows_the_users_settings(api, tmp_path):
    tasks = await register_tasks(api)
    _, project = await api("POST", "api/v2/project/", {"name": "p"})
    path = f"api/v2/project/{project['id']}/"
    _, dataset = await api("POST", path + "dataset/", {"name": "d", "zarr_dir": str(tmp_path)})
    workflow = await make_workflow(
        api,
        path,
        "wf",
        [(tasks["Create demo plate"], {"args_non_parallel": {"rows": "A", "columns": 1}})],
    )
    params = {"workflow_id": str(workflow["id"]), "dataset_id": str(dataset["id"])}
    await api("PATCH", "auth/current-user/settings/", {"slurm_accounts": ["first", "second"]})
    status, body = await api(
        "POST", path + "job/submit/", {"slurm_account": "other"}, params=params
    )
    assert (status, body) == (
        422,
        {"detail": "SLURM account 'other' is not among those available to the current user"},
    )
    _, jobs = await api("GET", path + "job/")
    assert jobs == []
    status, job = await api("POST", path + "job/submit/", {}, params=params)
    assert status == 202 and job["slurm_account"] == "first"
    assert (await wait_for_job(api, path, job["id"]))["status"] == "done"
    status, job = await api(
        "POST", path + "job/submit/", {"slurm_account": "second"}, params=params
    )
    assert status == 202 and job["slurm_account"] == "second"
    assert (await wait_for_job(api, path, job["id"]))["status"] == "done"
