from __future__ import annotations

import asyncio
import functools
import json
import os
import re
from collections.abc import Sequence

from sqlalchemy import Connection, Text, bindparam, cast, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.engine import Database
from ..db.models import Dataset, Image, Project
from ..errors import Unprocessable
from ..schemas.common import Filters
from ..schemas.dataset import (
    DatasetCreate,
    DatasetImport,
    DatasetRead,
    DatasetUpdate,
)
from ..schemas.images import RenderedDatasetExport, render_image_rows
from .access import get_dataset_for_member, get_project_for_member, member_project_ids
from .images import count_images
from .job import check_no_submitted_job
from .users import CurrentUser


def _read_models(datasets: Sequence[Dataset], history: bool) -> list[DatasetRead]:
    models = [DatasetRead.model_validate(dataset) for dataset in datasets]
    return models if history else [model.model_copy(update={"history": []}) for model in models]


async def list_project_datasets(
    session: AsyncSession, user: CurrentUser, project_id: int, history: bool
) -> list[DatasetRead]:
    await get_project_for_member(session, project_id, user)
    datasets = (
        await session.scalars(
            select(Dataset).where(Dataset.project_id == project_id).order_by(Dataset.id)
        )
    ).all()
    return _read_models(datasets, history)


async def list_user_datasets(
    session: AsyncSession, user: CurrentUser, history: bool
) -> list[DatasetRead]:
    datasets = (
        await session.scalars(
            select(Dataset)
            .where(Dataset.project_id.in_(member_project_ids(user)))
            .order_by(Dataset.id)
        )
    ).all()
    return _read_models(datasets, history)


async def new_dataset(
    session: AsyncSession, project_id: int, data: DatasetCreate | DatasetImport
) -> Dataset:
    """The dataset row; without `zarr_dir` (2.18+), that of `default_zarr_dir` is set once
    the row has its id, by the caller."""
    dataset = Dataset(
        project_id=project_id,
        name=data.name,
        zarr_dir=data.zarr_dir or "",
        filters=data.filters.model_dump(),
    )
    session.add(dataset)
    await session.flush()
    return dataset


def _path_part(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name.strip()).strip(".") or "_"


def default_zarr_dir(
    dataset: Dataset, project: Project, data: DatasetCreate, default_project_dir: str
) -> str:
    """fractal-server 2.18+'s zarr_dir of a dataset created without one:
    `<project_dir>/<zarr_subfolder>`, the subfolder by default
    `fractal/<project id>_<project name>/<dataset id>_<dataset name>`."""
    project_dir = data.project_dir or default_project_dir
    subfolder = data.zarr_subfolder or os.path.join(
        "fractal",
        f"{project.id}_{_path_part(project.name)}",
        f"{dataset.id}_{_path_part(dataset.name)}",
    )
    return os.path.normpath(os.path.join(project_dir, subfolder))


async def create_dataset(
    session: AsyncSession,
    user: CurrentUser,
    project_id: int,
    data: DatasetCreate,
    default_project_dir: str,
) -> Dataset:
    project = await get_project_for_member(session, project_id, user)
    dataset = await new_dataset(session, project_id, data)
    if data.zarr_dir is None:
        dataset.zarr_dir = default_zarr_dir(dataset, project, data, default_project_dir)
        await session.flush()
    await session.refresh(dataset, ["project"])
    return dataset


async def get_dataset(
    session: AsyncSession, user: CurrentUser, project_id: int, dataset_id: int
) -> Dataset:
    return await get_dataset_for_member(session, project_id, dataset_id, user)


async def update_dataset(
    session: AsyncSession, user: CurrentUser, project_id: int, dataset_id: int, data: DatasetUpdate
) -> Dataset:
    dataset = await get_dataset_for_member(session, project_id, dataset_id, user)
    changes = data.model_dump(exclude_unset=True)
    if "zarr_dir" in changes and await count_images(session, dataset) > 0:
        raise Unprocessable(
            "Cannot modify `zarr_dir` because the dataset has a non-empty image list."
        )
    for key, value in changes.items():
        setattr(dataset, key, value)
    await session.flush()
    return dataset


async def delete_dataset(
    session: AsyncSession, user: CurrentUser, project_id: int, dataset_id: int
) -> None:
    dataset = await get_dataset_for_member(session, project_id, dataset_id, user)
    await check_no_submitted_job(session, f"dataset {dataset_id}", dataset_id=dataset_id)
    await session.delete(dataset)
    await session.flush()


async def export_dataset(
    session: AsyncSession, database: Database, user: CurrentUser, project_id: int, dataset_id: int
) -> RenderedDatasetExport:
    """The dataset with all its images, as the JSON texts the database stores.

    Decoding, validating and encoding 50,000 images held the event loop for 1.6 s; the rows
    are read in one `Database.read` and rendered in a worker thread (on PostgreSQL `read`
    runs on the event loop, and rendering 30,000 rows there held it for the whole export).
    """
    dataset = await get_dataset_for_member(session, project_id, dataset_id, user)
    head = (
        f'{{"name":{json.dumps(dataset.name)},"zarr_dir":{json.dumps(dataset.zarr_dir)},"images":['
    )
    tail = f'],"filters":{Filters.model_validate(dataset.filters).model_dump_json()}}}'
    rows = await database.read(functools.partial(_exported_image_rows, dataset.id))
    return await asyncio.to_thread(_render_export, head, rows, tail)


EXPORT_CHUNK_ROWS = 2_000
_EXPORTED_IMAGES = (
    select(Image.zarr_url, Image.origin, cast(Image.attributes, Text), cast(Image.types, Text))
    .where(Image.dataset_id == bindparam("dataset_id"))
    .order_by(Image.id)
)


def _exported_image_rows(
    dataset_id: int, connection: Connection
) -> Sequence[tuple[str, str | None, str, str]]:
    # In chunks: on PostgreSQL each chunk is one fetch that the event loop waits for, so
    # other requests are answered between them (30,000 rows at once held it 0.6 s).
    result = connection.execution_options(yield_per=EXPORT_CHUNK_ROWS).execute(
        _EXPORTED_IMAGES, {"dataset_id": dataset_id}
    )
    return [row for chunk in result.partitions() for row in chunk]


def _render_export(
    head: str, rows: Sequence[tuple[str, str | None, str, str]], tail: str
) -> RenderedDatasetExport:
    return RenderedDatasetExport(f"{head}{render_image_rows(rows)}{tail}".encode())
