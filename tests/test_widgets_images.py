"""The image browser's filters with many values, numbered pages, the dataset-filters toggle and
the viewer links, driven from Python against a live server (see tests/test_widgets.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fractal_jupyter.widgets import ImageBrowser
from tests.test_widgets import write_ome_zarr

VIEWER = "https://viewer.example/?source={zarr_url}"


@pytest.fixture
def fractal_config(fractal_config: dict[str, Any]) -> dict[str, Any]:
    return {**fractal_config, "viewer_url_template": VIEWER}


async def test_image_browser_values_pages_toggle_and_viewer_links(
    api, make_client, in_thread, tmp_path
):
    _, project = await api("POST", "api/v2/project/", {"name": "p"})
    zarr = f"{tmp_path}/zarr"
    images = [
        {
            "zarr_url": f"{zarr}/plate.zarr/{'AB'[index % 2]}/{index:03d}/0",
            "attributes": {"well": f"{'AB'[index % 2]}{index % 3}", "index": index},
            "types": {"is_3D": index < 20},
        }
        for index in range(120)
    ]
    status, dataset = await api(
        "POST",
        f"api/v2/project/{project['id']}/dataset/import/",
        {
            "name": "my plate",
            "zarr_dir": zarr,
            "images": images,
            "filters": {"attributes": {}, "types": {"is_3D": True}},
        },
    )
    assert status == 201, dataset
    pixels = (np.arange(64 * 64, dtype=np.uint16).reshape(1, 1, 64, 64)) % 300
    write_ome_zarr(Path(images[0]["zarr_url"]), pixels)
    client = make_client()
    browser = await in_thread(ImageBrowser, client, project["id"], dataset["id"], page_size=10)
    # The page's one readable image has a thumbnail with its "view" link.
    (tile,) = browser.gallery.children
    link = f'href="https://viewer.example/?source={images[0]["zarr_url"]}"'
    assert link in tile.children[1].value
    assert browser.title == "my plate" and "Images of my plate" in browser.children[1].value
    assert (browser.total_count, browser.page_count) == (120, 12)

    # Numbered pages: the first, the last and seven around the current one.
    assert browser.page_numbers() == [1, 2, 3, 4, 5, 6, 7, 12]
    assert [b.description for b in browser.page_buttons.children] == [
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
        "7",
        "12",
    ]
    assert browser.page_buttons.children[0].button_style == "primary"
    await in_thread(browser.go, 6)
    assert browser.page_numbers() == [1, 3, 4, 5, 6, 7, 8, 9, 12]
    button_9 = next(b for b in browser.page_buttons.children if b.description == "9")
    await in_thread(button_9.click)
    assert browser.page == 9 and browser.images[0].attributes["index"] == 80
    await in_thread(browser.go, 12)
    assert browser.page_numbers() == [1, 6, 7, 8, 9, 10, 11, 12] and browser.next_button.disabled

    # Several values of one attribute: images with one of them.
    await in_thread(browser.set_filter, "well", ["A0", "B1"])
    assert browser.filters == {"attributes": {"well": ["A0", "B1"]}, "types": {}}
    assert browser.attribute_filters["well"].value == ("A0", "B1")
    assert browser.page == 1 and browser.total_count == 40
    assert {image.attributes["well"] for image in browser.images} == {"A0", "B1"}
    await in_thread(browser.set_filter, "well", ["A0", "no such well"])  # not offered: left out
    assert browser.filters["attributes"] == {"well": ["A0"]} and browser.total_count == 20
    await in_thread(browser.set_filter, "well")
    assert browser.total_count == 120

    # The dataset's own filters (is_3D: true), applied on request.
    assert "is_3D=true" in browser.dataset_filters.description
    assert not browser.dataset_filters.disabled and not browser.use_dataset_filters
    await in_thread(setattr, browser.dataset_filters, "value", True)
    assert browser.total_count == 20 and all(i.types["is_3D"] for i in browser.images)
    await in_thread(setattr, browser.dataset_filters, "value", False)
    assert browser.total_count == 120

    # 10 to 500 per page; other sizes are refused with a message.
    for wrong in (5, 501, 0, "50"):
        await in_thread(browser.set_page_size, wrong)
        assert browser.message.failed and "10 to 500 images" in browser.message.text
        assert browser.page_size == 10
    await in_thread(browser.set_page_size, 500)
    assert browser.page_size == 500 and len(browser.images) == 120
    assert browser.page_count == 1 and browser.page_numbers() == [1]
    assert len(browser.rows.lines) == 120

    # A click on a row selects the image: its name and a "view" link; no preview, a note.
    await in_thread(browser.select, 3)
    assert browser.selected == browser.images[3] and browser.rows.selected == 3
    url = browser.images[3].zarr_url
    assert f'href="https://viewer.example/?source={url}"' in browser.thumbnail_note.value
    assert "No preview" in browser.thumbnail_note.value
    assert browser.thumbnail.layout.display == "none"
    assert zarr not in browser.thumbnail_note.value.replace(f"source={zarr}", "")
    # The plate of the page gets its link too.
    assert f'href="https://viewer.example/?source={zarr}/plate.zarr"' in browser.plate_note.value
    # Bad input: a message, no exception.
    await in_thread(browser.select, 500)
    assert browser.message.failed and "no image number 500" in browser.message.text
    await in_thread(browser.set_filter, "colour", "red")
    assert "no attribute 'colour'" in browser.message.text
    too_big = await in_thread(ImageBrowser, client, project["id"], dataset["id"], page_size=1000)
    assert too_big.page_size == 25 and "not 1000" in too_big.message.text

    # The settings route; the status pseudo-attribute is refused by the plain image query.
    assert (await in_thread(client.get_widget_settings)).viewer_url_template == VIEWER
    status, answer = await api(
        "POST",
        f"api/v2/project/{project['id']}/dataset/{dataset['id']}/images/query/",
        {"attribute_filters": {"__wftask_dataset_image_status__": ["done"]}},
    )
    assert status == 422 and "status/images/" in str(answer["detail"])
    status, answer = await api(
        "POST",
        f"api/v2/project/{project['id']}/dataset/{dataset['id']}/images/query/",
        {"filters": {"attributes": {"well": "A0"}}, "attribute_filters": {"index": [0, 6, 7]}},
    )
    assert status == 200 and [i["attributes"]["index"] for i in answer["images"]] == [0, 6]
