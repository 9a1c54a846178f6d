"""A second user can neither read nor change the first user's projects, datasets or images."""

import pytest


@pytest.fixture
def alice_objects(api, jp_asyncio_loop):
    async def make():
        _, project = await api("POST", "api/v2/project/", {"name": "alice's"})
        project_path = f"api/v2/project/{project['id']}/"
        _, dataset = await api(
            "POST",
            project_path + "dataset/import/",
            {"name": "d", "zarr_dir": "/z", "images": [{"zarr_url": "/z/a"}]},
        )
        return project, project_path + f"dataset/{dataset['id']}/"

    return jp_asyncio_loop.run_until_complete(make())


async def test_other_user_gets_403_everywhere(api, alice_objects):
    project, dataset_path = alice_objects
    project_path = f"api/v2/project/{project['id']}/"
    denied = {"detail": f"Not allowed on project {project['id']}"}
    attempts = [
        ("GET", project_path, None, None),
        ("PATCH", project_path, {"name": "mine now"}, None),
        ("DELETE", project_path, None, None),
        ("GET", project_path + "dataset/", None, None),
        ("POST", project_path + "dataset/", {"name": "x", "zarr_dir": "/x"}, None),
        ("POST", project_path + "dataset/import/", {"name": "x", "zarr_dir": "/x"}, None),
        ("GET", dataset_path, None, None),
        ("PATCH", dataset_path, {"name": "x"}, None),
        ("DELETE", dataset_path, None, None),
        ("GET", dataset_path + "export/", None, None),
        ("POST", dataset_path + "images/", {"zarr_url": "/z/b"}, None),
        ("PATCH", dataset_path + "images/", {"zarr_url": "/z/a", "attributes": {"x": 1}}, None),
        ("DELETE", dataset_path + "images/", None, {"zarr_url": "/z/a"}),
        ("POST", dataset_path + "images/query/", None, None),
    ]
    for method, path, body, params in attempts:
        status, answer = await api(method, path, body, user="bob", params=params)
        assert (status, answer) == (403, denied), (method, path)
    for path in ("api/v2/project/", "api/v2/dataset/"):
        status, listed = await api("GET", path, user="bob")
        assert (status, listed) == (200, [])
    # Admins get no shortcut on /api/v2 either (as fractal-server 2.6.4).
    status, _ = await api("GET", project_path, user="admin")
    assert status == 403

    # Alice's objects are untouched.
    _, same_project = await api("GET", project_path)
    assert same_project == project
    _, exported = await api("GET", dataset_path + "export/")
    assert exported["name"] == "d"
    assert exported["images"] == [
        {"zarr_url": "/z/a", "origin": None, "attributes": {}, "types": {}}
    ]


async def test_child_of_another_project_is_422(api, alice_objects):
    _, dataset_path = alice_objects
    _, other = await api("POST", "api/v2/project/", {"name": "other"})
    dataset_id = dataset_path.rstrip("/").split("/")[-1]
    status, body = await api("GET", f"api/v2/project/{other['id']}/dataset/{dataset_id}/")
    assert status == 422
    assert body["detail"] == f"Invalid project_id={other['id']} for dataset_id={dataset_id}"


async def test_current_user(api):
    status, me = await api("GET", "auth/current-user/", user="carol")
    assert status == 200
    assert me["username"] == "carol"
    assert me["is_superuser"] is False and me["is_active"] is True and me["is_verified"] is True
    assert me["oauth_accounts"] == []
    assert me["email"].startswith("carol@")
    status, again = await api("GET", "auth/current-user/", user="carol")
    assert again["id"] == me["id"]
    _, admin = await api("GET", "auth/current-user/", user="admin", params={"group_names": "1"})
    assert admin["is_superuser"] is True and admin["id"] != me["id"]
    assert admin["group_names"] == ["All"]  # every user joins the default group


async def test_requests_without_credentials_are_json_errors(api):
    for header in ({"Authorization": "token wrong"}, {"Authorization": ""}):
        for path in ("api/v2/project/", "auth/current-user/"):
            status, body = await api("GET", path, headers=header)
            assert (status, body) == (401, {"detail": "Unauthorized"})
        # Jupyter checks XSRF before identity on writes without a valid token.
        status, body = await api("POST", "api/v2/project/", {"name": "x"}, headers=header)
        assert status == 403 and "_xsrf" in body["detail"]
    _, projects = await api("GET", "api/v2/project/")
    assert projects == []
