"""Create a demo plate: one 3D image per field of the chosen wells (a converter task).

With `pixels`, each image is a real OME-Zarr image (NGFF 0.4) of synthetic nuclei with a
`nuclei` label image, in an OME-Zarr plate; without, only its metadata file is written.
"""

from __future__ import annotations

import random
from typing import Any

from fractal_jupyter.demo_tasks._cli import run_task, write_meta
from fractal_jupyter.demo_tasks._pixels import write_field


def create_plate(
    zarr_dir: str,
    plate_name: str = "demo_plate.zarr",
    rows: str = "ABCD",
    columns: int = 6,
    fields: int = 2,
    seed: int = 0,
    pixels: bool = False,
) -> dict[str, Any]:
    generator = random.Random(seed)
    updates: list[dict[str, Any]] = []
    wells: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        for column in range(1, columns + 1):
            for field in range(fields):
                zarr_url = f"{zarr_dir}/{plate_name}/{row}/{column:02d}/{field}"
                intensity = round(generator.uniform(50, 250), 2)
                if pixels:
                    write_field(zarr_url, seed=seed * 100_003 + len(updates), brightness=intensity)
                    wells.setdefault((row, f"{column:02d}"), []).append(str(field))
                write_meta(zarr_url, {"intensity": intensity, "z": 10})
                updates.append(
                    {
                        "zarr_url": zarr_url,
                        "attributes": {
                            "plate": plate_name,
                            "well": f"{row}{column:02d}",
                            "row": row,
                            "column": column,
                        },
                        "types": {"is_3D": True},
                    }
                )
    if pixels:
        from fractal_jupyter.client.results import write_plate_metadata

        write_plate_metadata(f"{zarr_dir}/{plate_name}", wells)
    return {"image_list_updates": updates}


if __name__ == "__main__":
    run_task(create_plate)
