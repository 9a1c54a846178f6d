"""A PNG thumbnail of an OME-Zarr image from its lowest-resolution level.

Reads Zarr v2 (OME-NGFF 0.4, what Fractal tasks write) with json + numpy, and numcodecs for
the chunk codecs (blosc, zstd, gzip, ...): numcodecs is the zarr-developers' codec package
that zarr itself uses, with wheels for every platform; zarr's own API (v3: async, fsspec)
would be far more than reading a few chunks of one array. Only the chunks of one 2D plane are
read (first time point and channel, middle z plane). The PNG is written with zlib.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

MAX_SIDE = 256


class ThumbnailError(Exception):
    """The image cannot be shown (not local, not OME-Zarr v2, unreadable)."""


def _json(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise ThumbnailError(f"{path} not found") from None
    except ValueError as error:
        raise ThumbnailError(f"{path} is not JSON: {error}") from None
    return data


def lowest_resolution(zarr_url: str) -> tuple[Path, list[str]]:
    """The folder of the lowest-resolution array of an OME-Zarr image, and its axis names."""
    if "://" in zarr_url:
        raise ThumbnailError(f"only local images can be shown, not {zarr_url}")
    root = Path(zarr_url)
    if (root / "zarr.json").exists() and not (root / ".zattrs").exists():
        raise ThumbnailError(f"{zarr_url} is Zarr v3 (OME-NGFF 0.5): not supported yet")
    attrs = _json(root / ".zattrs")
    multiscales = attrs.get("multiscales")
    if not multiscales or not multiscales[0].get("datasets"):
        raise ThumbnailError(f"{zarr_url} has no OME-Zarr multiscales")
    scale = multiscales[0]
    axes = [a["name"] if isinstance(a, dict) else str(a) for a in scale.get("axes", [])]
    return root / scale["datasets"][-1]["path"], axes


def _plane_index(shape: tuple[int, ...], axes: list[str]) -> tuple[int, ...]:
    """For the leading dimensions: 0, or the middle plane along z."""
    lead = len(shape) - 2
    names = axes[:lead] if len(axes) == len(shape) else [""] * lead
    return tuple(shape[i] // 2 if names[i] == "z" else 0 for i in range(lead))


def read_plane(array_dir: Path, axes: list[str]) -> np.ndarray:
    meta = _json(array_dir / ".zarray")
    if meta.get("zarr_format") != 2:
        raise ThumbnailError(f"{array_dir} is not a Zarr v2 array")
    shape = tuple(meta["shape"])
    chunks = tuple(meta["chunks"])
    if len(shape) < 2:
        raise ThumbnailError(f"{array_dir} has {len(shape)} dimension(s)")
    dtype = np.dtype(meta["dtype"])
    order = meta.get("order", "C")
    separator = meta.get("dimension_separator", ".")
    fill = meta.get("fill_value") or 0
    codec = _codec(meta.get("compressor"))
    filters = [_codec(f) for f in meta.get("filters") or []]
    lead = _plane_index(shape, axes)
    lead_chunk = tuple(i // c for i, c in zip(lead, chunks, strict=False))
    lead_offset = tuple(i % c for i, c in zip(lead, chunks, strict=False))
    height, width = shape[-2:]
    plane = np.full((height, width), fill, dtype=dtype)
    for cy in range(-(-height // chunks[-2])):
        for cx in range(-(-width // chunks[-1])):
            key = separator.join(str(i) for i in (*lead_chunk, cy, cx))
            path = array_dir / key
            if not path.exists():
                continue
            raw: Any = path.read_bytes()
            if codec is not None:
                raw = codec.decode(raw)
            for f in reversed(filters):
                raw = f.decode(raw)
            block = np.frombuffer(bytes(raw), dtype=dtype).reshape(chunks, order=order)
            block = block[lead_offset] if lead_offset else block
            y0, x0 = cy * chunks[-2], cx * chunks[-1]
            y1, x1 = min(y0 + chunks[-2], height), min(x0 + chunks[-1], width)
            plane[y0:y1, x0:x1] = block[: y1 - y0, : x1 - x0]
    return plane


def _codec(config: dict[str, Any] | None) -> Any:
    if config is None:
        return None
    try:
        import numcodecs
    except ImportError:  # pragma: no cover - a dependency
        raise ThumbnailError("numcodecs is needed to read compressed chunks") from None
    try:
        return numcodecs.get_codec(dict(config))
    except (ValueError, KeyError) as error:
        raise ThumbnailError(f"unknown Zarr codec {config!r}: {error}") from None


def to_uint8(plane: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """Downsampled to at most `max_side` pixels a side, contrast from the 1st-99.5th percentile."""
    step = max(1, -(-max(plane.shape) // max_side))
    small = plane[::step, ::step].astype(np.float64)
    low, high = np.percentile(small, [1, 99.5]) if small.size else (0.0, 1.0)
    if high <= low:
        high = low + 1
    scaled = np.clip((small - low) / (high - low), 0, 1) * 255
    result: np.ndarray = scaled.astype(np.uint8)
    return result


def png_bytes(gray: np.ndarray) -> bytes:
    """An 8-bit greyscale PNG."""
    height, width = gray.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + gray[y].tobytes() for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 6))
        + chunk(b"IEND", b"")
    )


def thumbnail_png(zarr_url: str, max_side: int = MAX_SIDE) -> bytes:
    array_dir, axes = lowest_resolution(zarr_url)
    return png_bytes(to_uint8(read_plane(array_dir, axes), max_side))
