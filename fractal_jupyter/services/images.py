"""Images of a dataset: rows with SQL filtering, paging and per-dataset summaries.

Filters compare values as Python's `==` does (fractal-server filters in Python): 1, 1.0 and
True are equal, "1" is none of them. `match_key` maps every value to a string with exactly that
equality, and the index tables store it, so a filter is an index look-up.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import AttributeSummary, Dataset, Image, ImageAttribute, ImageType, TypeSummary
from ..errors import NotFound, Unprocessable
from ..schemas.common import Filters
from ..schemas.images import ImagePage, ImageQuery, SingleImage, SingleImageUpdate
from .access import get_dataset_for_member
from .users import CurrentUser

# Multi-row statements stay below SQLite's limit on bound parameters.
SUMMARY_ROWS_PER_STATEMENT = 1_000


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


def _dialect_insert(session: AsyncSession) -> Any:
    name = session.get_bind().dialect.name
    return postgresql.insert if name == "postgresql" else sqlite.insert


def _image_dict(image: Image) -> dict[str, Any]:
    return {
        "zarr_url": image.zarr_url,
        "origin": image.origin,
        "attributes": image.attributes,
        "types": image.types,
    }


async def _change_summaries(
    session: AsyncSession, dataset_id: int, images: Iterable[Image], sign: int
) -> None:
    """Add (`sign=1`) or remove (`sign=-1`) the given images' share of the dataset summaries."""
    attribute_counts: Counter[tuple[str, str]] = Counter()
    attribute_values: dict[tuple[str, str], Any] = {}
    type_counts: Counter[str] = Counter()
    for image in images:
        for key, value in image.attributes.items():
            summary_key = (key, match_key(value))
            attribute_counts[summary_key] += 1
            attribute_values.setdefault(summary_key, value)
        type_counts.update(image.types.keys())
    if not attribute_counts and not type_counts:
        return

    upsert = _dialect_insert(session)
    # Sorted, so that concurrent writers take row locks in one order (no deadlock).
    attribute_rows = [
        {
            "dataset_id": dataset_id,
            "key": key,
            "value_key": value_key,
            "value": attribute_values[(key, value_key)],
            "image_count": sign * count,
        }
        for (key, value_key), count in sorted(attribute_counts.items())
    ]
    type_rows = [
        {"dataset_id": dataset_id, "key": key, "image_count": sign * count}
        for key, count in sorted(type_counts.items())
    ]
    for model, rows, index in (
        (AttributeSummary, attribute_rows, ["dataset_id", "key", "value_key"]),
        (TypeSummary, type_rows, ["dataset_id", "key"]),
    ):
        for start in range(0, len(rows), SUMMARY_ROWS_PER_STATEMENT):
            statement = upsert(model).values(rows[start : start + SUMMARY_ROWS_PER_STATEMENT])
            await session.execute(
                statement.on_conflict_do_update(
                    index_elements=index,
                    set_={"image_count": model.image_count + statement.excluded.image_count},
                )
            )
        if sign < 0 and rows:
            await session.execute(
                delete(model).where(model.dataset_id == dataset_id, model.image_count <= 0)
            )


async def _write_index_rows(session: AsyncSession, images: Sequence[Image]) -> None:
    attribute_rows = [
        {"image_id": i.id, "dataset_id": i.dataset_id, "key": k, "value_key": match_key(v)}
        for i in images
        for k, v in i.attributes.items()
    ]
    type_rows = [
        {"image_id": i.id, "dataset_id": i.dataset_id, "key": k, "value": v}
        for i in images
        for k, v in i.types.items()
    ]
    if attribute_rows:
        await session.execute(insert(ImageAttribute), attribute_rows)
    if type_rows:
        await session.execute(insert(ImageType), type_rows)


async def insert_images(
    session: AsyncSession, dataset: Dataset, new_images: Sequence[SingleImage]
) -> None:
    """Store images with their index rows and summary counts (locations already checked)."""
    seen: set[str] = set()
    for new_image in new_images:
        if new_image.zarr_url in seen:
            raise Unprocessable(f"Image with zarr_url '{new_image.zarr_url}' appears twice")
        seen.add(new_image.zarr_url)
    rows = [
        Image(
            dataset_id=dataset.id,
            zarr_url=new_image.zarr_url,
            origin=new_image.origin,
            attributes=new_image.attributes,
            types=new_image.types,
        )
        for new_image in new_images
    ]
    # A zarr_url taken meanwhile by a concurrent writer (PostgreSQL) fails the unique
    # constraint here; the request then ends in a 422 and nothing is written.
    session.add_all(rows)
    await session.flush()
    await _write_index_rows(session, rows)
    await _change_summaries(session, dataset.id, rows, +1)


