"""The dataset import, read and written a chunk of images at a time (services/dataset_import.py).

The chunk is made 2 images long, so a handful of images crosses several chunk boundaries.
"""

import json

import pytest
from pydantic import ValidationError

from fractal_jupyter.schemas.dataset import DatasetImport
from fractal_jupyter.services import dataset_import


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(dataset_import, "IMPORT_CHUNK_IMAGES", 2)


@pytest.fixture
def project_path(api, jp_asyncio_loop):
    _, project = jp_asyncio_loop.run_until_complete(
        api("POST", "api/v2/project/", {"name": "project"})
    )
    return f"api/v2/project/{project['id']}/"


def image(i, **changes):
    return {
        "zarr_url": f"/z/plate.zarr/B/03/{i}",
        "origin": None,
        "attributes": {"well": f"B03_{i % 2}", "row": i},
        "types": {"is_3D": i % 2 == 0},
        **changes,
    }


def whole_body_errors(raw):
    """What validating the whole body at once answers (the behaviour to keep)."""
    with pytest.raises(ValidationError) as caught:
        DatasetImport.model_validate_json(raw)
    return [
        {"loc": ["body", *item["loc"]], "msg": item["msg"], "type": item["type"]}
        for item in caught.value.errors(include_url=False)
    ]


async def import_raw(api, project_path, raw, user="alice"):
    return await api("POST", project_path + "dataset/import/", raw_body=raw, user=user)


async def assert_nothing_stored(api, project_path):
    _, datasets = await api("GET", project_path + "dataset/")
    assert datasets == []


async def test_multi_chunk_import_keeps_order_and_summaries(api, project_path):
    images = [image(i) for i in range(5)]
    filters = {"attributes": {"well": "B03_0"}, "types": {}}
    status, dataset = await api(
        "POST",
        project_path + "dataset/import/",
        {"name": "d", "zarr_dir": "/z", "images": images, "filters": filters},
    )
    assert status == 201, dataset
    assert dataset["filters"] == filters and dataset["name"] == "d"
    path = f"{project_path}dataset/{dataset['id']}/"
    _, exported = await api("GET", path + "export/")
    assert exported == {"name": "d", "zarr_dir": "/z", "images": images, "filters": filters}
    status, page = await api(
        "POST", path + "images/query/", params={"use_dataset_filters": "false"}
    )
    assert status == 200, page
    assert page["total_count"] == 5
    assert [item["zarr_url"] for item in page["images"]] == [i["zarr_url"] for i in images]
    assert page["attributes"] == {"row": [0, 1, 2, 3, 4], "well": ["B03_0", "B03_1"]}
    assert page["types"] == ["is_3D"]
    _, filtered = await api("POST", path + "images/query/", {"filters": {"types": {"is_3D": True}}})
    assert filtered["total_count"] == 3


async def test_duplicate_across_chunks_stores_nothing(api, project_path):
    images = [image(i) for i in range(5)]
    images[3] = image(0)  # the chunks are [0, 1], [2, 0], [4]
    status, body = await api(
        "POST", project_path + "dataset/import/", {"name": "d", "zarr_dir": "/z", "images": images}
    )
    assert status == 422
    assert body == {"detail": "Image with zarr_url '/z/plate.zarr/B/03/0' appears twice"}
    await assert_nothing_stored(api, project_path)


async def test_location_error_after_a_duplicate_wins(api, project_path):
    images = [image(0), image(0), image(2), image(3), image(4, zarr_url="/elsewhere/4")]
    status, body = await api(
        "POST", project_path + "dataset/import/", {"name": "d", "zarr_dir": "/z", "images": images}
    )
    assert status == 422
    assert body == {
        "detail": "Cannot import dataset: Cannot create image with zarr_url '/elsewhere/4', "
        "which is not inside /z."
    }
    await assert_nothing_stored(api, project_path)


async def test_a_bad_image_after_a_location_error_is_still_reported(api, project_path):
    images = [image(0, zarr_url="/elsewhere/0"), *(image(i) for i in range(1, 4)), {"x": 1}]
    raw = json.dumps({"name": "d", "zarr_dir": "/z", "images": images}).encode()
    status, body = await import_raw(api, project_path, raw)
    assert status == 422
    assert body["detail"] == whole_body_errors(raw)
    assert body["detail"][0]["loc"][:3] == ["body", "images", 4]
    await assert_nothing_stored(api, project_path)


async def test_bad_image_in_the_last_chunk_has_its_whole_list_index(api, project_path):
    images = [image(i) for i in range(5)]
    images[4] = image(4, zarr_url="relative/4", types={"is_3D": "yes"})
    raw = json.dumps({"name": "d", "zarr_dir": "/z", "images": images}).encode()
    status, body = await import_raw(api, project_path, raw)
    assert status == 422
    assert [error["loc"] for error in body["detail"]] == [
        ["body", "images", 4, "zarr_url"],
        ["body", "images", 4, "types", "is_3D"],
    ]
    assert body["detail"] == whole_body_errors(raw)
    await assert_nothing_stored(api, project_path)


