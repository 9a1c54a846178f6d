"""The collector pause of large requests: nested pauses end with the last one."""

import gc

import pytest

from fractal_jupyter.gc_pause import garbage_collection_paused


@pytest.fixture
def collector_enabled():
    assert gc.isenabled()
    yield
    gc.enable()


def test_nested_pauses_end_with_the_last_and_after_an_error(collector_enabled):
    first = garbage_collection_paused()
    second = garbage_collection_paused()
    first.__enter__()
    second.__enter__()
    assert not gc.isenabled()
    first.__exit__(None, None, None)  # the first request ends before the second
    assert not gc.isenabled()
    second.__exit__(None, None, None)
    assert gc.isenabled()

    with pytest.raises(ValueError), garbage_collection_paused():
        raise ValueError
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled(collector_enabled):
    gc.disable()
    with garbage_collection_paused():
        pass
    assert not gc.isenabled()


async def test_an_import_leaves_the_collector_on(api, tmp_path):
    status, project = await api("POST", "api/v2/project/", {"name": "p"})
    assert status == 201, project
    images = [{"zarr_url": f"/z/{index}", "attributes": {"row": index}} for index in range(50)]
    status, dataset = await api(
        "POST",
        f"api/v2/project/{project['id']}/dataset/import/",
        {"name": "d", "zarr_dir": "/z", "images": images},
    )
    assert status == 201, dataset
    status, page = await api(
        "POST", f"api/v2/project/{project['id']}/dataset/{dataset['id']}/images/query/", {}
    )
    assert (status, page["total_count"]) == (200, 50), page
    # A refused import (a duplicate) goes through the same pause.
    status, body = await api(
        "POST",
        f"api/v2/project/{project['id']}/dataset/import/",
        {"name": "e", "zarr_dir": "/z", "images": images + images[:1]},
    )
    assert status == 422 and "appears twice" in body["detail"], body
    assert gc.isenabled()
