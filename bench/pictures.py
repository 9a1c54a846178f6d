"""Pictures of results: a thumbnail of a large image, and the overview of a 96-well plate.

    .venv/bin/python bench/pictures.py [--repeat 20] [--zarr-format 2|3]

1. thumbnail: a 2 x 2,000 x 2,000 uint16 image (CYX as CZYX with one plane) with 4 levels
   (2000, 1000, 500, 250 pixels a side, 256-pixel chunks), written in full; the time of
   `thumbnail_png(zarr_url)` (open the image, read one plane of the lowest level, contrast,
   PNG), each call from scratch.
2. plate: an 8 x 12 plate, one such image per well (4 levels declared, only the lowest one
   written: the overview reads nothing else, and 96 full images would be 1.5 GB); the time of
   `plate_overview_png(plate_url)`.

Data go to a temporary folder (page cache warm after the first call: the numbers are the
decoding and Python cost, not the disk's). Results are printed and written to
`bench/results/pictures-<date>-zarr<2 or 3>.json`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import latency_dict, progress, report_header, summarize
from fractal_jupyter.client.results import write_image, write_plate_metadata
from fractal_jupyter.widgets.zarr_thumbnail import plate_overview_png, thumbnail_png

SIDE = 2000
LEVELS = 4
ROWS = "ABCDEFGH"
COLUMNS = [f"{c:02d}" for c in range(1, 13)]


def synthetic(side: int, seed: int) -> np.ndarray:
    generator = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side]
    pixels = generator.normal(100, 10, size=(2, 1, side, side))
    pixels[0, 0] += 1000 * (np.sin(x / 37.0) * np.cos(y / 53.0) > 0.6)
    return np.clip(pixels, 0, 65535).astype(np.uint16)


def write_lowest_only(url: str, seed: int, zarr_format: Literal[2, 3]) -> None:
    """An image whose metadata declare LEVELS levels but whose pixels are only in the lowest."""
    import zarr

    group = zarr.open_group(url, mode="w", zarr_format=zarr_format)
    for level in range(LEVELS):
        side = SIDE // 2**level
        array = group.create_array(
            str(level), shape=(2, 1, side, side), dtype="uint16", chunks=(1, 1, 256, 256)
        )
    array[...] = synthetic(SIDE // 2 ** (LEVELS - 1), seed)
    multiscale: dict[str, Any] = {
        "axes": [{"name": a, "type": "channel" if a == "c" else "space"} for a in "czyx"],
        "datasets": [
            {
                "path": str(level),
                "coordinateTransformations": [
                    {"type": "scale", "scale": [1.0, 1.0, 2.0**level, 2.0**level]}
                ],
            }
            for level in range(LEVELS)
        ],
    }
    omero = {"channels": [{"label": "DAPI"}, {"label": "GFP"}]}
    if zarr_format == 3:
        group.attrs["ome"] = {"version": "0.5", "multiscales": [multiscale], "omero": omero}
    else:
        group.attrs.update({"multiscales": [{"version": "0.4", **multiscale}], "omero": omero})


def time_calls(call: Any, repeat: int) -> list[float]:
    call()  # the first call pays for imports
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--zarr-format", type=int, choices=(2, 3), default=2)
    args = parser.parse_args()
    report = report_header("bench/pictures.py", sys.argv[1:], peer="none")
    with tempfile.TemporaryDirectory() as folder:
        image_url = f"{folder}/image.zarr"
        progress(f"writing a {SIDE}x{SIDE} image, {LEVELS} levels")
        write_image(image_url, synthetic(SIDE, 0), levels=LEVELS, zarr_format=args.zarr_format)
        thumbnail = summarize(time_calls(lambda: thumbnail_png(image_url), args.repeat))
        plate_url = f"{folder}/plate.zarr"
        progress("writing a 96-well plate")
        for index, (row, column) in enumerate((r, c) for r in ROWS for c in COLUMNS):
            write_lowest_only(f"{plate_url}/{row}/{column}/0", index, args.zarr_format)
        write_plate_metadata(
            plate_url,
            {(r, c): ["0"] for r in ROWS for c in COLUMNS},
            zarr_format=args.zarr_format,
        )
        plate = summarize(
            time_calls(lambda: plate_overview_png(plate_url), max(3, args.repeat // 4))
        )
    report["results"] = {
        "thumbnail": latency_dict(thumbnail),
        "plate_overview_96": latency_dict(plate),
    }
    print("| what | p50 ms | p95 ms | max ms |\n|---|---|---|---|")
    for name, latency in (
        ("thumbnail 2000x2000, 4 levels", thumbnail),
        ("plate overview, 96 wells", plate),
    ):
        numbers = latency_dict(latency)
        cells = [f"{numbers[key]:.1f}" for key in ("p50_ms", "p95_ms", "max_ms")]
        print(f"| {name} | {' | '.join(cells)} |")
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    stamp = time.strftime("%Y-%m-%d")
    (results / f"pictures-{stamp}-zarr{args.zarr_format}.json").write_text(
        json.dumps(report, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
