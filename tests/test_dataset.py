import json
from pathlib import Path

import pytest


@pytest.fixture
def project_path(api, jp_asyncio_loop):
    _, project = jp_asyncio_loop.run_until_complete(
        api("POST", "api/v2/project/", {"name": "project"})
    )
    return f"api/v2/project/{project['id']}/"


async def test_dataset_lifecycle(api, project_path):
    status, created = await api(
        "POST",
        project_path + "dataset/",
        {
            "name": "raw",
            "zarr_dir": "/data//plates/./raw/",
            "filters": {"attributes": {"well": "A01"}, "types": {"is_3D": True}},
        },
    )
    assert status == 201
    assert created["zarr_dir"] == "/data/plates/raw"
    assert created["filters"] == {"attributes": {"well": "A01"}, "types": {"is_3D": True}}
    assert created["history"] == []
    assert created["project"]["name"] == "project"
    assert created["project_id"] == created["project"]["id"]
    dataset_path = f"{project_path}dataset/{created['id']}/"

    status, listed = await api("GET", project_path + "dataset/")
    assert listed == [created]
    status, mine = await api("GET", "api/v2/dataset/", params={"history": "false"})
    assert mine == [created]

    status, patched = await api("PATCH", dataset_path, {"name": "renamed", "zarr_dir": "/other"})
    assert status == 200
    assert (patched["name"], patched["zarr_dir"]) == ("renamed", "/other")
    assert patched["filters"] == created["filters"]

    status, _ = await api("DELETE", dataset_path)
    assert status == 204
    status, body = await api("GET", dataset_path)
    assert (status, body) == (404, {"detail": "Dataset not found"})


async def test_zarr_dir_is_frozen_once_images_exist(api, project_path):
    _, dataset = await api("POST", project_path + "dataset/", {"name": "d", "zarr_dir": "/z"})
    dataset_path = f"{project_path}dataset/{dataset['id']}/"
    await api("POST", dataset_path + "images/", {"zarr_url": "/z/a"})
    status, body = await api("PATCH", dataset_path, {"zarr_dir": "/elsewhere"})
    assert status == 422 and "non-empty image list" in body["detail"]
    _, unchanged = await api("GET", dataset_path)
    assert unchanged["zarr_dir"] == "/z"


@pytest.mark.parametrize(
    "body, where",
    [
        ({"zarr_dir": None}, "zarr_dir"),
        ({"filters": None}, "filters"),
        ({"name": None}, "name"),
        ({"name": "   "}, "name"),
        ({"zarr_dir": "relative/path"}, "zarr_dir"),
        ({"zarr_dir": "s3://bucket/x"}, "zarr_dir"),
        ({"filters": {"attributes": {"x": [1]}}}, "attributes"),
        ({"filters": {"types": {"x": "yes"}}}, "types"),
        ({"filters": {"other": {}}}, "other"),
        ({"surprise": 1}, "surprise"),
    ],
)
async def test_bad_dataset_patch_changes_nothing(api, project_path, body, where):
    _, dataset = await api("POST", project_path + "dataset/", {"name": "d", "zarr_dir": "/z"})
    dataset_path = f"{project_path}dataset/{dataset['id']}/"
    status, answer = await api("PATCH", dataset_path, body)
    assert status == 422
    assert any(where in item["loc"] for item in answer["detail"]), answer
    _, unchanged = await api("GET", dataset_path)
    assert unchanged == dataset


async def test_import_and_export_round_trip(api, project_path):
    images = [
        {
            "zarr_url": "/z/plate.zarr/A/01/0",
            "origin": None,
            "attributes": {"well": "A01"},
            "types": {"is_3D": True},
        },
        {
            "zarr_url": "/z/plate.zarr/A/01/0_mip",
            "origin": "/z/plate.zarr/A/01/0",
            "attributes": {"well": "A01"},
            "types": {"is_3D": False},
        },
    ]
    filters = {"attributes": {"well": "A01"}, "types": {}}
    status, dataset = await api(
        "POST",
        project_path + "dataset/import/",
        {"name": "imported", "zarr_dir": "/z/", "images": images, "filters": filters},
    )
    assert status == 201 and dataset["zarr_dir"] == "/z"
    status, exported = await api("GET", f"{project_path}dataset/{dataset['id']}/export/")
    assert exported == {"name": "imported", "zarr_dir": "/z", "images": images, "filters": filters}


@pytest.mark.parametrize(
    "images, message",
    [
        ([{"zarr_url": "/zz/a"}], "not inside /z"),
        ([{"zarr_url": "/z"}], "cannot be equal"),
        ([{"zarr_url": "/z/a"}, {"zarr_url": "/z/a/"}], "appears twice"),
    ],
)
async def test_bad_import_creates_nothing(api, project_path, images, message):
    status, body = await api(
        "POST", project_path + "dataset/import/", {"name": "d", "zarr_dir": "/z", "images": images}
    )
    assert status == 422 and message in str(body["detail"])
    _, datasets = await api("GET", project_path + "dataset/")
    assert datasets == []


async def test_import_without_images_is_an_empty_dataset(api, project_path):
    status, dataset = await api(
        "POST", project_path + "dataset/import/", {"name": "d", "zarr_dir": "/z"}
    )
    assert status == 201
    _, exported = await api("GET", f"{project_path}dataset/{dataset['id']}/export/")
    assert exported["images"] == []


async def test_dataset_without_zarr_dir(api, project_path, fractal_config):
    """fractal-server 2.18+ (fractal-client 2.24's `project add-dataset`): `project_dir`
    and/or `zarr_subfolder` instead of `zarr_dir`."""
    _, project = await api("GET", project_path)
    status, dataset = await api("POST", project_path + "dataset/", {"name": "My plate #1"})
    assert status == 201, dataset
    default = fractal_config.get("project_dir") or str(Path.home() / "fractal")
    assert dataset["zarr_dir"] == (
        f"{default}/fractal/{project['id']}_{project['name']}/{dataset['id']}_My_plate_1"
    )
    status, dataset = await api(
        "POST", project_path + "dataset/", {"name": "d2", "project_dir": "/data/lab//x/"}
    )
    assert dataset["zarr_dir"].startswith("/data/lab/x/fractal/")
    status, dataset = await api(
        "POST",
        project_path + "dataset/",
        {"name": "d3", "project_dir": "/data/lab", "zarr_subfolder": "plates/p3"},
    )
    assert dataset["zarr_dir"] == "/data/lab/plates/p3"
    for body, words in [
        ({"name": "x", "zarr_dir": "/a", "project_dir": "/b"}, "not both"),
        ({"name": "x", "zarr_dir": "/a", "zarr_subfolder": "b"}, "not both"),
        ({"name": "x", "project_dir": "relative"}, "not an absolute path"),
        ({"name": "x", "zarr_subfolder": "../up"}, "relative path inside"),
        ({"name": "x", "zarr_subfolder": "/abs"}, "relative path inside"),
    ]:
        status, answer = await api("POST", project_path + "dataset/", body)
        assert status == 422 and words in json.dumps(answer["detail"]), (body, answer)
    _, datasets = await api("GET", project_path + "dataset/")
    assert [d["name"] for d in datasets] == ["My plate #1", "d2", "d3"]


async def test_client_creates_a_dataset_under_a_project_dir(
    api, project_path, fractal_client, in_thread
):
    project_id = int(project_path.split("/")[3])
    dataset = await in_thread(
        fractal_client.create_dataset, project_id, "d", project_dir="/data", zarr_subfolder="z"
    )
    assert dataset.zarr_dir == "/data/z"
