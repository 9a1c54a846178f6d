from collections import Counter

import pytest

from fractal_jupyter.services.images import SummaryCounts


@pytest.fixture
def dataset_path(api, jp_asyncio_loop):
    async def make():
        _, project = await api("POST", "api/v2/project/", {"name": "project"})
        _, dataset = await api(
            "POST",
            f"api/v2/project/{project['id']}/dataset/",
            {"name": "d", "zarr_dir": "/z"},
        )
        return f"api/v2/project/{project['id']}/dataset/{dataset['id']}/"

    return jp_asyncio_loop.run_until_complete(make())


async def add(api, dataset_path, zarr_url, **fields):
    status, body = await api("POST", dataset_path + "images/", {"zarr_url": zarr_url, **fields})
    assert (status, body) == (201, None), body


async def query(api, dataset_path, body=None, **params):
    status, page = await api("POST", dataset_path + "images/query/", body, params=params)
    assert status == 200, page
    return page


async def test_add_and_query_images(api, dataset_path):
    await add(api, dataset_path, "/z/a/", attributes={"well": "A01"}, types={"is_3D": True})
    await add(api, dataset_path, "/z//b", origin="/z/a", attributes={"well": "A02"})
    page = await query(api, dataset_path)
    assert page == {
        "total_count": 2,
        "page_size": 2,
        "current_page": 1,
        "attributes": {"well": ["A01", "A02"]},
        "types": ["is_3D"],
        "images": [
            {
                "zarr_url": "/z/a",
                "origin": None,
                "attributes": {"well": "A01"},
                "types": {"is_3D": True},
            },
            {"zarr_url": "/z/b", "origin": "/z/a", "attributes": {"well": "A02"}, "types": {}},
        ],
    }


@pytest.mark.parametrize(
    "zarr_url, message",
    [
        ("/z", "cannot be equal"),
        ("/zz/a", "not inside /z"),
        ("/other/a", "not inside /z"),
    ],
)
async def test_image_must_be_inside_zarr_dir(api, dataset_path, zarr_url, message):
    status, body = await api("POST", dataset_path + "images/", {"zarr_url": zarr_url})
    assert status == 422 and message in body["detail"]
    assert (await query(api, dataset_path))["total_count"] == 0


async def test_duplicate_image_is_refused(api, dataset_path):
    await add(api, dataset_path, "/z/a", attributes={"x": 1})
    status, body = await api(
        "POST", dataset_path + "images/", {"zarr_url": "/z/a/", "attributes": {"x": 2}}
    )
    assert status == 422
    assert body["detail"] == [
        "Image with zarr_url '/z/a' already in DatasetV2 " + dataset_path.split("/")[-2]
    ]
    page = await query(api, dataset_path)
    assert page["attributes"] == {"x": [1]}
    assert [i["attributes"] for i in page["images"]] == [{"x": 1}]


async def test_filters_follow_python_equality(api, dataset_path):
    values = [1, 1.0, True, "1", 2, False, 0.5]
    for index, value in enumerate(values):
        await add(api, dataset_path, f"/z/{index}", attributes={"v": value})
    await add(api, dataset_path, "/z/none")

    async def matching(value):
        page = await query(api, dataset_path, {"filters": {"attributes": {"v": value}}})
        return [image["zarr_url"] for image in page["images"]]

    assert await matching(1) == ["/z/0", "/z/1", "/z/2"]
    assert await matching(True) == ["/z/0", "/z/1", "/z/2"]
    assert await matching("1") == ["/z/3"]
    assert await matching(0) == ["/z/5"]
    assert await matching(0.5) == ["/z/6"]
    assert await matching("missing") == []
    # A null attribute filter matches everything.
    assert len(await matching(None)) == 8
    summary = (await query(api, dataset_path))["attributes"]["v"]
    assert sorted(map(repr, summary)) == sorted(map(repr, [1, "1", 2, False, 0.5]))


