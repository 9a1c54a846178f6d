async def test_alive_needs_no_credentials(api):
    status, body = await api("GET", "api/alive/", headers={"Authorization": ""})
    assert status == 200
    assert body == {"alive": True, "version": __import__("fractal_jupyter").__version__}


async def test_project_lifecycle(api):
    status, created = await api("POST", "api/v2/project/", {"name": "  plate one  "})
    assert status == 201
    assert created["name"] == "plate one"
    assert set(created) == {"id", "name", "timestamp_created"}
    assert created["timestamp_created"].endswith("+00:00")
    project = f"api/v2/project/{created['id']}/"

    status, listed = await api("GET", "api/v2/project/")
    assert (status, listed) == (200, [created])

    status, renamed = await api("PATCH", project, {"name": "plate two", "unknown": 1})
    assert status == 200 and renamed["name"] == "plate two"
    status, again = await api("GET", project)
    assert again == renamed

    status, body = await api("DELETE", project)
    assert (status, body) == (204, None)
    status, body = await api("GET", project)
    assert status == 404 and body == {"detail": "Project not found"}


async def test_project_names_are_unique_per_user(api):
    await api("POST", "api/v2/project/", {"name": "p"})
    status, body = await api("POST", "api/v2/project/", {"name": "p"})
    assert status == 422 and body["detail"] == "Project name (p) already in use"
    # Another user may use the same name.
    status, _ = await api("POST", "api/v2/project/", {"name": "p"}, user="bob")
    assert status == 201
    # Renaming to the current name clashes too, as in fractal-server 2.6.4.
    _, projects = await api("GET", "api/v2/project/")
    status, _ = await api("PATCH", f"api/v2/project/{projects[0]['id']}/", {"name": "p"})
    assert status == 422


async def test_delete_project_removes_datasets_and_images(api):
    _, project = await api("POST", "api/v2/project/", {"name": "p"})
    await api(
        "POST",
        f"api/v2/project/{project['id']}/dataset/import/",
        {"name": "d", "zarr_dir": "/z", "images": [{"zarr_url": "/z/a", "attributes": {"x": 1}}]},
    )
    status, _ = await api("DELETE", f"api/v2/project/{project['id']}/")
    assert status == 204
    status, datasets = await api("GET", "api/v2/dataset/")
    assert datasets == []
    # A new project's dataset starts with no leftover images nor summaries.
    _, project2 = await api("POST", "api/v2/project/", {"name": "p"})
    _, dataset2 = await api(
        "POST", f"api/v2/project/{project2['id']}/dataset/", {"name": "d", "zarr_dir": "/z"}
    )
    _, page = await api(
        "POST", f"api/v2/project/{project2['id']}/dataset/{dataset2['id']}/images/query/"
    )
    assert page["total_count"] == 0 and page["attributes"] == {} and page["types"] == []
