"""Create a demo plate: one 3D image per field of the chosen wells (a converter task)."""

from __future__ import annotations

import random
from typing import Any

from fractal_jupyter.demo_tasks._cli import run_task, write_meta


def create_plate(
    zarr_dir: str,
    plate_name: str = "demo_plate.zarr",
    rows: str = "ABCD",
    columns: int = 6,
    fields: int = 2,
    seed: int = 0,
) -> dict[str, Any]:
    generator = random.Random(seed)
    updates = []
    for row in rows:
        for column in range(1, columns + 1):
            for field in range(fields):
                zarr_url = f"{zarr_dir}/{plate_name}/{row}/{column:02d}/{field}"
                write_meta(zarr_url, {"intensity": round(generator.uniform(50, 250), 2), "z": 10})
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
    return {"image_list_updates": updates}


if __name__ == "__main__":
    run_task(create_plate)
