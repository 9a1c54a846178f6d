"""Measure an image's intensity and label it bright or dim (a parallel task).

An OME-Zarr image (a plate made with `pixels`) also gets its feature table `nuclei`: the area
and mean intensity of each labelled nucleus.
"""

from __future__ import annotations

from typing import Any

from fractal_jupyter.demo_tasks._cli import read_meta, run_task, write_meta
from fractal_jupyter.demo_tasks._pixels import import_pixel_libraries, is_ome_zarr, measure_nuclei

import_pixel_libraries()


def measure_intensity(zarr_url: str, threshold: float = 150.0) -> dict[str, Any]:
    meta = read_meta(zarr_url)
    meta["measured"] = True
    write_meta(zarr_url, meta)
    if is_ome_zarr(zarr_url):
        measure_nuclei(zarr_url)
    level = "bright" if meta["intensity"] >= threshold else "dim"
    return {"image_list_updates": [{"zarr_url": zarr_url, "attributes": {"level": level}}]}


if __name__ == "__main__":
    run_task(measure_intensity)
