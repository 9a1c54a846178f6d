"""Plan a projection: one new 2D image per 3D input image (the init of a compound task)."""

from __future__ import annotations

from typing import Any

from fractal_jupyter.demo_tasks._cli import run_task


def init_projection(zarr_urls: list[str], zarr_dir: str, suffix: str = "_mip") -> dict[str, Any]:
    return {
        "parallelization_list": [
            {"zarr_url": zarr_url, "init_args": {"new_zarr_url": zarr_url + suffix}}
            for zarr_url in zarr_urls
        ]
    }


if __name__ == "__main__":
    run_task(init_projection)