def test_summary_counts_keep_the_first_of_equal_values_within_and_across_chunks():
    values = [1.0, True, 1, "1", 0.5, False, 0]
    images = [
        {"attributes": {"v": value}, "types": {"t": index % 2 == 0}}
        for index, value in enumerate(values)
    ]
    whole = SummaryCounts()
    whole.add(images)
    in_chunks = SummaryCounts()
    for chunk in (images[:2], images[2:6], images[6:]):
        counts = SummaryCounts()
        counts.add(chunk)
        in_chunks.merge(counts)

    for counts in (whole, in_chunks):
        assert counts.images == 7
        assert counts.attributes == Counter(
            {("v", "n:1"): 3, ("v", "s:1"): 1, ("v", "n:0.5"): 1, ("v", "n:0"): 2}
        )
        shown = {pair: repr(value) for pair, value in counts.attribute_values.items()}
        assert shown == {
            ("v", "n:1"): "1.0",
            ("v", "s:1"): "'1'",
            ("v", "n:0.5"): "0.5",
            ("v", "n:0"): "False",
        }
        assert (counts.types, counts.true_types) == (Counter({"t": 7}), Counter({"t": 4}))


async def test_type_filters_treat_missing_as_false(api, dataset_path):
    await add(api, dataset_path, "/z/3d", types={"is_3D": True})
    await add(api, dataset_path, "/z/2d", types={"is_3D": False})
    await add(api, dataset_path, "/z/untyped")

    async def matching(types):
        page = await query(api, dataset_path, {"filters": {"types": types}})
        return [image["zarr_url"] for image in page["images"]]

    assert await matching({"is_3D": True}) == ["/z/3d"]
    assert await matching({"is_3D": False}) == ["/z/2d", "/z/untyped"]
    assert await matching({"other": False}) == ["/z/3d", "/z/2d", "/z/untyped"]
    assert await matching({"other": True}) == []
    assert await matching({"is_3D": False, "other": False}) == ["/z/2d", "/z/untyped"]


async def test_combined_and_zarr_url_filters(api, dataset_path):
    for index in range(6):
        await add(
            api,
            dataset_path,
            f"/z/{index}",
            attributes={"row": index % 2, "col": index % 3},
            types={"even": index % 2 == 0},
        )
    page = await query(
        api,
        dataset_path,
        {"filters": {"attributes": {"row": 0, "col": 0}, "types": {"even": True}}},
    )
    assert [image["zarr_url"] for image in page["images"]] == ["/z/0"]
    page = await query(api, dataset_path, {"zarr_url": "/z/4"})
    assert [image["zarr_url"] for image in page["images"]] == ["/z/4"]
    page = await query(
        api, dataset_path, {"zarr_url": "/z/4", "filters": {"attributes": {"row": 1}}}
    )
    assert page["total_count"] == 0 and page["images"] == []


async def test_pagination(api, dataset_path):
    for index in range(7):
        await add(api, dataset_path, f"/z/{index}")
    page = await query(api, dataset_path, page=2, page_size=3)
    assert (page["total_count"], page["page_size"], page["current_page"]) == (7, 3, 2)
    assert [image["zarr_url"] for image in page["images"]] == ["/z/3", "/z/4", "/z/5"]
    # Past the end: the last page, as fractal-server 2.6.4.
    page = await query(api, dataset_path, page=99, page_size=3)
    assert page["current_page"] == 3
    assert [image["zarr_url"] for image in page["images"]] == ["/z/6"]
    empty = await query(api, dataset_path, {"zarr_url": "/nowhere"}, page=5, page_size=3)
    assert (empty["total_count"], empty["page_size"], empty["current_page"]) == (0, 3, 1)


@pytest.mark.parametrize(
    "params, fragment",
    [
        ({"page": "0"}, "page=0 < 1"),
        ({"page": "-3"}, "page=-3 < 1"),
        ({"page_size": "0"}, "page_size=0 <= 0"),
        ({"page_size": "-1"}, "page_size=-1 <= 0"),
    ],
)
async def test_bad_pagination(api, dataset_path, params, fragment):
    status, body = await api("POST", dataset_path + "images/query/", None, params=params)
    assert status == 422 and fragment in body["detail"]