async def test_errors_everywhere_come_in_whole_body_order(api, project_path):
    images = [image(i) for i in range(5)]
    images[1] = {"zarr_url": 1}
    images[3] = "not an image"
    raw = json.dumps(
        {"color": "red", "images": images, "filters": {"x": 1}, "name": "", "zarr_dir": "/z"}
    ).encode()
    status, body = await import_raw(api, project_path, raw)
    assert status == 422
    assert body["detail"] == whole_body_errors(raw)
    assert [error["loc"][1] for error in body["detail"]] == [
        "name",
        "images",
        "images",
        "filters",
        "color",
    ]
    await assert_nothing_stored(api, project_path)


async def test_unknown_top_level_field_is_refused(api, project_path):
    raw = json.dumps(
        {"name": "d", "zarr_dir": "/z", "images": [image(i) for i in range(3)], "colour": 1}
    ).encode()
    status, body = await import_raw(api, project_path, raw)
    assert status == 422
    assert body == {
        "detail": [
            {
                "loc": ["body", "colour"],
                "msg": "Extra inputs are not permitted",
                "type": "extra_forbidden",
            }
        ]
    }
    await assert_nothing_stored(api, project_path)


async def test_keys_in_any_order(api, project_path):
    images = [image(i) for i in range(5)]
    raw = json.dumps(
        {"images": images, "filters": {"types": {"is_3D": True}}, "zarr_dir": "/z/", "name": "d"}
    ).encode()
    status, dataset = await import_raw(api, project_path, raw)
    assert status == 201, dataset
    assert dataset["zarr_dir"] == "/z" and dataset["filters"]["types"] == {"is_3D": True}
    _, exported = await api("GET", f"{project_path}dataset/{dataset['id']}/export/")
    assert exported["images"] == images
    # Read before zarr_dir, the images are still checked against it.
    images[4] = image(4, zarr_url="/y/4")
    raw = json.dumps({"images": images, "zarr_dir": "/z", "name": "e"}).encode()
    status, body = await import_raw(api, project_path, raw)
    assert status == 422 and "'/y/4', which is not inside /z" in body["detail"]
    _, datasets = await api("GET", project_path + "dataset/")
    assert [item["name"] for item in datasets] == ["d"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"name": "d", "zarr_dir": "/z", "images": [{"zarr_url": "/z/1"}, {"zarr_url": "/z/2"}, ',
        b'{"name": "d", "zarr_dir": "/z", "images": [{"zarr_url": "/z/1"}]} trailing',
        b'{"name": "d", "zarr_dir": "/z", "images": [{"zarr_url": "/z/\\ud800"}]}',
        b'{"name": "d", "zarr_dir": "/z", "images": [{"zarr_url": "/z/1"}, ]}',
        b'["not", "an", "object"]',
        b"\xff\xfe",
    ],
)
async def test_invalid_json_answers_as_whole_body_validation(api, project_path, raw):
    status, body = await import_raw(api, project_path, raw)
    assert status == 422
    assert body["detail"] == whole_body_errors(raw)
    await assert_nothing_stored(api, project_path)


async def test_empty_body_is_a_missing_body(api, project_path):
    status, body = await import_raw(api, project_path, b"  ")
    assert status == 422
    assert body == {"detail": [{"loc": ["body"], "msg": "Field required", "type": "missing"}]}


async def test_a_key_given_twice_keeps_the_last_value(api, project_path):
    # As pydantic's JSON parser: the later "images" replace the earlier ones.
    raw = (
        b'{"name": "d", "zarr_dir": "/z", "images": [{"zarr_url": "/z/old"}, {"zarr_url": "/z/x"},'
        b' {"zarr_url": "/z/y"}], "images": [{"zarr_url": "/z/new"}]}'
    )
    status, dataset = await import_raw(api, project_path, raw)
    assert status == 201, dataset
    _, exported = await api("GET", f"{project_path}dataset/{dataset['id']}/export/")
    assert [item["zarr_url"] for item in exported["images"]] == ["/z/new"]
    _, datasets = await api("GET", project_path + "dataset/")
    assert [item["id"] for item in datasets] == [dataset["id"]]


async def test_escaped_non_ascii_urls_are_imported(api, project_path):
    images = [image(i, zarr_url=f"/z/\U0001f52c-{i}") for i in range(3)]
    raw = json.dumps({"name": "d", "zarr_dir": "/z", "images": images}).encode()
    assert b"\\ud83d" in raw  # json.dumps escapes it as a surrogate pair
    status, dataset = await import_raw(api, project_path, raw)
    assert status == 201, dataset
    _, exported = await api("GET", f"{project_path}dataset/{dataset['id']}/export/")
    assert exported["images"] == images


async def test_validation_errors_come_before_the_project_check(api, project_path):
    raw = json.dumps({"name": "d", "zarr_dir": "/z", "images": [image(0), {}, image(2)]}).encode()
    status, body = await import_raw(api, project_path, raw, user="mallory")
    assert status == 422
    assert body["detail"] == whole_body_errors(raw)
    good = json.dumps({"name": "d", "zarr_dir": "/z", "images": [image(0)]}).encode()
    status, body = await import_raw(api, project_path, good, user="mallory")
    assert (status, body) == (403, {"detail": f"Not allowed on project {project_path[15:-1]}"})
    await assert_nothing_stored(api, project_path)
