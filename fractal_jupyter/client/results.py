"""What jobs produced, in the notebook: OME-Zarr images as arrays, their tables as DataFrames.

    image = open_image(zarr_url)              # OME-NGFF 0.4 (Zarr v2) or 0.5 (Zarr v3)
    image.axes, image.channels, image.shapes  # metadata; nothing of the pixels read yet
    pixels = image.array(level=-1)            # a zarr.Array: indexing reads only its chunks
    table = read_table(zarr_url, "nuclei")    # an AnnData table of fractal-tasks-core -> DataFrame
    plate = open_plate(plate_url)             # rows, columns, and the images of each well

Images are read with zarr-python 3, which reads both Zarr formats and so both OME-NGFF versions
that Fractal tasks write; tables need pandas (`pip install fractal-jupyter[results]`). Both are
imported here only when first used, never by the server.

Tables are AnnData groups as fractal-tasks-core and ngio write them under `<image>/tables/<name>`:
`X` (one row per ROI or label, one column per `var` name) with the `obs` columns and index. They
are read with zarr directly (the `anndata` package is not needed); a `<name>.parquet` file or a
folder of parquet files under `tables/` is read with pandas (which then needs pyarrow).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .data import DataMixin, FiltersLike

if TYPE_CHECKING:
    import zarr

# pandas is an optional extra (and has no type information of its own): DataFrames are Any.
DataFrame = Any


class ResultsError(Exception):
    """An image, plate or table cannot be read (missing, not OME-Zarr, unsupported)."""


def _zarr() -> Any:
    try:
        import zarr
    except ImportError:  # pragma: no cover - a dependency
        raise ResultsError("zarr (zarr-python 3) is needed to read OME-Zarr") from None
    return zarr


def _open_group(url: str) -> Any:
    """A Zarr group, v2 or v3 (typed Any: its members are arrays or groups, read by duck
    typing below)."""
    if "://" in url:
        raise ResultsError(f"only local OME-Zarr can be read here, not {url}")
    if not Path(url).exists():
        raise ResultsError(f"{url} does not exist")
    zarr = _zarr()
    try:
        return zarr.open_group(url, mode="r")
    except Exception as error:
        raise ResultsError(f"{url} is not a Zarr group: {error}") from None


def _ome_attributes(group: Any) -> dict[str, Any]:
    """The OME-NGFF attributes: at the top in 0.4 (Zarr v2), under `ome` in 0.5 (Zarr v3)."""
    attributes = dict(group.attrs)
    ome = attributes.get("ome")
    return dict(ome) if isinstance(ome, Mapping) else attributes


@dataclass(frozen=True)
class OmeZarrImage:
    """One OME-Zarr image: its metadata, and its resolution levels opened on demand."""

    zarr_url: str
    version: str
    axes: list[str]
    level_paths: list[str]
    shapes: list[tuple[int, ...]]
    channels: list[str]
    _group: Any = field(repr=False, compare=False)

    def array(self, level: int = 0) -> zarr.Array[Any]:
        """Resolution level `level` (0 the full resolution, -1 the lowest) as a lazy array."""
        try:
            path = self.level_paths[level]
        except IndexError:
            raise ResultsError(
                f"{self.zarr_url} has {len(self.level_paths)} level(s), not {level}"
            ) from None
        array: zarr.Array[Any] = self._group[path]
        return array

    def size(self, axis: str, level: int = 0) -> int:
        """How many planes along `axis` ("c", "z", "t"), 1 when the image has no such axis."""
        return self.shapes[level][self.axes.index(axis)] if axis in self.axes else 1

    def plane(self, level: int = -1, *, channel: int = 0, z: int | None = None, t: int = 0) -> Any:
        """One 2D plane (a numpy array) of one level: only its chunks are read.
        `z=None` is the middle plane."""
        shape = self.shapes[level]
        if len(shape) < 2:
            raise ResultsError(f"{self.zarr_url} has {len(shape)} dimension(s)")
        chosen = {"c": channel, "t": t, "z": self.size("z", level) // 2 if z is None else z}
        index: list[Any] = []
        for position, size in enumerate(shape[:-2]):
            name = self.axes[position] if len(self.axes) == len(shape) else ""
            wanted = chosen.get(name, 0)
            if not 0 <= wanted < size:
                raise ResultsError(f"{self.zarr_url} has {size} plane(s) along {name}")
            index.append(wanted)
        return self.array(level)[(*index, slice(None), slice(None))]


def open_image(zarr_url: str) -> OmeZarrImage:
    """The OME-Zarr image at `zarr_url` (its metadata; pixels are read when indexed)."""
    group = _open_group(zarr_url)
    attributes = _ome_attributes(group)
    multiscales = attributes.get("multiscales")
    if not multiscales or not multiscales[0].get("datasets"):
        raise ResultsError(f"{zarr_url} is not an OME-Zarr image (no multiscales)")
    scale = multiscales[0]
    axes = [a["name"] if isinstance(a, Mapping) else str(a) for a in scale.get("axes", [])]
    paths = [str(dataset["path"]) for dataset in scale["datasets"]]
    shapes = []
    for path in paths:
        try:
            shapes.append(tuple(group[path].shape))
        except KeyError:
            raise ResultsError(f"{zarr_url} has no array {path!r}") from None
    omero = attributes.get("omero") or {}
    channels = [
        str(channel.get("label") or channel.get("wavelength_id") or index)
        for index, channel in enumerate(omero.get("channels", []))
    ]
    if not channels and "c" in axes:
        channels = [str(i) for i in range(shapes[0][axes.index("c")])]
    return OmeZarrImage(
        zarr_url=zarr_url.rstrip("/"),
        version=str(scale.get("version") or attributes.get("version") or "0.4"),
        axes=axes,
        level_paths=paths,
        shapes=shapes,
        channels=channels,
        _group=group,
    )


@dataclass(frozen=True)
class OmeZarrPlate:
    """An OME-Zarr plate: row and column names, and each well's image paths."""

    zarr_url: str
    rows: list[str]
    columns: list[str]
    wells: dict[tuple[int, int], list[str]]  # (row index, column index) -> image zarr_urls