async def test_non_numeric_page_is_a_validation_error(api, dataset_path):
    status, body = await api("POST", dataset_path + "images/query/", None, params={"page": "x"})
    assert status == 422 and body["detail"][0]["loc"] == ["query", "page"]


async def test_use_dataset_filters(api, dataset_path):
    await add(api, dataset_path, "/z/a", attributes={"well": "A01"}, types={"mip": True})
    await add(api, dataset_path, "/z/b", attributes={"well": "A02"}, types={"other": True})
    await api("PATCH", dataset_path, {"filters": {"attributes": {"well": "A01"}, "types": {}}})
    page = await query(api, dataset_path, use_dataset_filters="true")
    assert [image["zarr_url"] for image in page["images"]] == ["/z/a"]
    assert page["attributes"] == {"well": ["A01"]} and page["types"] == ["mip"]
    # The summaries describe the dataset (after its own filters), not the query's page.
    page = await query(api, dataset_path, {"filters": {"attributes": {"well": "A02"}}})
    assert page["attributes"] == {"well": ["A01", "A02"]}
    assert sorted(page["types"]) == ["mip", "other"]


async def test_patch_replaces_attributes_and_types(api, dataset_path):
    await add(api, dataset_path, "/z/a", attributes={"x": 1, "y": 2}, types={"t": True})
    status, image = await api(
        "PATCH", dataset_path + "images/", {"zarr_url": "/z/a", "attributes": {"x": 5}}
    )
    assert status == 200
    assert image == {
        "zarr_url": "/z/a",
        "origin": None,
        "attributes": {"x": 5},
        "types": {"t": True},
    }
    page = await query(api, dataset_path)
    assert page["attributes"] == {"x": [5]}
    assert (await query(api, dataset_path, {"filters": {"attributes": {"x": 1}}}))[
        "total_count"
    ] == 0
    assert (await query(api, dataset_path, {"filters": {"attributes": {"x": 5}}}))[
        "total_count"
    ] == 1
    status, image = await api("PATCH", dataset_path + "images/", {"zarr_url": "/z/a", "types": {}})
    assert image["types"] == {} and (await query(api, dataset_path))["types"] == []
    status, body = await api("PATCH", dataset_path + "images/", {"zarr_url": "/z/missing"})
    assert status == 404 and "/z/missing" in body["detail"]


async def test_delete_image_updates_summaries(api, dataset_path):
    await add(api, dataset_path, "/z/a", attributes={"x": 1}, types={"t": True})
    await add(api, dataset_path, "/z/b", attributes={"x": 1})
    status, _ = await api("DELETE", dataset_path + "images/", params={"zarr_url": "/z/a"})
    assert status == 204
    page = await query(api, dataset_path)
    assert page["attributes"] == {"x": [1]} and page["types"] == []
    await api("DELETE", dataset_path + "images/", params={"zarr_url": "/z/b"})
    page = await query(api, dataset_path)
    assert page["attributes"] == {} and page["total_count"] == 0
    status, body = await api("DELETE", dataset_path + "images/", params={"zarr_url": "/z/b"})
    assert status == 404 and "No image with zarr_url '/z/b'" in body["detail"]
    status, body = await api("DELETE", dataset_path + "images/")
    assert status == 422 and body["detail"][0]["loc"] == ["query", "zarr_url"]


@pytest.mark.parametrize(
    "image, where",
    [
        ({"zarr_url": "relative"}, "zarr_url"),
        ({"zarr_url": "/z/a", "attributes": {"x": None}}, "x"),
        ({"zarr_url": "/z/a", "attributes": {"x": {"nested": 1}}}, "x"),
        ({"zarr_url": "/z/a", "attributes": {" ": 1}}, "attributes"),
        ({"zarr_url": "/z/a", "attributes": {"": 1}}, "attributes"),
        ({"zarr_url": "/z/a", "attributes": {"w": 1, " w": 2}}, "attributes"),
        ({"zarr_url": "/z/a", "types": {"t\n": True, "t": False}}, "types"),
        # 126 characters but 504 bytes: past the 500-byte limit on keys
        ({"zarr_url": "/z/a", "attributes": {"\U0001f52c" * 126: 1}}, "attributes"),
        ({"zarr_url": "/z/a", "types": {"t": 1}}, "t"),
        ({"zarr_url": "/z/a", "origin": "relative"}, "origin"),
        ({"zarr_url": "/z/" + "x" * 5000}, "zarr_url"),
        ({"zarr_url": "/z/a", "attributes": {"k": "v" * 5000}}, "k"),
        ({"zarr_url": 7}, "zarr_url"),
        ({}, "zarr_url"),
    ],
)
async def test_bad_images_are_refused(api, dataset_path, image, where):
    status, body = await api("POST", dataset_path + "images/", image)
    assert status == 422
    assert any(where in item["loc"] for item in body["detail"]), body
    assert (await query(api, dataset_path))["total_count"] == 0


