"""Results in the notebook: OME-Zarr images (NGFF 0.4 and 0.5), tables, plates, pictures."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fractal_jupyter.client.results import (
    ResultsError,
    list_tables,
    open_image,
    open_plate,
    plate_of,
    read_table,
    write_image,
    write_plate_metadata,
    write_table,
)
from fractal_jupyter.widgets.images import ImageBrowser
from fractal_jupyter.widgets.zarr_thumbnail import plate_overview, thumbnail_png


def _pixels(channels: int = 2, planes: int = 3, side: int = 64) -> np.ndarray:
    pixels = np.zeros((channels, planes, side, side), dtype=np.uint16)
    for c in range(channels):
        for z in range(planes):
            pixels[c, z] = 100 * (c + 1) + z
    return pixels


def _png_size_and_pixels(png: bytes) -> tuple[tuple[int, int], np.ndarray]:
    picture = Image.open(io.BytesIO(png))
    return picture.size, np.asarray(picture)


@pytest.mark.parametrize(("zarr_format", "version"), [(2, "0.4"), (3, "0.5")])
def test_open_image_reads_both_ngff_versions_lazily(tmp_path, zarr_format, version):
    url = str(tmp_path / "img.zarr")
    labels = {"nuclei": np.ones((3, 64, 64), dtype=np.uint32)}
    write_image(
        url, _pixels(), levels=3, channels=["DAPI", "GFP"], zarr_format=zarr_format, labels=labels
    )
    image = open_image(url)
    assert image.version == version
    assert image.axes == ["c", "z", "y", "x"]
    assert image.channels == ["DAPI", "GFP"]
    assert image.shapes == [(2, 3, 64, 64), (2, 3, 32, 32), (2, 3, 16, 16)]
    assert image.size("z") == 3 and image.size("t") == 1
    lowest = image.array(-1)
    assert type(lowest).__name__ == "Array" and lowest.shape == (2, 3, 16, 16)
    assert int(image.plane(-1, channel=1, z=2)[0, 0]) == 202
    assert int(image.plane(0, channel=0)[5, 5]) == 101  # the middle plane by default
    with pytest.raises(ResultsError, match="3 plane"):
        image.plane(channel=0, z=3)
    assert open_image(f"{url}/labels/nuclei").axes == ["z", "y", "x"]


def test_images_that_cannot_be_read_say_why(tmp_path):
    with pytest.raises(ResultsError, match="does not exist"):
        open_image(str(tmp_path / "missing.zarr"))
    with pytest.raises(ResultsError, match="only local"):
        open_image("s3://bucket/img.zarr")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / ".zgroup").write_text('{"zarr_format": 2}')
    with pytest.raises(ResultsError, match="not an OME-Zarr image"):
        open_image(str(tmp_path / "plain"))


def test_a_feature_table_as_a_dataframe(tmp_path):
    url = str(tmp_path / "img.zarr")
    write_image(url, _pixels(1, 1))
    write_table(
        url,
        "nuclei",
        {"area": [10.0, 20.0, 30.0], "mean_intensity": [1.5, 2.5, 3.5]},
        ["1", "2", "3"],
        {"type": "feature_table", "instance_key": "label", "region": {"path": "../labels/n"}},
    )
    write_table(url, "FOV_ROI_table", {"x_micrometer": [0.0]}, ["FOV_1"])
    assert list_tables(url) == ["nuclei", "FOV_ROI_table"]
    frame = read_table(url, "nuclei")
    assert list(frame.columns) == ["area", "mean_intensity"]
    assert list(frame.index) == ["1", "2", "3"]
    assert frame["area"].tolist() == [10.0, 20.0, 30.0]
    assert frame.attrs["type"] == "feature_table"
    with pytest.raises(ResultsError, match=r"no table 'cells' \(its tables: nuclei, FOV_ROI"):
        read_table(url, "cells")


def _plate(tmp_path, zarr_format=2, rows="AB", columns=("01", "02", "03")):
    plate_url = str(tmp_path / "plate.zarr")
    wells = {}
    for r, row in enumerate(rows):
        for c, column in enumerate(columns):
            pixels = np.full((2, 3, 64, 64), 10 * (r * len(columns) + c), dtype=np.uint16)
            write_image(f"{plate_url}/{row}/{column}/0", pixels, zarr_format=zarr_format)
            wells[(row, column)] = ["0"]
    write_plate_metadata(plate_url, wells, zarr_format=zarr_format)
    return plate_url


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_plate_overview_puts_each_well_in_its_place(tmp_path, zarr_format):
    plate_url = _plate(tmp_path, zarr_format)
    plate = open_plate(plate_url)
    assert plate.rows == ["A", "B"] and plate.columns == ["01", "02", "03"]
    assert plate.wells[(1, 2)] == [f"{plate_url}/B/03/0"]
    assert plate_of(f"{plate_url}/B/03/0") == plate_url and plate_of("/a/b") is None
    canvas, problems = plate_overview(plate_url, tile_side=16)
    assert problems == [] and canvas.shape == (2 * 18 + 2, 3 * 18 + 2)
    tile_means = [[canvas[2 + r * 18 + 8, 2 + c * 18 + 8] for c in range(3)] for r in range(2)]
    assert tile_means[0][0] < tile_means[0][1] < tile_means[0][2] < tile_means[1][2]
    # A well whose image is gone is left dark and named.
    subprocess.run(["rm", "-r", f"{plate_url}/A/02/0"], check=True)
    canvas, problems = plate_overview(plate_url, tile_side=16)
    assert len(problems) == 1 and problems[0].startswith("A02: ")


def test_thumbnail_follows_channel_and_z(tmp_path):
    url = str(tmp_path / "img.zarr")
    pixels = _pixels(2, 3, 128)
    pixels[1, 0, :64] = 5000  # the top half bright in channel 1, plane 0 only
    write_image(url, pixels, levels=2, zarr_format=3)
    size, gray = _png_size_and_pixels(thumbnail_png(url, channel=1, z=0))
    assert size == (64, 64) and gray[10, 10] > gray[50, 10]
    _, gray = _png_size_and_pixels(thumbnail_png(url, channel=1))
    assert gray[10, 10] == gray[50, 10]


def test_the_server_does_not_import_zarr_pandas_or_pillow():
    code = (
        "import sys, fractal_jupyter.app, fractal_jupyter.widgets.images, fractal_jupyter.client;"
        "print(sorted(m for m in ('zarr', 'pandas', 'PIL') if m in sys.modules))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert output.stdout.strip() == "[]", output.stderr


async def test_image_browser_thumbnails_and_plate_overview(fractal_client, in_thread, tmp_path):
    client = fractal_client
    plate_url = _plate(tmp_path / "zarr")
    project = await in_thread(client.create_project, "p")
    dataset = await in_thread(client.create_dataset, project.id, "d", str(tmp_path / "zarr"))
    urls = [f"{plate_url}/{r}/{c}/0" for r in "AB" for c in ("01", "02", "03")]
    for url in [*urls, str(tmp_path / "zarr" / "not-an-image")]:
        await in_thread(client.add_image, project.id, dataset.id, url)
    browser = await in_thread(ImageBrowser, client, project.id, dataset.id, page_size=10)
    assert set(browser.thumbnails) == {*urls, str(tmp_path / "zarr" / "not-an-image")}
    assert all(browser.thumbnails[url].startswith(b"\x89PNG") for url in urls)
    assert browser.thumbnails[str(tmp_path / "zarr" / "not-an-image")] == b""
    assert len(browser.gallery.children) == 6
    assert [label for label, _ in browser.channel_input.options] == ["0: C0", "1: C1"]
    assert [label for label, _ in browser.z_input.options] == ["middle", "0", "1", "2"]
    assert browser.plate_url == plate_url
    (width, height), _ = _png_size_and_pixels(browser.plate_png)
    assert (width, height) == (3 * 66 + 2, 2 * 66 + 2)
    assert browser.plate_image.layout.width == "800px"  # a small plate is shown enlarged
    assert "plate.zarr" in browser.plate_note.value
    before = dict(browser.thumbnails)
    await in_thread(browser.set_plane, 1, 0)
    assert (browser.channel, browser.z) == (1, 0)
    assert browser.thumbnails.keys() == before.keys()


def test_demo_tasks_write_real_images_labels_and_a_feature_table(tmp_path):
    from fractal_jupyter.demo_tasks.compute_projection import compute_projection
    from fractal_jupyter.demo_tasks.create_plate import create_plate
    from fractal_jupyter.demo_tasks.measure_intensity import measure_intensity

    output = create_plate(str(tmp_path), rows="A", columns=2, fields=1, pixels=True)
    first = output["image_list_updates"][0]["zarr_url"]
    image = open_image(first)
    assert image.channels == ["DAPI"] and image.shapes[0] == (1, 5, 192, 192)
    labels = np.asarray(open_image(f"{first}/labels/nuclei").array(0)[2])
    assert labels.max() >= 5  # nuclei, each a label
    pixels = np.asarray(image.plane(0, z=2))
    assert pixels[labels > 0].mean() > 3 * pixels[labels == 0].mean()
    assert open_plate(str(tmp_path / "demo_plate.zarr")).wells.keys() == {(0, 0), (0, 1)}

    measure_intensity(first)
    table = read_table(first, "nuclei")
    assert len(table) == labels.max() and table.attrs["type"] == "feature_table"
    assert (table["area"] > 0).all() and (table["mean_intensity"] > 100).all()

    compute_projection(first, {"new_zarr_url": first + "_mip"})
    projected = open_image(first + "_mip")
    assert projected.shapes[0] == (1, 1, 192, 192)
    assert np.asarray(projected.plane(0)).max() == np.asarray(image.array(0)[0]).max()


def test_tables_written_by_anndata_itself():
    """tests/data/anndata-0.12-tables.zarr: written by anndata 0.12.19 (zarr 3.1.6, Zarr v2 as
    fractal-tasks-core writes it) with `AnnData(X, obs, var).write_zarr(...)`: a ROI table
    (FOV names as index, X the six ROI columns) and a feature table with an integer and a
    categorical obs column."""
    url = str(Path(__file__).parent / "data" / "anndata-0.12-tables.zarr")
    assert list_tables(url) == ["FOV_ROI_table", "nuclei"]
    roi = read_table(url, "FOV_ROI_table")
    assert list(roi.index) == ["FOV_1", "FOV_2"]
    assert list(roi.columns)[:3] == ["x_micrometer", "y_micrometer", "z_micrometer"]
    assert roi["x_micrometer"].tolist() == [0.0, 416.0]
    features = read_table(url, "nuclei")
    assert list(features.columns) == ["label", "kind", "area", "mean_intensity"]
    assert features["label"].tolist() == [1, 2, 3]
    assert features["kind"].tolist() == ["a", "b", "a"]
    assert str(features["kind"].dtype) == "category"
    assert features["area"].tolist() == [10.0, 20.0, 30.0]
    assert features.attrs["type"] == "feature_table"


def test_a_parquet_table(tmp_path):
    import pandas

    url = str(tmp_path / "img.zarr")
    (tmp_path / "img.zarr" / "tables").mkdir(parents=True)
    path = tmp_path / "img.zarr" / "tables" / "measures.parquet"
    try:
        import pyarrow  # noqa: F401
    except ImportError:  # not a dependency: the error says what is missing
        path.write_bytes(b"PAR1")
        with pytest.raises(ResultsError, match="needs pyarrow"):
            read_table(url, "measures")
        return
    pandas.DataFrame({"area": [1.0, 2.0]}).to_parquet(path)
    assert read_table(url, "measures")["area"].tolist() == [1.0, 2.0]
