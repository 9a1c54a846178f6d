"""PNG pictures of OME-Zarr images and plates, from their lowest resolution level.

Reading goes through `fractal_jupyter.client.results` (zarr-python 3: Zarr v2 and v3, so
OME-NGFF 0.4 and 0.5); only the chunks of one 2D plane per image are read (first time point,
the chosen channel, the chosen or middle z plane). PNGs are written with Pillow. Both are
imported when a picture is first asked for, never when the server starts.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from ..client.results import ResultsError, open_image, open_plate

MAX_SIDE = 256
TILE_SIDE = 64
GAP = 2

ThumbnailError = ResultsError


def _shrunk(plane: np.ndarray, max_side: int) -> np.ndarray:
    step = max(1, -(-max(plane.shape) // max_side))
    result: np.ndarray = np.asarray(plane[::step, ::step], dtype=np.float64)
    return result


def _contrast(values: np.ndarray) -> tuple[float, float]:
    """The 1st and 99.5th percentiles (a range of at least 1)."""
    low, high = (float(v) for v in np.percentile(values, [1, 99.5])) if values.size else (0, 1)
    return low, high if high > low else low + 1


def to_uint8(
    plane: np.ndarray, max_side: int = MAX_SIDE, contrast: tuple[float, float] | None = None
) -> np.ndarray:
    """Downsampled to at most `max_side` pixels a side, contrast from the 1st-99.5th
    percentile unless given."""
    small = _shrunk(plane, max_side)
    low, high = contrast or _contrast(small)
    scaled = np.clip((small - low) / (high - low), 0, 1) * 255
    result: np.ndarray = scaled.astype(np.uint8)
    return result


def png_bytes(gray: np.ndarray) -> bytes:
    """An 8-bit greyscale PNG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(gray, dtype=np.uint8), mode="L").save(
        buffer, format="PNG", compress_level=1
    )
    return buffer.getvalue()


def thumbnail_png(
    zarr_url: str, max_side: int = MAX_SIDE, *, channel: int = 0, z: int | None = None
) -> bytes:
    """A PNG of one plane of the image's lowest resolution level (`z=None`: the middle)."""
    plane = open_image(zarr_url).plane(-1, channel=channel, z=z)
    return png_bytes(to_uint8(np.asarray(plane), max_side))


def plate_overview(
    plate_url: str,
    *,
    channel: int = 0,
    z: int | None = None,
    field: int = 0,
    tile_side: int = TILE_SIDE,
) -> tuple[np.ndarray, list[str]]:
    """The plate as one 8-bit picture: a tile per well (its `field`-th image, lowest level)
    in the plate's row/column grid, one contrast for all; and the wells that could not be
    shown, with why."""
    plate = open_plate(plate_url)
    tiles: dict[tuple[int, int], np.ndarray] = {}
    problems: list[str] = []
    for (row, column), images in sorted(plate.wells.items()):
        name = f"{plate.rows[row]}{plate.columns[column]}"
        if len(images) <= field:
            problems.append(f"{name}: no image {field}")
            continue
        try:
            plane = open_image(images[field]).plane(-1, channel=channel, z=z)
        except ResultsError as error:
            problems.append(f"{name}: {error}")
            continue
        tiles[(row, column)] = _shrunk(np.asarray(plane), tile_side)
    cell = tile_side + GAP
    canvas = np.zeros((len(plate.rows) * cell + GAP, len(plate.columns) * cell + GAP), np.uint8)
    if tiles:
        contrast = _contrast(np.concatenate([tile.ravel() for tile in tiles.values()]))
        for (row, column), tile in tiles.items():
            scaled = to_uint8(tile, tile_side, contrast)
            y, x = GAP + row * cell, GAP + column * cell
            canvas[y : y + scaled.shape[0], x : x + scaled.shape[1]] = scaled
    return canvas, problems


def plate_overview_png(plate_url: str, **options: Any) -> bytes:
    canvas, _ = plate_overview(plate_url, **options)
    return png_bytes(canvas)
