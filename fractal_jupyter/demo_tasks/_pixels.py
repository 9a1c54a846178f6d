"""The demo's pictures: synthetic fields of nuclei as OME-Zarr images with labels, and the
measurements a feature table holds. numpy and zarr are imported by the converter only when it
makes pixels (`pixels=True`), by the parallel tasks when they are imported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SIZE = 192
PLANES = 5
CHANNELS = ("DAPI",)
LABEL_NAME = "nuclei"


def import_pixel_libraries() -> None:
    """Import what the per-image work needs (about 1 s) now: a parallel task calls this when
    imported, so that a warm starter holds these modules for all of a job's calls instead of
    every forked call importing them again."""
    import numpy  # noqa: F401
    import zarr  # noqa: F401

    import fractal_jupyter.client.results  # noqa: F401


def is_ome_zarr(zarr_url: str) -> bool:
    root = Path(zarr_url)
    return (root / ".zattrs").exists() or (root / "zarr.json").exists()


def synthetic_field(seed: int, brightness: float) -> tuple[Any, Any]:
    """A CZYX uint16 image of round nuclei (their mean brightness about `brightness` x 10
    above a noisy background, dimmer away from the middle plane) and its ZYX nucleus labels."""
    import numpy as np

    generator = np.random.default_rng(seed)
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    mask = np.zeros((SIZE, SIZE), dtype=np.uint32)
    signal = np.zeros((SIZE, SIZE), dtype=np.float64)
    count = int(generator.integers(5, 11))
    label = 0
    for _ in range(count * 4):  # tries; nuclei do not overlap
        if label == count:
            break
        radius = float(generator.uniform(6, 12))
        cy, cx = generator.uniform(radius, SIZE - radius, size=2)
        disk = (y - cy) ** 2 + (x - cx) ** 2 <= radius**2
        if mask[disk].any():
            continue
        label += 1
        mask[disk] = label
        signal[disk] = brightness * 10 * float(generator.uniform(0.7, 1.3))
    profile = np.exp(-(((np.arange(PLANES) - PLANES // 2) / 1.5) ** 2))
    image = np.empty((len(CHANNELS), PLANES, SIZE, SIZE), dtype=np.uint16)
    for z in range(PLANES):
        noise = generator.normal(100, 10, size=(SIZE, SIZE))
        image[0, z] = np.clip(noise + signal * profile[z], 0, 65535).astype(np.uint16)
    labels = np.repeat(mask[np.newaxis], PLANES, axis=0)
    return image, labels


def write_field(zarr_url: str, seed: int, brightness: float) -> None:
    from fractal_jupyter.client.results import write_image

    image, labels = synthetic_field(seed, brightness)
    write_image(zarr_url, image, levels=2, channels=CHANNELS, labels={LABEL_NAME: labels})


def measure_nuclei(zarr_url: str) -> None:
    """Area and mean intensity of each nucleus, as the image's feature table `nuclei`."""
    import numpy as np

    from fractal_jupyter.client.results import open_image, write_table

    pixels = np.asarray(open_image(zarr_url).array(0)[0], dtype=np.float64)
    labels = np.asarray(open_image(f"{zarr_url}/labels/{LABEL_NAME}").array(0)[...])
    count = int(labels.max())
    if count == 0:
        return
    area = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    total = np.bincount(labels.ravel(), weights=pixels.ravel(), minlength=count + 1)[1:]
    present = area > 0
    write_table(
        zarr_url,
        LABEL_NAME,
        {
            "area": area[present].astype(float).tolist(),
            "mean_intensity": (total[present] / area[present]).tolist(),
        },
        [str(i + 1) for i in np.flatnonzero(present)],
        {
            "type": "feature_table",
            "fractal_table_version": "1",
            "region": {"path": f"../labels/{LABEL_NAME}"},
            "instance_key": "label",
        },
    )


def project_field(zarr_url: str, new_zarr_url: str) -> None:
    """The maximum-intensity projection of an image and its labels (Z of size 1)."""
    import numpy as np

    from fractal_jupyter.client.results import open_image, write_image

    image = open_image(zarr_url)
    pixels = np.asarray(image.array(0)[...]).max(axis=1, keepdims=True)
    labels = np.asarray(open_image(f"{zarr_url}/labels/{LABEL_NAME}").array(0)[...])
    write_image(
        new_zarr_url,
        pixels,
        levels=len(image.level_paths),
        channels=image.channels,
        labels={LABEL_NAME: labels.max(axis=0, keepdims=True)},
    )