def open_plate(plate_url: str) -> OmeZarrPlate:
    group = _open_group(plate_url)
    plate = _ome_attributes(group).get("plate")
    if not isinstance(plate, Mapping):
        raise ResultsError(f"{plate_url} is not an OME-Zarr plate (no plate metadata)")
    rows = [str(row["name"]) for row in plate.get("rows", [])]
    columns = [str(column["name"]) for column in plate.get("columns", [])]
    root = plate_url.rstrip("/")
    wells: dict[tuple[int, int], list[str]] = {}
    for well in plate.get("wells", []):
        path = str(well["path"])
        row_name, _, column_name = path.partition("/")
        row = int(well["rowIndex"]) if "rowIndex" in well else rows.index(row_name)
        column = int(well["columnIndex"]) if "columnIndex" in well else columns.index(column_name)
        try:
            images = _ome_attributes(group[path]).get("well", {}).get("images", [])
        except KeyError:
            images = []
        wells[(row, column)] = [f"{root}/{path}/{image['path']}" for image in images]
    return OmeZarrPlate(zarr_url=root, rows=rows, columns=columns, wells=wells)


def plate_of(zarr_url: str) -> str | None:
    """The plate an image of a plate belongs to (`<plate>.zarr/<row>/<column>/<field>`)."""
    parts = zarr_url.rstrip("/").split("/")
    if len(parts) < 4 or not parts[-4].endswith(".zarr"):
        return None
    return "/".join(parts[:-3])


# --- tables ----------------------------------------------------------------------------------


def _pandas() -> Any:
    try:
        return importlib.import_module("pandas")
    except ImportError:
        raise ResultsError(
            "reading tables needs pandas: pip install 'fractal-jupyter[results]'"
        ) from None


def list_tables(zarr_url: str) -> list[str]:
    """The names of an image's (or plate's) tables."""
    folder = Path(zarr_url) / "tables"
    if not folder.is_dir():
        return []
    listed = _ome_attributes(_open_group(str(folder))).get("tables")
    if isinstance(listed, list):
        return [str(name) for name in listed]
    return sorted(
        entry.name.removesuffix(".parquet")
        for entry in folder.iterdir()
        if not entry.name.startswith(".") and entry.name != "zarr.json"
    )


def _column(node: Any) -> Any:
    """One AnnData column: an array, or a categorical group (codes into categories)."""
    if hasattr(node, "shape"):
        return node[...]
    attributes = dict(node.attrs)
    if attributes.get("encoding-type") == "categorical":
        pandas = _pandas()
        return pandas.Categorical.from_codes(
            node["codes"][...], node["categories"][...], ordered=attributes.get("ordered", False)
        )
    raise ResultsError(f"column {node.path} of encoding {attributes.get('encoding-type')!r}")


def _dataframe_part(group: Any) -> tuple[Any, dict[str, Any]]:
    """The index and the columns (in order) of an AnnData `obs` or `var` group."""
    attributes = dict(group.attrs)
    index_name = str(attributes.get("_index", "_index"))
    index = group[index_name][...] if index_name in group else None
    order = attributes.get("column-order") or [n for n in group if n != index_name]
    return index, {str(name): _column(group[name]) for name in order}


