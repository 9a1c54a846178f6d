"""User groups: the default group "All", admins create and fill groups, nobody deletes them."""

from __future__ import annotations


async def test_every_user_joins_the_default_group(api):
    for name in ("alice", "bob"):
        await api("GET", "auth/current-user/", user=name)
    status, groups = await api("GET", "auth/group/", user="admin", params={"user_ids": "true"})
    assert status == 200 and [group["name"] for group in groups] == ["All"]
    _, users = await api("GET", "auth/users/", user="admin")
    assert sorted(groups[0]["user_ids"]) == sorted(user["id"] for user in users)
    assert groups[0]["viewer_paths"] == [] and groups[0]["timestamp_created"]
    _, plain = await api("GET", "auth/group/", user="admin")
    assert plain[0]["user_ids"] is None


async def test_create_patch_and_read_groups(api):
    _, alice = await api("GET", "auth/current-user/")
    _, bob = await api("GET", "auth/current-user/", user="bob")
    status, group = await api(
        "POST", "auth/group/", {"name": "lab", "viewer_paths": ["/data/x/"]}, user="admin"
    )
    assert status == 201
    assert (group["name"], group["user_ids"], group["viewer_paths"]) == ("lab", [], ["/data/x/"])
    path = f"auth/group/{group['id']}/"

    status, body = await api("POST", "auth/group/", {"name": "lab"}, user="admin")
    assert (status, body) == (422, {"detail": "A group with the same name already exists"})
    for bad in (
        {"name": "x", "viewer_paths": ["relative"]},
        {"name": "x", "viewer_paths": ["/a", "/a"]},
        {"name": "x", "extra": 1},
        {"name": ""},
    ):
        status, _ = await api("POST", "auth/group/", bad, user="admin")
        assert status == 422, bad

    status, group = await api(
        "PATCH", path, {"new_user_ids": [alice["id"], bob["id"]]}, user="admin"
    )
    assert status == 200 and sorted(group["user_ids"]) == sorted([alice["id"], bob["id"]])
    assert group["viewer_paths"] == ["/data/x/"]
    status, body = await api("PATCH", path, {"new_user_ids": [bob["id"]]}, user="admin")
    assert status == 422 and "already" in body["detail"]
    status, body = await api("PATCH", path, {"new_user_ids": [9999]}, user="admin")
    assert status == 404 and "9999" in body["detail"]
    status, group = await api("PATCH", path, {"viewer_paths": ["/v"]}, user="admin")
    assert status == 200 and group["viewer_paths"] == ["/v"] and len(group["user_ids"]) == 2

    # A user joins a group through their record too; both kinds of change at once are refused.
    status, other = await api("POST", "auth/group/", {"name": "other"}, user="admin")
    status, user = await api(
        "PATCH", f"auth/users/{bob['id']}/", {"new_group_ids": [other["id"]]}, user="admin"
    )
    assert status == 200 and other["id"] in user["group_ids"] and group["id"] in user["group_ids"]
    status, body = await api(
        "PATCH",
        f"auth/users/{bob['id']}/",
        {"new_group_ids": [other["id"]], "is_verified": True},
        user="admin",
    )
    assert status == 422 and "two independent PATCH calls" in body["detail"]
    status, body = await api(
        "PATCH", f"auth/users/{bob['id']}/", {"new_group_ids": [9999]}, user="admin"
    )
    assert status == 404

    status, read = await api("GET", path, user="admin")
    assert status == 200 and read == group
    status, body = await api("GET", "auth/group/9999/", user="admin")
    assert (status, body) == (404, {"detail": "Group 9999 not found."})
    status, names = await api("GET", "auth/group-names/", user="bob")
    assert (status, names) == (200, ["All", "lab", "other"])
    _, me = await api("GET", "auth/current-user/", user="bob", params={"group_names": "1"})
    assert me["group_names"] == ["All", "lab", "other"]
    _, me = await api("GET", "auth/current-user/", params={"group_names": "1"})
    assert me["group_names"] == ["All", "lab"]


async def test_groups_are_never_deleted(api):
    _, group = await api("POST", "auth/group/", {"name": "lab"}, user="admin")
    status, body = await api("DELETE", f"auth/group/{group['id']}/", user="admin")
    assert status == 405 and "not allowed" in body["detail"][0]
    status, _ = await api("GET", f"auth/group/{group['id']}/", user="admin")
    assert status == 200


async def test_non_admins_cannot_manage_groups(api):
    _, group = await api("POST", "auth/group/", {"name": "lab"}, user="admin")
    _, me = await api("GET", "auth/current-user/")
    attempts = [
        ("GET", "auth/group/", None),
        ("POST", "auth/group/", {"name": "mine"}),
        ("GET", f"auth/group/{group['id']}/", None),
        ("PATCH", f"auth/group/{group['id']}/", {"new_user_ids": [me["id"]]}),
        ("DELETE", f"auth/group/{group['id']}/", None),
    ]
    for method, path, body in attempts:
        status, answer = await api(method, path, body)
        assert status == 403 and "admin" in answer["detail"], (method, path)
    _, read = await api("GET", f"auth/group/{group['id']}/", user="admin")
    assert read["user_ids"] == []
    _, names = await api("GET", "auth/group-names/", user="admin")
    assert names == ["All", "lab"]
