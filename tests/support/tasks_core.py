"""fractal-tasks-core's real manifest, read from its wheel (downloaded once, without deps)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
WHEEL_CACHE = REPO / ".tmp" / "wheels"


def tasks_core_manifest(version: str = "2.1.0") -> dict[str, Any]:
    pattern = f"fractal_tasks_core-{version}-*.whl"
    wheels = sorted(WHEEL_CACHE.glob(pattern))
    if not wheels:
        WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                f"fractal-tasks-core=={version}",
                "-d",
                str(WHEEL_CACHE),
            ],
            check=True,
        )
        wheels = sorted(WHEEL_CACHE.glob(pattern))
    with zipfile.ZipFile(wheels[-1]) as wheel:
        manifest: dict[str, Any] = json.loads(
            wheel.read("fractal_tasks_core/__FRACTAL_MANIFEST__.json")
        )
    return manifest


def task_create_bodies(manifest: dict[str, Any], root: str = "/opt/ftc") -> list[dict[str, Any]]:
    """`POST api/v2/task/` bodies for every task of a manifest (commands are placeholders)."""
    bodies = []
    for entry in manifest["task_list"]:
        body: dict[str, Any] = {
            "name": entry["name"],
            "source": "fractal-tasks-core:" + entry["name"].lower().replace(" ", "_"),
            "args_schema_version": manifest["args_schema_version"],
            "type": entry["type"],
        }
        for part in ("non_parallel", "parallel"):
            if f"executable_{part}" in entry:
                body[f"command_{part}"] = f"python {root}/{entry[f'executable_{part}']}"
                body[f"meta_{part}"] = entry.get(f"meta_{part}") or {}
                body[f"args_schema_{part}"] = entry[f"args_schema_{part}"]
        for key in (
            "input_types",
            "output_types",
            "category",
            "modality",
            "tags",
            "docs_info",
            "docs_link",
        ):
            if key in entry:
                body[key] = entry[key]
        bodies.append(body)
    return bodies


# -- A synthetic 3D plate for the real tasks (../shared/recipes/tasks-core-smoke/) ----------
#
# NGFF 0.4 / zarr v2, uncompressed, 2 pyramid levels: plate `synthetic.zarr`, well B/03,
# field 0; uint16, c=2 (DAPI, GFP), z=3, 64x64 px; a background of 100*(c+1)+z and a 24x24
# bright square of 1000*(c+1)+100*z. Written with the standard library in ~10 ms.

PLATE_CHANNELS = (("DAPI", "A01_C01", "00FFFF"), ("GFP", "A02_C02", "00FF00"))
PLATE_NZ, PLATE_NY, PLATE_NX = 3, 64, 64
SQUARE = (20, 44)


def voxel(c: int, z: int, y: int, x: int) -> int:
    if SQUARE[0] <= y < SQUARE[1] and SQUARE[0] <= x < SQUARE[1]:
        return 1000 * (c + 1) + 100 * z
    return 100 * (c + 1) + z


# A maximum projection over z keeps the top plane: per channel (background, square).
EXPECTED_MIP_MIN = [voxel(c, PLATE_NZ - 1, 0, 0) for c in range(len(PLATE_CHANNELS))]
EXPECTED_MIP_MAX = [voxel(c, PLATE_NZ - 1, *SQUARE[:1] * 2) for c in range(len(PLATE_CHANNELS))]
EXPECTED_LABEL_PIXELS = (SQUARE[1] - SQUARE[0]) ** 2


def _json(path: Path, content: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))


def _group(path: Path, attrs: dict[str, Any] | None = None) -> None:
    _json(path / ".zgroup", {"zarr_format": 2})
    if attrs is not None:
        _json(path / ".zattrs", attrs)


def _array(path: Path, step: int) -> None:
    import struct

    ny, nx = PLATE_NY // step, PLATE_NX // step
    _json(
        path / ".zarray",
        {
            "zarr_format": 2,
            "shape": [len(PLATE_CHANNELS), PLATE_NZ, ny, nx],
            "chunks": [1, 1, ny, nx],
            "dtype": "<u2",
            "compressor": None,
            "fill_value": 0,
            "order": "C",
            "filters": None,
            "dimension_separator": "/",
        },
    )
    for c in range(len(PLATE_CHANNELS)):
        for z in range(PLATE_NZ):
            values = [voxel(c, z, y * step, x * step) for y in range(ny) for x in range(nx)]
            chunk = path / str(c) / str(z) / "0" / "0"
            chunk.parent.mkdir(parents=True, exist_ok=True)
            chunk.write_bytes(struct.pack(f"<{len(values)}H", *values))


def write_synthetic_plate(
    zarr_dir: Path, plate_name: str = "synthetic.zarr", wells: int = 1
) -> list[Path]:
    """The plate of the recipe (`wells` > 1: the same field in wells B/03, B/04...); returns
    the image folders (`<plate>/B/03/0`...)."""
    plate = zarr_dir / plate_name
    columns = [f"{3 + index:02d}" for index in range(wells)]
    _group(
        plate,
        {
            "plate": {
                "name": plate_name.removesuffix(".zarr"),
                "version": "0.4",
                "acquisitions": [{"id": 0, "name": "cycle0"}],
                "rows": [{"name": "B"}],
                "columns": [{"name": column} for column in columns],
                "wells": [
                    {"path": f"B/{column}", "rowIndex": 0, "columnIndex": index}
                    for index, column in enumerate(columns)
                ],
                "field_count": 1,
            }
        },
    )
    _group(plate / "B")
    images = []
    for column in columns:
        _group(
            plate / "B" / column,
            {"well": {"version": "0.4", "images": [{"path": "0", "acquisition": 0}]}},
        )
        images.append(plate / "B" / column / "0")
        _write_field(images[-1])
    return images


def _write_field(image: Path) -> None:
    space = {"type": "space", "unit": "micrometer"}
    _group(
        image,
        {
            "multiscales": [
                {
                    "version": "0.4",
                    "name": "0",
                    "axes": [
                        {"name": "c", "type": "channel"},
                        {"name": "z", **space},
                        {"name": "y", **space},
                        {"name": "x", **space},
                    ],
                    "datasets": [
                        {
                            "path": str(level),
                            "coordinateTransformations": [
                                {"type": "scale", "scale": [1.0, 1.0, 0.65 * step, 0.65 * step]}
                            ],
                        }
                        for level, step in enumerate((1, 2))
                    ],
                }
            ],
            "omero": {
                "version": "0.4",
                "channels": [
                    {
                        "label": label,
                        "wavelength_id": wavelength,
                        "color": color,
                        "active": True,
                        "window": {"min": 0, "max": 65535, "start": 0, "end": 3000},
                    }
                    for label, wavelength, color in PLATE_CHANNELS
                ],
            },
        },
    )
    for level, step in enumerate((1, 2)):
        _array(image / str(level), step)


# Run with a task venv's Python (it has zarr, numpy and, for tables, anndata or pandas):
# prints what the checks need about a projected image, its label and its tables.
INSPECT_IMAGE = r"""
import json, os, sys
import numpy as np, zarr
image = sys.argv[1]
mip = zarr.open_array(image + "/0", mode="r")[...]
result = {
    "shape": list(mip.shape), "dtype": str(mip.dtype),
    "max": [int(mip[c].max()) for c in range(mip.shape[0])],
    "min": [int(mip[c].min()) for c in range(mip.shape[0])],
    "tables": sorted(n for n in os.listdir(image + "/tables") if not n.startswith(".")),
    "labels": sorted(n for n in os.listdir(image + "/labels") if not n.startswith("."))
    if os.path.isdir(image + "/labels") else [],
}
if "DAPI_segmented" in result["labels"]:
    label = zarr.open_array(image + "/labels/DAPI_segmented/0", mode="r")[...]
    result["label_shape"] = list(label.shape)
    result["label_ids"] = sorted(int(v) for v in np.unique(label))
    result["label_pixels"] = int((label > 0).sum())
if "region_props_features" in result["tables"]:
    from ngio import open_ome_zarr_container
    table = open_ome_zarr_container(image).get_table("region_props_features")
    frame = table.dataframe.reset_index()
    result["features_rows"] = len(frame)
    result["features_columns"] = sorted(map(str, frame.columns))
    result["features"] = json.loads(frame.to_json(orient="records"))
print(json.dumps(result))
"""