def _read_anndata(url: str, name: str) -> DataFrame:
    pandas = _pandas()
    group = _open_group(url)
    obs_index, obs_columns = _dataframe_part(group["obs"]) if "obs" in group else (None, {})
    var_index, _ = _dataframe_part(group["var"]) if "var" in group else (None, {})
    data: dict[str, Any] = dict(obs_columns)
    if "X" in group:
        matrix = group["X"]
        if not hasattr(matrix, "shape"):
            raise ResultsError(f"table {name}: a sparse X is not supported")
        values = matrix[...]
        names = [str(v) for v in var_index] if var_index is not None else []
        names = names or [str(i) for i in range(values.shape[1])]
        for position, column in enumerate(names):
            data.setdefault(column, values[:, position])
    index = None if obs_index is None else pandas.Index([str(v) for v in obs_index])
    frame = pandas.DataFrame(data, index=index)
    frame.attrs.update({k: v for k, v in dict(group.attrs).items() if isinstance(k, str)})
    return frame


def read_table(zarr_url: str, name: str) -> DataFrame:
    """Table `name` of an image or plate as a DataFrame (its attributes, e.g. `type`,
    `region`, `instance_key`, in `frame.attrs`)."""
    folder = Path(zarr_url) / "tables"
    parquet = [folder / f"{name}.parquet", folder / name / "table.parquet"]
    for path in parquet:
        if path.exists():
            try:
                frame: DataFrame = _pandas().read_parquet(path)
            except ImportError as error:
                raise ResultsError(
                    f"reading the parquet table {path} needs pyarrow: {error}"
                ) from None
            return frame
    if not (folder / name).is_dir():
        known = ", ".join(list_tables(zarr_url)) or "none"
        raise ResultsError(f"{zarr_url} has no table {name!r} (its tables: {known})")
    return _read_anndata(str(folder / name), name)


def read_tables(zarr_urls: Sequence[str], name: str) -> DataFrame:
    """Table `name` of each image that has one, as one DataFrame with a `zarr_url` column."""
    pandas = _pandas()
    frames = []
    for zarr_url in zarr_urls:
        if name in list_tables(zarr_url):
            frame = read_table(zarr_url, name)
            frames.append(frame.assign(zarr_url=zarr_url))
    if not frames:
        return pandas.DataFrame({"zarr_url": []})
    return pandas.concat(frames)


# --- writing tables (the demo's and the tests' AnnData, as fractal-tasks-core writes it) ---


def write_table(
    zarr_url: str,
    name: str,
    features: Mapping[str, Sequence[float]],
    index: Sequence[str],
    attributes: Mapping[str, Any] | None = None,
) -> None:
    """Write an AnnData table (Zarr v2): float32 `X` with `features` as its columns, `index`
    as its `obs` names, and `name` listed in `tables/.zattrs`."""
    import numpy as np

    zarr = _zarr()
    tables = zarr.open_group(str(Path(zarr_url) / "tables"), mode="a", zarr_format=2)
    listed = list(tables.attrs.get("tables", []))
    if name not in listed:
        tables.attrs["tables"] = [*listed, name]
    table = tables.create_group(name, overwrite=True)
    table.attrs.update(
        {"encoding-type": "anndata", "encoding-version": "0.1.0", **(attributes or {})}
    )
    columns = list(features)
    matrix = (
        np.column_stack([np.asarray(features[c], dtype=np.float32) for c in columns])
        if columns
        else np.zeros((len(index), 0), dtype=np.float32)
    )
    x = table.create_array("X", shape=matrix.shape, dtype="float32")
    x[...] = matrix
    x.attrs.update({"encoding-type": "array", "encoding-version": "0.2.0"})
    for part, names in (("obs", list(index)), ("var", columns)):
        group = table.create_group(part)
        group.attrs.update(
            {
                "_index": "_index",
                "column-order": [],
                "encoding-type": "dataframe",
                "encoding-version": "0.2.0",
            }
        )
        labels = group.create_array("_index", shape=(len(names),), dtype=str)
        if names:
            labels[...] = np.array([str(n) for n in names])
        labels.attrs.update({"encoding-type": "string-array", "encoding-version": "0.2.0"})


def write_image(
    zarr_url: str,
    pixels: Any,
    *,
    levels: int = 2,
    channels: Sequence[str] | None = None,
    zarr_format: Literal[2, 3] = 2,
    chunk_side: int = 256,
    labels: Mapping[str, Any] | None = None,
) -> None:
    """Write a CZYX numpy array as an OME-Zarr image, 0.4 (Zarr v2) or 0.5 (Zarr v3), with
    `levels` resolution levels halving Y and X; `labels` (name -> ZYX integer array) as
    label images under `labels/`."""
    _write_multiscale(
        zarr_url,
        pixels,
        ["c", "z", "y", "x"],
        levels,
        zarr_format,
        chunk_side,
        {
            "omero": {
                "channels": [
                    {"label": str(label), "wavelength_id": str(label), "active": True}
                    for label in (channels or [f"C{i}" for i in range(pixels.shape[0])])
                ]
            }
        },
    )
    for name, label in (labels or {}).items():
        _write_multiscale(
            f"{zarr_url}/labels/{name}",
            label,
            ["z", "y", "x"],
            levels,
            zarr_format,
            chunk_side,
            {"image-label": {"version": _NGFF[zarr_format], "source": {"image": "../../"}}},
        )
    if labels:
        _set_ome_attributes(f"{zarr_url}/labels", zarr_format, {"labels": list(labels)})