async def add_image(
    session: AsyncSession,
    user: CurrentUser,
    project_id: int,
    dataset_id: int,
    new_image: SingleImage,
) -> None:
    dataset = await get_dataset_for_member(session, project_id, dataset_id, user)
    check_image_location(new_image.zarr_url, dataset.zarr_dir)
    exists = await session.scalar(
        select(Image.id).where(Image.dataset_id == dataset.id, Image.zarr_url == new_image.zarr_url)
    )
    if exists is not None:
        # fractal-server 2.6.4 answers this one with a list as detail.
        raise Unprocessable(
            [f"Image with zarr_url '{new_image.zarr_url}' already in DatasetV2 {dataset.id}"]
        )
    await insert_images(session, dataset, [new_image])


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
    await _change_summaries(session, dataset.id, [image], -1)
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
        return _image_dict(image)
    await _change_summaries(session, dataset.id, [image], -1)
    await session.execute(delete(ImageAttribute).where(ImageAttribute.image_id == image.id))
    await session.execute(delete(ImageType).where(ImageType.image_id == image.id))
    if image_update.attributes is not None:
        image.attributes = image_update.attributes
    if image_update.types is not None:
        image.types = image_update.types
    await session.flush()
    await _write_index_rows(session, [image])
    await _change_summaries(session, dataset.id, [image], +1)
    return _image_dict(image)


def filter_conditions(dataset_id: int, filters: Filters) -> list[ColumnElement[bool]]:
    """SQL conditions on `Image.id` for every filter; a type missing on an image is false."""
    conditions: list[ColumnElement[bool]] = []
    for key, value in filters.attributes.items():
        if value is None:
            continue
        matching = select(ImageAttribute.image_id).where(
            ImageAttribute.dataset_id == dataset_id,
            ImageAttribute.key == key,
            ImageAttribute.value_key == match_key(value),
        )
        conditions.append(Image.id.in_(matching))
    for key, wanted in filters.types.items():
        true_on = select(ImageType.image_id).where(
            ImageType.dataset_id == dataset_id, ImageType.key == key, ImageType.value.is_(True)
        )
        conditions.append(Image.id.in_(true_on) if wanted else Image.id.not_in(true_on))
    return conditions


async def _summaries(
    session: AsyncSession, dataset_id: int, restrict: list[ColumnElement[bool]]
) -> tuple[dict[str, list[Any]], list[str]]:
    """Distinct attribute values and type keys of the dataset, or of the images in `restrict`."""
    if not restrict:
        attribute_rows = (
            await session.execute(
                select(AttributeSummary.key, AttributeSummary.value)
                .where(AttributeSummary.dataset_id == dataset_id)
                .order_by(AttributeSummary.key, AttributeSummary.value_key)
            )
        ).all()
        type_keys = (
            await session.scalars(
                select(TypeSummary.key)
                .where(TypeSummary.dataset_id == dataset_id)
                .order_by(TypeSummary.key)
            )
        ).all()
    else:
        selected = select(Image.id).where(Image.dataset_id == dataset_id, *restrict)
        present = (
            select(ImageAttribute.key, ImageAttribute.value_key)
            .where(ImageAttribute.dataset_id == dataset_id, ImageAttribute.image_id.in_(selected))
            .distinct()
            .subquery()
        )
        attribute_rows = (
            await session.execute(
                select(AttributeSummary.key, AttributeSummary.value)
                .join(
                    present,
                    (present.c.key == AttributeSummary.key)
                    & (present.c.value_key == AttributeSummary.value_key),
                )
                .where(AttributeSummary.dataset_id == dataset_id)
                .order_by(AttributeSummary.key, AttributeSummary.value_key)
            )
        ).all()
        type_keys = (
            await session.scalars(
                select(ImageType.key)
                .where(ImageType.dataset_id == dataset_id, ImageType.image_id.in_(selected))
                .distinct()
                .order_by(ImageType.key)
            )
        ).all()
    attributes: dict[str, list[Any]] = {}
    for key, value in attribute_rows:
        attributes.setdefault(key, []).append(value)
    return attributes, list(type_keys)