async def test_image_keys_are_stored_without_blanks_at_either_end(api, dataset_path):
    longest_key = "\U0001f52c" * 125  # 500 bytes of UTF-8: just within the limit
    await add(
        api,
        dataset_path,
        "/z/a",
        attributes={" well ": "A01", "\tplate": "p", longest_key: 1},
        types={"is_3D ": True},
    )
    page = await query(api, dataset_path)
    assert page["images"][0]["attributes"] == {"well": "A01", "plate": "p", longest_key: 1}
    assert page["images"][0]["types"] == {"is_3D": True}
    assert page["attributes"] == {"well": ["A01"], "plate": ["p"], longest_key: [1]}


def python_match(image, filters):
    """fractal-server 2.6.4's matching rule, for comparison."""
    for key, value in filters.get("types", {}).items():
        if image.get("types", {}).get(key, False) != value:
            return False
    for key, value in filters.get("attributes", {}).items():
        if value is not None and image.get("attributes", {}).get(key) != value:
            return False
    return True


async def test_counts_and_pages_agree_with_python_filters(api, dataset_path):
    """Random images, edits and deletions; every filter's total and page checked in Python."""
    import random

    generator = random.Random(7)
    values = [0, 1, 1.0, True, False, "1", "a", 2.5]
    images = {}
    for index in range(40):
        image = {
            "zarr_url": f"/z/{index}",
            "attributes": {
                k: generator.choice(values) for k in ("x", "y") if generator.random() < 0.8
            },
            "types": {k: generator.random() < 0.5 for k in ("t", "u") if generator.random() < 0.7},
        }
        await add(
            api,
            dataset_path,
            image["zarr_url"],
            attributes=image["attributes"],
            types=image["types"],
        )
        images[image["zarr_url"]] = image
    for index in range(0, 40, 5):
        url = f"/z/{index}"
        patch = {"zarr_url": url, "types": {"t": True}}
        await api("PATCH", dataset_path + "images/", patch)
        images[url]["types"] = {"t": True}
    for index in range(1, 40, 7):
        await api("DELETE", dataset_path + "images/", params={"zarr_url": f"/z/{index}"})
        del images[f"/z/{index}"]

    filter_cases = [
        {},
        {"types": {"t": True}},
        {"types": {"t": False}},
        {"types": {"u": False, "t": True}},
        {"attributes": {"x": None}},
    ]
    filter_cases += [{"attributes": {"x": value}} for value in values]
    filter_cases += [
        {"attributes": {"x": 1, "y": "a"}},
        {"attributes": {"y": 1}, "types": {"u": True}},
    ]
    for filters in filter_cases:
        expected = [url for url, image in images.items() if python_match(image, filters)]
        # Every page: those in the second half are read walking the index from its end.
        for number in range(1, max(1, -(-len(expected) // 3)) + 1):
            page = await query(api, dataset_path, {"filters": filters}, page_size="3", page=number)
            assert (page["total_count"], page["current_page"]) == (len(expected), number)
            first = (number - 1) * 3
            assert [image["zarr_url"] for image in page["images"]] == expected[first : first + 3], (
                filters,
                number,
            )
    summary = (await query(api, dataset_path))["types"]
    assert sorted(summary) == sorted({k for image in images.values() for k in image["types"]})
