"""Images of a dataset: rows with SQL filtering, paging and per-dataset summaries.

Filters compare values as Python's `==` does (fractal-server filters in Python): 1, 1.0 and
True are equal, "1" is none of them. `match_key` maps every value to a string with exactly that
equality, and the index tables store it, so a filter is an index look-up.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    Select,
    Text,
    bindparam,
    cast,
    delete,
    exists,
    func,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, Session, aliased

from ..db.bulk import (
    IDS_PER_STATEMENT,
    chunks,
    dialect_insert,
    insert_columns,
    insert_columns_numbered,
    table_of,
)
from ..db.engine import Database
from ..db.models import (
    AttributeSummary,
    Dataset,
    Image,
    ImageAttribute,
    ImageStatus,
    ImageStatusSummary,
    ImageType,
    TypeSummary,
    Workflow,
    WorkflowTask,
)
from ..errors import NotFound, Unprocessable
from ..schemas.common import Filters
from ..schemas.filters import IMAGE_STATUS_KEY, ImageFilterQuery
from ..schemas.history import RenderedStatusImagePage
from ..schemas.images import ImageQuery, RenderedImagePage, SingleImage, SingleImageUpdate
from . import image_status
from .access import get_dataset_for_member, read_dataset_filters, read_dataset_zarr_dir
from .users import CurrentUser


def match_key(value: bool | int | float | str) -> str:
    """A string equal for two values exactly when Python says `a == b`."""
    if isinstance(value, str):
        return "s:" + value
    if isinstance(value, float) and not value.is_integer():
        return f"n:{value!r}"
    return f"n:{int(value)}"


def is_inside(zarr_url: str, zarr_dir: str) -> bool:
    """True when `zarr_url` lies below `zarr_dir` as a path (not merely as a string)."""
    return zarr_url.startswith(zarr_dir.rstrip("/") + "/")


def check_image_location(zarr_url: str, zarr_dir: str) -> None:
    if zarr_url == zarr_dir:
        raise Unprocessable(
            f"`SingleImage.zarr_url` cannot be equal to `Dataset.zarr_dir`: {zarr_dir}"
        )
    if not is_inside(zarr_url, zarr_dir):
        raise Unprocessable(
            f"Cannot create image with zarr_url '{zarr_url}', which is not inside {zarr_dir}."
        )


ImageRow = dict[str, Any]  # {"zarr_url", "origin", "attributes", "types"}


def image_row(image: Image | SingleImage) -> ImageRow:
    return {
        "zarr_url": image.zarr_url,
        "origin": image.origin,
        "attributes": image.attributes,
        "types": image.types,
    }


def match_keys(values: Sequence[bool | int | float | str]) -> list[str]:
    """`match_key` of each value, computed once per distinct value (they repeat a lot).

    Values that are equal share one key by definition, so a dict of them is a fine memo.
    """
    memo = {value: match_key(value) for value in set(values)}
    return list(map(memo.__getitem__, values))


@dataclass
class SummaryCounts:
    """Images' share of a dataset's summaries, added up before it is written."""

    images: int = 0
    attributes: Counter[tuple[str, str]] = field(default_factory=Counter)
    attribute_values: dict[tuple[str, str], Any] = field(default_factory=dict)
    types: Counter[str] = field(default_factory=Counter)
    true_types: Counter[str] = field(default_factory=Counter)

    def add(self, images: Iterable[ImageRow]) -> None:
        images = list(images)
        keys, values = _entries([image["attributes"] for image in images])
        type_keys, type_values = _entries([image["types"] for image in images])
        self.add_index_rows(len(images), keys, match_keys(values), values, type_keys, type_values)

    def add_index_rows(
        self,
        images: int,
        keys: Sequence[str],
        value_keys: Sequence[str],
        values: Sequence[Any],
        type_keys: Sequence[str],
        type_values: Sequence[bool],
    ) -> None:
        """Add images given as the columns of their index rows (the loops run in C)."""
        self.images += images
        pairs = list(zip(keys, value_keys, strict=True))
        self.attributes.update(pairs)
        # Built backwards, a dict keeps the first value given for each pair.
        first_values = dict(zip(reversed(pairs), reversed(values), strict=True))
        for pair, value in first_values.items():
            self.attribute_values.setdefault(pair, value)
        self.types.update(type_keys)
        self.true_types.update(itertools.compress(type_keys, type_values))

    def merge(self, other: SummaryCounts) -> None:
        self.images += other.images
        self.attributes.update(other.attributes)
        for pair, value in other.attribute_values.items():
            self.attribute_values.setdefault(pair, value)
        self.types.update(other.types)
        self.true_types.update(other.true_types)


def _entries(dicts: Sequence[dict[str, Any]]) -> tuple[list[str], list[Any]]:
    """The keys and the values of every entry of `dicts`, in order, as two lists.

    The loops run in C; a comprehension of (key, value) pairs then split with `zip(*pairs)`
    took 0.4 s of an import of 100,000 images."""
    return (
        list(itertools.chain.from_iterable(dicts)),
        list(itertools.chain.from_iterable(map(dict.values, dicts))),
    )


def _owners(ids: Sequence[int], dicts: Sequence[dict[str, Any]]) -> list[int]:
    """For every entry of `dicts` (as `_entries` lists them), the id of its dict."""
    return list(itertools.chain.from_iterable(map(itertools.repeat, ids, map(len, dicts))))


async def _change_summaries(
    session: AsyncSession, dataset_id: int, images: Iterable[ImageRow] | SummaryCounts, sign: int
) -> None:
    await session.run_sync(change_summaries, dataset_id, images, sign)


def change_summaries(
    session: Session, dataset_id: int, images: Iterable[ImageRow] | SummaryCounts, sign: int
) -> None:
    """Add (`sign=1`) or remove (`sign=-1`) the given images' share of the dataset summaries.

    Synchronous, like the other writers of index rows, so that a small write (one image) runs
    whole in one hand-off to the database thread (`Database.write`); async callers run it
    through `AsyncSession.run_sync`."""
    if isinstance(images, SummaryCounts):
        counts = images
    else:
        counts = SummaryCounts()
        counts.add(images)
    connection = session.connection()  # Core statements: no ORM work per statement
    if counts.images:
        connection.execute(
            _CHANGE_IMAGE_COUNT, {"dataset_id": dataset_id, "change": sign * counts.images}
        )
    upsert = dialect_insert(session)
    # Sorted, so that concurrent writers take row locks in one order (no deadlock).
    attribute_rows = [
        {
            "dataset_id": dataset_id,
            "key": key,
            "value_key": value_key,
            "value": counts.attribute_values[(key, value_key)],
            "image_count": sign * count,
        }
        for (key, value_key), count in sorted(counts.attributes.items())
    ]
    type_rows = [
        {
            "dataset_id": dataset_id,
            "key": key,
            "image_count": sign * count,
            "true_count": sign * counts.true_types[key],
        }
        for key, count in sorted(counts.types.items())
    ]
    for model, rows in ((AttributeSummary, attribute_rows), (TypeSummary, type_rows)):
        if rows:
            # One statement for any number of rows (executemany), built once: building it
            # (its `excluded` columns) took longer than the rest of adding one image.
            connection.execute(_summary_upsert(model, upsert), rows)
            if sign < 0:
                connection.execute(_EMPTY_SUMMARIES[model], {"dataset_id": dataset_id})


_CHANGE_IMAGE_COUNT = (
    update(Dataset)
    .where(Dataset.id == bindparam("dataset_id"))
    .values(image_count=Dataset.image_count + bindparam("change"))
)
_EMPTY_SUMMARIES = {
    model: delete(model).where(model.dataset_id == bindparam("dataset_id"), model.image_count <= 0)
    for model in (AttributeSummary, TypeSummary)
}
# Each summary table's key columns and its counters.
_SUMMARY_COLUMNS: dict[type[AttributeSummary | TypeSummary], tuple[list[str], list[str]]] = {
    AttributeSummary: (["dataset_id", "key", "value_key"], ["image_count"]),
    TypeSummary: (["dataset_id", "key"], ["image_count", "true_count"]),
}


@functools.lru_cache(maxsize=8)
def _summary_upsert(model: type[AttributeSummary | TypeSummary], upsert: Any) -> Any:
    """INSERT a summary row, or add its counters to the existing one (`upsert`: the INSERT
    of the database's dialect)."""
    table = table_of(model)
    index, counters = _SUMMARY_COLUMNS[model]
    statement = upsert(table)
    return statement.on_conflict_do_update(
        index_elements=index,
        set_={counter: table.c[counter] + statement.excluded[counter] for counter in counters},
    )


def write_index_rows(
    session: Session, dataset_id: int, image_ids: Sequence[int], images: Sequence[ImageRow]
) -> SummaryCounts:
    """Insert the images' attribute and type index rows; the images' share of the summaries."""
    counts = SummaryCounts()
    for id_chunk, image_chunk in zip(
        chunks(image_ids, IDS_PER_STATEMENT), chunks(images, IDS_PER_STATEMENT), strict=True
    ):
        attributes = [image["attributes"] for image in image_chunk]
        keys, values = _entries(attributes)
        types = [image["types"] for image in image_chunk]
        type_keys, type_values = _entries(types)
        value_keys = match_keys(values)
        insert_columns(
            session,
            ImageAttribute,
            {
                "image_id": _owners(id_chunk, attributes),
                "dataset_id": [dataset_id] * len(keys),
                "key": keys,
                "value_key": value_keys,
            },
        )
        insert_columns(
            session,
            ImageType,
            {
                "image_id": _owners(id_chunk, types),
                "dataset_id": [dataset_id] * len(type_keys),
                "key": type_keys,
                "value": type_values,
            },
        )
        counts.add_index_rows(len(image_chunk), keys, value_keys, values, type_keys, type_values)
    return counts


def store_images(session: Session, dataset_id: int, images: Sequence[ImageRow]) -> SummaryCounts:
    """Insert images (not yet in the dataset) with their index rows; their share of the
    summaries."""
    zarr_urls = [image["zarr_url"] for image in images]
    columns = {
        "dataset_id": [dataset_id] * len(images),
        "zarr_url": zarr_urls,
        "origin": [image["origin"] for image in images],
        "attributes": [image["attributes"] for image in images],
        "types": [image["types"] for image in images],
    }

    # A zarr_url taken meanwhile by a concurrent writer (PostgreSQL) fails the unique
    # constraint here; the request then ends in a 422 and nothing is written.
    def ids_by_zarr_url() -> list[int]:
        ids_by_url: dict[str, int] = {}
        for chunk in chunks(zarr_urls, IDS_PER_STATEMENT):
            found = session.execute(
                select(Image.zarr_url, Image.id).where(
                    Image.dataset_id == dataset_id, Image.zarr_url.in_(chunk)
                )
            )
            ids_by_url.update((zarr_url, image_id) for zarr_url, image_id in found)
        return [ids_by_url[zarr_url] for zarr_url in zarr_urls]

    image_ids = insert_columns_numbered(session, Image, columns, ids_by_zarr_url)
    return write_index_rows(session, dataset_id, image_ids, images)


class ImageWriter:
    """Stores a dataset's new images chunk by chunk, in the session's transaction.

    Memory stays that of one chunk: only the zarr_urls seen so far (for the duplicate check)
    and the summary counts are kept from one chunk to the next; `finish` writes the summaries.
    Locations must be checked before.
    """

    def __init__(self, session: AsyncSession, dataset_id: int) -> None:
        self.session = session
        self.dataset_id = dataset_id
        self.seen: set[str] = set()
        self.counts = SummaryCounts()

    def first_duplicate(self, images: Iterable[ImageRow]) -> str | None:
        """The first zarr_url that appears twice so far (the images count as seen)."""
        for image in images:
            zarr_url: str = image["zarr_url"]
            if zarr_url in self.seen:
                return zarr_url
            self.seen.add(zarr_url)
        return None

    async def write(self, images: Sequence[ImageRow]) -> None:
        """Store images that `first_duplicate` has seen, with their index rows."""
        if not images:
            return
        self.counts.merge(await self.session.run_sync(store_images, self.dataset_id, images))

    async def finish(self) -> None:
        await _change_summaries(self.session, self.dataset_id, self.counts, +1)


# Images written per round trip by `insert_images`.
INSERT_CHUNK_IMAGES = 5_000


async def insert_images(
    session: AsyncSession, dataset: Dataset, new_images: Sequence[SingleImage]
) -> None:
    """Store images with their index rows and summary counts (locations already checked).

    Plain multi-row INSERTs, no ORM objects, a chunk at a time.
    """
    writer = ImageWriter(session, dataset.id)
    rows = list(map(image_row, new_images))
    duplicate = writer.first_duplicate(rows)
    if duplicate is not None:
        raise Unprocessable(f"Image with zarr_url '{duplicate}' appears twice")
    for chunk in chunks(rows, INSERT_CHUNK_IMAGES):
        await writer.write(chunk)
    await writer.finish()


async def add_image(
    database: Database,
    user: CurrentUser,
    project_id: int,
    dataset_id: int,
    new_image: SingleImage,
) -> None:
    """Add one image: the checks and the writes in one `Database.write`, which on SQLite is a
    single hand-off to a database thread instead of some 70 through aiosqlite (they, not
    SQLite, were most of the time of the request)."""
    await database.write(functools.partial(_add_one_image, project_id, dataset_id, user, new_image))


_IMAGE_ID_BY_URL = select(Image.id).where(
    Image.dataset_id == bindparam("dataset_id"), Image.zarr_url == bindparam("zarr_url")
)


def _add_one_image(
    project_id: int, dataset_id: int, user: CurrentUser, new_image: SingleImage, session: Session
) -> None:
    # Core statements on the session's connection: the ORM's handling of each statement
    # cost more than SQLite's work for it.
    connection = session.connection()
    zarr_dir = read_dataset_zarr_dir(connection, project_id, dataset_id, user)
    check_image_location(new_image.zarr_url, zarr_dir)
    exists = connection.scalar(
        _IMAGE_ID_BY_URL, {"dataset_id": dataset_id, "zarr_url": new_image.zarr_url}
    )
    if exists is not None:
        # fractal-server 2.6.4 answers this one with a list as detail.
        raise Unprocessable(
            [f"Image with zarr_url '{new_image.zarr_url}' already in DatasetV2 {dataset_id}"]
        )
    counts = store_images(session, dataset_id, [image_row(new_image)])
    change_summaries(session, dataset_id, counts, +1)


async def _get_image(session: AsyncSession, dataset: Dataset, zarr_url: str) -> Image:
    image = await session.scalar(
        select(Image).where(Image.dataset_id == dataset.id, Image.zarr_url == zarr_url)
    )
    if image is None:
        raise NotFound(f"No image with zarr_url '{zarr_url}' in DatasetV2 {dataset.id}.")
    return image


async def delete_image(
    session: AsyncSession, user: CurrentUser, project_id: int, dataset_id: int, zarr_url: str
) -> None:
    dataset = await get_dataset_for_member(session, project_id, dataset_id, user)
    image = await _get_image(session, dataset, zarr_url)
    await _change_summaries(session, dataset.id, [image_row(image)], -1)
    await image_status.forget(session, [image.id])
    await session.execute(delete(Image).where(Image.id == image.id))


async def update_image(
    session: AsyncSession,
    user: CurrentUser,
    project_id: int,
    dataset_id: int,
    image_update: SingleImageUpdate,
) -> dict[str, Any]:
    """Replace an image's attributes and/or types (each given dict replaces the stored one)."""
    dataset = await get_dataset_for_member(session, project_id, dataset_id, user)
    image = await _get_image(session, dataset, image_update.zarr_url)
    if image_update.attributes is None and image_update.types is None:
        return image_row(image)
    await _replace_images(session, dataset.id, {image.id: image}, [image_update])
    return image_row(image)


async def _replace_images(
    session: AsyncSession,
    dataset_id: int,
    stored: dict[int, Image],
    replacements: Sequence[SingleImage | SingleImageUpdate],
) -> None:
    """Give stored images new attributes and/or types, with their index rows and summaries."""
    by_url = {image.zarr_url: image for image in stored.values()}
    await _change_summaries(session, dataset_id, [image_row(i) for i in stored.values()], -1)
    ids = list(stored)
    for chunk in chunks(ids, IDS_PER_STATEMENT):
        await session.execute(delete(ImageAttribute).where(ImageAttribute.image_id.in_(chunk)))
        await session.execute(delete(ImageType).where(ImageType.image_id.in_(chunk)))
    for replacement in replacements:
        image = by_url[replacement.zarr_url]
        if replacement.attributes is not None:
            image.attributes = replacement.attributes
        if replacement.types is not None:
            image.types = replacement.types
    await session.flush()
    rows = [image_row(stored[image_id]) for image_id in ids]
    counts = await session.run_sync(write_index_rows, dataset_id, ids, rows)
    await _change_summaries(session, dataset_id, counts, +1)


@dataclass(frozen=True)
class _MatchingStatements:
    """The statements of one shape of filters, with bound parameters for every value."""

    ids: Select[int]
    id_column: InstrumentedAttribute[int]
    count: Select[Any]
    # By "walk from the end": (zarr_url, origin, attributes JSON, types JSON[, status]) rows.
    pages: dict[bool, Select[Any]]


@dataclass(frozen=True)
class StatusFilter:
    """Images by their latest status for a workflow task (`image_status`); `unset` is an
    image without a status for it. `statuses` empty: no condition, only the status column."""

    workflowtask_id: int
    statuses: frozenset[str] = frozenset()


# (key, value keys): an image matches when it has one of the values (OR within a key).
AttributeCondition = tuple[str, Sequence[str]]


def attribute_conditions(filter_sets: Sequence[Filters]) -> list[AttributeCondition]:
    """fractal-server 2.6.4 filters as conditions: one value per key, None matches all."""
    return [
        (key, [match_key(value)])
        for filters in filter_sets
        for key, value in filters.attributes.items()
        if value is not None
    ]


def list_conditions(attribute_filters: Mapping[str, Sequence[Any]]) -> list[AttributeCondition]:
    """fractal-server 2.11+ filters ({key: [values]}) as conditions: one of the values."""
    return [
        (key, [match_key(value) for value in dict.fromkeys(values)])
        for key, values in attribute_filters.items()
    ]


@dataclass(frozen=True)
class MatchingImages:
    """The ids of a dataset's images that match some filters, as one indexed SQL query.

    The most selective kind of condition drives the query: a zarr_url, else a single-status
    filter (an index range on `image_status`), else the first single-value attribute or
    true-type filter (an index range on `image_attribute` / `image_type`), all already in id
    order, else the dataset's own index. Further conditions are per-row look-ups on the
    index tables' primary keys. So a page is read from the index, without sorting the matches.
    The statements depend only on the shape of the filters (how many of each kind), so they
    are built once per shape, and the values are bound parameters (`parameters`).
    """

    statements: _MatchingStatements
    parameters: dict[str, Any]

    @property
    def ids(self) -> Select[int]:
        return self.statements.ids

    @classmethod
    def build(
        cls,
        dataset_id: int,
        filter_sets: Sequence[Filters],
        zarr_url: str | None = None,
        *,
        attributes: Sequence[AttributeCondition] = (),
        status: StatusFilter | None = None,
    ) -> MatchingImages:
        conditions = [*attribute_conditions(filter_sets), *attributes]
        types = [(key, wanted) for filters in filter_sets for key, wanted in filters.types.items()]
        true_types = [key for key, wanted in types if wanted]
        false_types = [key for key, wanted in types if not wanted]
        parameters: dict[str, Any] = {"dataset_id": dataset_id, "zarr_url": zarr_url}
        for index, (key, value_keys) in enumerate(conditions):
            parameters[f"attribute_{index}"] = key
            parameters[f"value_{index}"] = value_keys[0] if len(value_keys) == 1 else value_keys
        parameters.update({f"true_{index}": key for index, key in enumerate(true_types)})
        parameters.update({f"false_{index}": key for index, key in enumerate(false_types)})
        status_shape: tuple[int, bool] | None = None
        if status is not None:
            set_statuses = sorted(status.statuses - {"unset"})
            status_shape = (len(set_statuses), "unset" in status.statuses)
            parameters["workflowtask_id"] = status.workflowtask_id
            parameters.update({f"status_{i}": value for i, value in enumerate(set_statuses)})
        shape = (
            tuple(len(value_keys) for _key, value_keys in conditions),
            len(true_types),
            len(false_types),
            zarr_url is not None,
            status_shape,
        )
        return cls(_matching_statements(*shape), parameters)

    def count(self) -> Select[Any]:
        return self.statements.count

    def page(self, first: int, size: int, total: int) -> tuple[Select[Any], dict[str, Any]]:
        """Matches number `first` to `first + size - 1` (0-based) of `total`, in id order.

        SQLite and PostgreSQL reach an offset by stepping through the index, so a page in the
        second half is read by walking the index backwards from the end.
        """
        size = max(0, min(size, total - first))
        from_end = total - first - size
        backwards = from_end < first
        bounds = {"page_limit": size, "page_offset": from_end if backwards else first}
        return self.statements.pages[backwards], {**self.parameters, **bounds}


@functools.lru_cache(maxsize=64)
def _matching_statements(
    attribute_sizes: tuple[int, ...],
    true_types: int,
    false_types: int,
    by_zarr_url: bool,
    status_shape: tuple[int, bool] | None,
) -> _MatchingStatements:
    """The statements of one shape: attribute conditions by number of values, type filters,
    a zarr_url, and a status filter as (number of set statuses, whether `unset` is one)."""
    dataset_id: BindParameter[int] = bindparam("dataset_id")
    attribute_keys: list[tuple[BindParameter[str], BindParameter[Any], int]] = [
        (bindparam(f"attribute_{index}"), bindparam(f"value_{index}", expanding=size > 1), size)
        for index, size in enumerate(attribute_sizes)
    ]
    true_keys: list[BindParameter[str]] = [bindparam(f"true_{i}") for i in range(true_types)]
    false_keys: list[BindParameter[str]] = [bindparam(f"false_{i}") for i in range(false_types)]
    total = None
    # A status filter without values only adds the status column: the plain query's total.
    if status_shape in (None, (0, False)) and all(size == 1 for size in attribute_sizes):
        total = _total_from_summary(
            [(key, value) for key, value, _size in attribute_keys],
            true_keys,
            false_keys,
            by_zarr_url,
        )
    workflowtask_id: BindParameter[int] = bindparam("workflowtask_id")
    statuses: list[BindParameter[str]] = []
    with_unset = False
    if status_shape is not None:
        statuses = [bindparam(f"status_{i}") for i in range(status_shape[0])]
        with_unset = status_shape[1]
    only_status = not (attribute_sizes or true_types or false_types or by_zarr_url)
    if only_status and (statuses or with_unset):
        total = _total_from_status_summary(workflowtask_id, statuses, with_unset)
    single_value = [index for index, (_k, _v, size) in enumerate(attribute_keys) if size == 1]

    ids: Select[int]
    id_column: InstrumentedAttribute[int]
    if not by_zarr_url and len(statuses) == 1 and not with_unset:
        ids = select(ImageStatus.image_id).where(
            ImageStatus.dataset_id == dataset_id,
            ImageStatus.workflowtask_id == workflowtask_id,
            ImageStatus.status == statuses.pop(0),
        )
        id_column = ImageStatus.image_id
    elif not by_zarr_url and single_value:
        key, value_key, _size = attribute_keys.pop(single_value[0])
        ids = select(ImageAttribute.image_id).where(
            ImageAttribute.dataset_id == dataset_id,
            ImageAttribute.key == key,
            ImageAttribute.value_key == value_key,
        )
        id_column = ImageAttribute.image_id
    elif not by_zarr_url and true_keys:
        ids = select(ImageType.image_id).where(
            ImageType.dataset_id == dataset_id,
            ImageType.key == true_keys.pop(0),
            # `=`, not `IS`: an equality keeps the index's image_id order (no sort).
            ImageType.value == true(),
        )
        id_column = ImageType.image_id
    else:
        ids = select(Image.id).where(Image.dataset_id == dataset_id)
        if by_zarr_url:
            ids = ids.where(Image.zarr_url == bindparam("zarr_url"))
        id_column = Image.id
    for key, value_key, size in attribute_keys:
        other = aliased(ImageAttribute)
        matches_value = other.value_key.in_(value_key) if size > 1 else other.value_key == value_key
        ids = ids.where(
            exists().where(other.image_id == id_column, other.key == key, matches_value)
        )
    for key, wanted in [(key, True) for key in true_keys] + [(k, False) for k in false_keys]:
        other_type = aliased(ImageType)
        is_true = exists().where(
            other_type.image_id == id_column,
            other_type.key == key,
            other_type.value.is_(True),
        )
        ids = ids.where(is_true if wanted else ~is_true)
    if statuses or with_unset:
        ids = ids.where(_status_condition(id_column, workflowtask_id, statuses, with_unset))
    count = total if total is not None else select(func.count()).select_from(ids.subquery())
    pages = {}
    for backwards in (False, True):
        order = id_column.desc() if backwards else id_column
        selected = (
            ids.order_by(order)
            .limit(bindparam("page_limit"))
            .offset(bindparam("page_offset"))
            .subquery()
        )
        # Attributes and types as the JSON texts stored: the answer embeds them as they are.
        columns: list[Any] = [
            Image.zarr_url,
            Image.origin,
            cast(Image.attributes, Text),
            cast(Image.types, Text),
        ]
        page = select(*columns).join(selected, Image.id == selected.c[0])
        if status_shape is not None:
            page = page.add_columns(func.coalesce(ImageStatus.status, "unset")).outerjoin(
                ImageStatus,
                (ImageStatus.image_id == Image.id)
                & (ImageStatus.workflowtask_id == workflowtask_id),
            )
        pages[backwards] = page.order_by(Image.id)
    return _MatchingStatements(ids, id_column, count, pages)


def _total_from_status_summary(
    workflowtask_id: BindParameter[int], statuses: list[BindParameter[str]], with_unset: bool
) -> Select[Any]:
    """With a status filter alone, the total is read from `image_status_summary`."""
    dataset_id: BindParameter[int] = bindparam("dataset_id")

    def counted(*where: ColumnElement[bool]) -> Any:
        return (
            select(func.coalesce(func.sum(ImageStatusSummary.image_count), 0))
            .where(
                ImageStatusSummary.dataset_id == dataset_id,
                ImageStatusSummary.workflowtask_id == workflowtask_id,
                *where,
            )
            .scalar_subquery()
        )

    total: Any = counted(ImageStatusSummary.status.in_(statuses)) if statuses else 0
    if with_unset:
        total = total + Dataset.image_count - counted()
    return select(total).select_from(Dataset).where(Dataset.id == dataset_id)


def _status_condition(
    id_column: InstrumentedAttribute[int],
    workflowtask_id: BindParameter[int],
    statuses: list[BindParameter[str]],
    with_unset: bool,
) -> Any:
    """The image has one of `statuses` for the workflow task, or (`with_unset`) none."""
    status_row = aliased(ImageStatus)
    conditions: list[ColumnElement[bool]] = []
    if statuses:
        conditions.append(
            exists().where(
                status_row.image_id == id_column,
                status_row.workflowtask_id == workflowtask_id,
                status_row.status.in_(statuses),
            )
        )
    if with_unset:
        any_status = aliased(ImageStatus)
        conditions.append(
            ~exists().where(
                any_status.image_id == id_column, any_status.workflowtask_id == workflowtask_id
            )
        )
    return or_(*conditions)


def _total_from_summary(
    attributes: list[tuple[BindParameter[str], BindParameter[str]]],
    true_types: list[BindParameter[str]],
    false_types: list[BindParameter[str]],
    by_zarr_url: bool,
) -> Select[Any] | None:
    """With no filter or a single one, the total is read from the summaries."""
    if by_zarr_url or len(attributes) + len(true_types) + len(false_types) > 1:
        return None
    dataset_id: BindParameter[int] = bindparam("dataset_id")
    if attributes:
        key, value_key = attributes[0]
        return select(AttributeSummary.image_count).where(
            AttributeSummary.dataset_id == dataset_id,
            AttributeSummary.key == key,
            AttributeSummary.value_key == value_key,
        )
    dataset_total = select(Dataset.image_count).where(Dataset.id == dataset_id)
    if not true_types and not false_types:
        return dataset_total
    key = (true_types or false_types)[0]
    true_total = select(TypeSummary.true_count).where(
        TypeSummary.dataset_id == dataset_id, TypeSummary.key == key
    )
    if true_types:
        return true_total
    return select(Dataset.image_count - func.coalesce(true_total.scalar_subquery(), 0)).where(
        Dataset.id == dataset_id
    )


# The summaries of a whole dataset, built once (bound parameter `dataset_id`): every image
# query reads them, and SQLAlchemy then reuses their compiled form without rebuilding them.
_DATASET_ATTRIBUTE_VALUES = (
    select(AttributeSummary.key, cast(AttributeSummary.value, Text))
    .where(AttributeSummary.dataset_id == bindparam("dataset_id"))
    .order_by(AttributeSummary.key, AttributeSummary.value_key)
)
_DATASET_TYPE_KEYS = (
    select(TypeSummary.key)
    .where(TypeSummary.dataset_id == bindparam("dataset_id"))
    .order_by(TypeSummary.key)
)


def _summaries(
    connection: Connection, dataset_id: int, restrict: MatchingImages | None
) -> tuple[list[tuple[str, str]], list[str]]:
    """(key, JSON value) pairs and type keys of the dataset, or of the `restrict` images."""
    if restrict is None:
        parameters = {"dataset_id": dataset_id}
        attribute_rows = connection.execute(_DATASET_ATTRIBUTE_VALUES, parameters).all()
        type_keys = connection.scalars(_DATASET_TYPE_KEYS, parameters).all()
    else:
        selected = restrict.ids.subquery()
        present = (
            select(ImageAttribute.key, ImageAttribute.value_key)
            .where(
                ImageAttribute.dataset_id == dataset_id,
                ImageAttribute.image_id.in_(select(selected.c[0])),
            )
            .distinct()
            .subquery()
        )
        attribute_rows = connection.execute(
            select(AttributeSummary.key, cast(AttributeSummary.value, Text))
            .join(
                present,
                (present.c.key == AttributeSummary.key)
                & (present.c.value_key == AttributeSummary.value_key),
            )
            .where(AttributeSummary.dataset_id == dataset_id)
            .order_by(AttributeSummary.key, AttributeSummary.value_key),
            restrict.parameters,
        ).all()
        type_keys = connection.scalars(
            select(ImageType.key)
            .where(
                ImageType.dataset_id == dataset_id,
                ImageType.image_id.in_(select(selected.c[0])),
            )
            .distinct()
            .order_by(ImageType.key),
            restrict.parameters,
        ).all()
    return [(key, value) for key, value in attribute_rows], list(type_keys)


def check_pagination(page: int, page_size: int | None) -> None:
    if page < 1:
        raise Unprocessable(f"Invalid pagination parameter: page={page} < 1")
    if page_size is not None and page_size <= 0:
        raise Unprocessable(f"Invalid pagination parameter: page_size={page_size} <= 0")


async def query_images(
    database: Database,
    user: CurrentUser,
    project_id: int,
    dataset_id: int,
    query: ImageQuery | None,
    *,
    page: int,
    page_size: int | None,
    use_dataset_filters: bool,
) -> RenderedImagePage:
    """One page of the dataset's images that match `query`, with the dataset's summaries.

    As in fractal-server 2.6.4: the summaries describe the dataset (after its own filters when
    `use_dataset_filters`), not the page; a page past the end is the last page. The look-ups
    run as one read of the database (`Database.read`): one snapshot, one thread hand-off.
    """
    check_pagination(page, page_size)
    return await database.read(
        functools.partial(
            _read_page,
            user=user,
            project_id=project_id,
            dataset_id=dataset_id,
            query=query,
            page=page,
            page_size=page_size,
            use_dataset_filters=use_dataset_filters,
        )
    )


def _read_page(
    connection: Connection,
    *,
    user: CurrentUser,
    project_id: int,
    dataset_id: int,
    query: ImageQuery | None,
    page: int,
    page_size: int | None,
    use_dataset_filters: bool,
) -> RenderedImagePage:
    stored_filters = read_dataset_filters(connection, project_id, dataset_id, user)
    filter_sets = []
    if use_dataset_filters:
        dataset_filters = Filters.model_validate(stored_filters)
        if dataset_filters.attributes or dataset_filters.types:
            filter_sets.append(dataset_filters)
    in_dataset = MatchingImages.build(dataset_id, filter_sets) if filter_sets else None
    attributes, types = _summaries(connection, dataset_id, in_dataset)

    zarr_url = None
    conditions: list[AttributeCondition] = []
    if query is not None:
        zarr_url = query.zarr_url
        filter_sets += [query.filters, Filters(types=query.type_filters)]
        conditions = list_conditions(query.attribute_filters)
    matching = MatchingImages.build(dataset_id, filter_sets, zarr_url, attributes=conditions)
    total_count, page, page_size, rows = _page_rows(connection, matching, page, page_size)
    return RenderedImagePage(
        total_count=total_count,
        page_size=page_size,
        current_page=page,
        attribute_values=attributes,
        types=types,
        images=rows,
    )


async def query_status_images(
    database: Database,
    user: CurrentUser,
    project_id: int,
    dataset_id: int,
    workflowtask_id: int,
    query: ImageFilterQuery,
    *,
    page: int,
    page_size: int | None,
    include_warnings: bool,
) -> RenderedStatusImagePage:
    """`query_images` with each image's status for a workflow task as the attribute
    `IMAGE_STATUS_KEY` (done, failed, submitted or unset), filtered and summarised like one."""
    check_pagination(page, page_size)

    def read_status_page(connection: Connection) -> RenderedStatusImagePage:
        read_dataset_filters(connection, project_id, dataset_id, user)
        check_workflow_task_in_project(connection, project_id, workflowtask_id)
        attributes, types = _summaries(connection, dataset_id, None)
        attributes += [
            (IMAGE_STATUS_KEY, json.dumps(status))
            for status in _status_values(connection, dataset_id, workflowtask_id)
        ]
        matching = matching_images(dataset_id, workflowtask_id, query)
        total_count, current_page, size, rows = _page_rows(connection, matching, page, page_size)
        return RenderedStatusImagePage(
            total_count=total_count,
            page_size=size,
            current_page=current_page,
            attribute_values=attributes,
            types=types,
            images=rows,
            include_warnings=include_warnings,
        )

    return await database.read(read_status_page)


_WORKFLOW_TASK_OF_PROJECT = (
    select(WorkflowTask.id)
    .join(Workflow, Workflow.id == WorkflowTask.workflow_id)
    .where(
        WorkflowTask.id == bindparam("workflowtask_id"),
        Workflow.project_id == bindparam("project_id"),
    )
)
_STATUSES_PRESENT = select(ImageStatusSummary.status, ImageStatusSummary.image_count).where(
    ImageStatusSummary.dataset_id == bindparam("dataset_id"),
    ImageStatusSummary.workflowtask_id == bindparam("workflowtask_id"),
)
_DATASET_IMAGE_COUNT = select(Dataset.image_count).where(Dataset.id == bindparam("dataset_id"))


def check_workflow_task_in_project(
    connection: Connection, project_id: int, workflowtask_id: int
) -> None:
    found = connection.scalar(
        _WORKFLOW_TASK_OF_PROJECT,
        {"workflowtask_id": workflowtask_id, "project_id": project_id},
    )
    if found is None:
        raise NotFound(f"Workflow task {workflowtask_id} is not in project {project_id}.")


def _status_values(connection: Connection, dataset_id: int, workflowtask_id: int) -> list[str]:
    """The statuses the dataset's images have for the workflow task, `unset` included."""
    parameters = {"dataset_id": dataset_id, "workflowtask_id": workflowtask_id}
    counts: dict[str, int] = {
        status: count for status, count in connection.execute(_STATUSES_PRESENT, parameters)
    }
    total = connection.scalar(_DATASET_IMAGE_COUNT, parameters) or 0
    if sum(counts.values()) < total:
        counts["unset"] = total - sum(counts.values())
    return sorted(counts)


def matching_images(
    dataset_id: int, workflowtask_id: int | None, query: ImageFilterQuery
) -> MatchingImages:
    """The images matching 2.11+ filters; the status key needs a workflow task."""
    conditions = list_conditions(
        {key: values for key, values in query.attribute_filters.items() if key != IMAGE_STATUS_KEY}
    )
    status = None
    if workflowtask_id is not None:
        wanted = query.attribute_filters.get(IMAGE_STATUS_KEY, [])
        status = StatusFilter(workflowtask_id, frozenset(wanted))
    types = Filters(types=query.type_filters)
    return MatchingImages.build(dataset_id, [types], attributes=conditions, status=status)


def _page_rows(
    connection: Connection, matching: MatchingImages, page: int, page_size: int | None
) -> tuple[int, int, int, Sequence[Any]]:
    """(total, page, page size, rows) of a page; a page past the end is the last page."""
    total_count = connection.scalar(matching.count(), matching.parameters) or 0
    if page_size is None:
        page_size = total_count
    rows: Sequence[Any] = []
    if total_count == 0:
        page = 1
    else:
        page = min(page, -(-total_count // page_size))
        first = (page - 1) * page_size
        rows = connection.execute(*matching.page(first, page_size, total_count)).all()
    return total_count, page, page_size, rows


async def list_all_images(session: AsyncSession, dataset: Dataset) -> list[dict[str, Any]]:
    images = await session.scalars(
        select(Image).where(Image.dataset_id == dataset.id).order_by(Image.id)
    )
    return [image_row(image) for image in images]


async def count_images(session: AsyncSession, dataset: Dataset) -> int:
    count = await session.scalar(
        select(func.count()).select_from(Image).where(Image.dataset_id == dataset.id)
    )
    return count or 0


async def apply_image_changes(
    session: AsyncSession,
    dataset: Dataset,
    upserted: Sequence[SingleImage],
    removed: Sequence[str],
) -> None:
    """Apply a job's delta: images created or replaced by zarr_url, images removed.

    Only the images a task touched are written, so edits a user made meanwhile to other images
    of the dataset are kept. Removing an image that is gone already is not an error.
    """
    urls = [image.zarr_url for image in upserted] + list(removed)
    existing: dict[str, Image] = {}
    for chunk in chunks(urls, IDS_PER_STATEMENT):
        found = await session.scalars(
            select(Image).where(Image.dataset_id == dataset.id, Image.zarr_url.in_(chunk))
        )
        existing.update((image.zarr_url, image) for image in found)
    gone = [existing[url] for url in dict.fromkeys(removed) if url in existing]
    if gone:
        await _change_summaries(session, dataset.id, [image_row(image) for image in gone], -1)
        await image_status.forget(session, [image.id for image in gone])
        for id_chunk in chunks([image.id for image in gone], IDS_PER_STATEMENT):
            await session.execute(delete(Image).where(Image.id.in_(id_chunk)))
    replacements = [image for image in upserted if image.zarr_url in existing]
    if replacements:
        stored = {existing[image.zarr_url].id: existing[image.zarr_url] for image in replacements}
        await _replace_images(session, dataset.id, stored, replacements)
    await insert_images(
        session, dataset, [image for image in upserted if image.zarr_url not in existing]
    )