async def query_images(
    session: AsyncSession,
    user: CurrentUser,
    project_id: int,
    dataset_id: int,
    query: ImageQuery | None,
    *,
    page: int,
    page_size: int | None,
    use_dataset_filters: bool,
) -> ImagePage:
    """One page of the dataset's images that match `query`, with the dataset's summaries.

    As in fractal-server 2.6.4: the summaries describe the dataset (after its own filters when
    `use_dataset_filters`), not the page; a page past the end is the last page.
    """
    if page < 1:
        raise Unprocessable(f"Invalid pagination parameter: page={page} < 1")
    if page_size is not None and page_size <= 0:
        raise Unprocessable(f"Invalid pagination parameter: page_size={page_size} <= 0")
    dataset = await get_dataset_for_member(session, project_id, dataset_id, user)

    base: list[ColumnElement[bool]] = []
    if use_dataset_filters:
        base = filter_conditions(dataset.id, Filters.model_validate(dataset.filters))
    attributes, types = await _summaries(session, dataset.id, base)

    conditions = [Image.dataset_id == dataset.id, *base]
    if query is not None:
        if query.zarr_url is not None:
            conditions.append(Image.zarr_url == query.zarr_url)
        conditions.extend(filter_conditions(dataset.id, query.filters))

    total_count = await session.scalar(select(func.count()).select_from(Image).where(*conditions))
    assert total_count is not None
    if page_size is None:
        page_size = total_count
    if total_count == 0:
        return ImagePage(
            total_count=0,
            page_size=page_size,
            current_page=1,
            attributes=attributes,
            types=types,
            images=[],
        )
    last_page = -(-total_count // page_size)
    page = min(page, last_page)
    images = (await session.scalars(_page_statement(conditions, page, page_size))).all()
    return ImagePage(
        total_count=total_count,
        page_size=page_size,
        current_page=page,
        attributes=attributes,
        types=types,
        images=[SingleImage.model_construct(**_image_dict(image)) for image in images],
    )


def _page_statement(
    conditions: list[ColumnElement[bool]], page: int, page_size: int
) -> Select[Image]:
    """Images of one page: the offset is walked on the (dataset_id, id) index alone."""
    first_id = (
        select(Image.id)
        .where(*conditions)
        .order_by(Image.id)
        .offset((page - 1) * page_size)
        .limit(1)
        .scalar_subquery()
    )
    return (
        select(Image).where(*conditions, Image.id >= first_id).order_by(Image.id).limit(page_size)
    )


async def list_all_images(session: AsyncSession, dataset: Dataset) -> list[dict[str, Any]]:
    images = await session.scalars(
        select(Image).where(Image.dataset_id == dataset.id).order_by(Image.id)
    )
    return [_image_dict(image) for image in images]


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
    existing = (
        {
            image.zarr_url: image
            for image in (
                await session.scalars(
                    select(Image).where(Image.dataset_id == dataset.id, Image.zarr_url.in_(urls))
                )
            ).all()
        }
        if urls
        else {}
    )
    replaced = [existing[url] for url in {image.zarr_url for image in upserted} if url in existing]
    gone = [existing[url] for url in set(removed) if url in existing]
    await _change_summaries(session, dataset.id, [*replaced, *gone], -1)
    if gone:
        await session.execute(delete(Image).where(Image.id.in_([image.id for image in gone])))
    if replaced:
        replaced_ids = [image.id for image in replaced]
        await session.execute(
            delete(ImageAttribute).where(ImageAttribute.image_id.in_(replaced_ids))
        )
        await session.execute(delete(ImageType).where(ImageType.image_id.in_(replaced_ids)))
    new_images = []
    for image in upserted:
        row = existing.get(image.zarr_url)
        if row is None:
            new_images.append(image)
        else:
            row.attributes = image.attributes
            row.types = image.types
    await session.flush()
    await _write_index_rows(session, replaced)
    await _change_summaries(session, dataset.id, replaced, +1)
    await insert_images(session, dataset, new_images)