_NGFF = {2: "0.4", 3: "0.5"}


def _set_ome_attributes(url: str, zarr_format: int, attributes: Mapping[str, Any]) -> Any:
    group = _zarr().open_group(url, mode="a", zarr_format=zarr_format)
    if zarr_format == 3:
        group.attrs["ome"] = {"version": _NGFF[3], **attributes}
    else:
        group.attrs.update(attributes)
    return group


def _write_multiscale(
    url: str,
    pixels: Any,
    axes: list[str],
    levels: int,
    zarr_format: int,
    chunk_side: int,
    extra: Mapping[str, Any],
) -> None:
    kinds = {"c": "channel", "t": "time"}
    multiscale: dict[str, Any] = {
        "axes": [
            {
                "name": a,
                "type": kinds.get(a, "space"),
                **({"unit": "micrometer"} if a in "zyx" else {}),
            }
            for a in axes
        ],
        "datasets": [
            {
                "path": str(level),
                "coordinateTransformations": [
                    {"type": "scale", "scale": [1.0] * (len(axes) - 2) + [2.0**level] * 2}
                ],
            }
            for level in range(levels)
        ],
    }
    if zarr_format == 2:
        multiscale["version"] = _NGFF[2]
    group = _set_ome_attributes(url, zarr_format, {"multiscales": [multiscale], **extra})
    for level in range(levels):
        data = pixels[..., :: 2**level, :: 2**level]
        chunks = (1,) * (data.ndim - 2) + tuple(min(chunk_side, s) for s in data.shape[-2:])
        array = group.create_array(
            str(level),
            shape=data.shape,
            dtype=data.dtype,
            chunks=chunks,
            overwrite=True,
            chunk_key_encoding={"name": "v2" if zarr_format == 2 else "default", "separator": "/"},
        )
        array[...] = data


def write_plate_metadata(
    plate_url: str, wells: Mapping[tuple[str, str], Sequence[str]], zarr_format: Literal[2, 3] = 2
) -> None:
    """The plate and well groups' metadata for the images of `wells` ((row, column) -> image
    paths in the well), written once the images are."""
    rows = sorted({row for row, _ in wells})
    columns = sorted({column for _, column in wells})
    plate: dict[str, Any] = {
        "rows": [{"name": r} for r in rows],
        "columns": [{"name": c} for c in columns],
        "wells": [
            {"path": f"{r}/{c}", "rowIndex": rows.index(r), "columnIndex": columns.index(c)}
            for r, c in sorted(wells)
        ],
    }
    if zarr_format == 2:
        plate["version"] = _NGFF[2]
    _set_ome_attributes(plate_url, zarr_format, {"plate": plate})
    for (row, column), images in wells.items():
        _set_ome_attributes(f"{plate_url}/{row}", zarr_format, {})
        well: dict[str, Any] = {"images": [{"path": p} for p in images]}
        if zarr_format == 2:
            well["version"] = _NGFF[2]
        _set_ome_attributes(f"{plate_url}/{row}/{column}", zarr_format, {"well": well})


class ResultsMixin(DataMixin):
    """`FractalClient` methods for what jobs wrote (read from the file system, not the API)."""

    def open_image(self, zarr_url: str) -> OmeZarrImage:
        """An OME-Zarr image: `.array(level)` is a lazy zarr array, `.plane(...)` one plane."""
        return open_image(zarr_url)

    def read_table(self, zarr_url: str, name: str) -> DataFrame:
        """Table `name` of an image or plate as a pandas DataFrame."""
        return read_table(zarr_url, name)

    def dataset_table(
        self,
        project_id: int,
        dataset_id: int,
        name: str,
        filters: FiltersLike | None = None,
        *,
        page_size: int = 1000,
    ) -> DataFrame:
        """Table `name` of every image of a dataset (matching `filters`) that has one, as one
        DataFrame with a `zarr_url` column."""
        zarr_urls: list[str] = []
        page = 1
        while True:
            answer = self.query_images(
                project_id, dataset_id, filters, page=page, page_size=page_size
            )
            zarr_urls += [image.zarr_url for image in answer.images]
            if page * page_size >= answer.total_count:
                break
            page += 1
        return read_tables(zarr_urls, name)
