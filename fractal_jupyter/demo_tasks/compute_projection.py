"""Project one 3D image to 2D into a new image (the compute part of a compound task)."""

from __future__ import annotations

from typing import Any

from fractal_jupyter.demo_tasks._cli import read_meta, run_task, write_meta
from fractal_jupyter.demo_tasks._pixels import import_pixel_libraries, is_ome_zarr, project_field

import_pixel_libraries()


def compute_projection(zarr_url: str, init_args: dict[str, Any]) -> dict[str, Any]:
    meta = read_meta(zarr_url)
    new_zarr_url = init_args["new_zarr_url"]
    if is_ome_zarr(zarr_url):
        project_field(zarr_url, new_zarr_url)
    write_meta(new_zarr_url, {"intensity": meta["intensity"], "z": 1})
    return {
        "image_list_updates": [
            {"zarr_url": new_zarr_url, "origin": zarr_url, "attributes": {"projected": True}}
        ]
    }


if __name__ == "__main__":
    run_task(compute_projection)
