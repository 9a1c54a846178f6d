from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import Dataset
from ..errors import Unprocessable
from ..schemas.dataset import (
    DatasetCreate,
    DatasetExport,
    DatasetImport,
    DatasetRead,
    DatasetUpdate,
)
from .access import get_dataset_for_member, get_project_for_member, member_project_ids
from .images import count_images, list_all_images
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
    dataset = Dataset(
        project_id=project_id,
        name=data.name,
        zarr_dir=data.zarr_dir,
        filters=data.filters.model_dump(),
    )
    session.add(dataset)
    await session.flush()
    return dataset


async def create_dataset(
    session: AsyncSession, user: CurrentUser, project_id: int, data: DatasetCreate
) -> Dataset:
    await get_project_for_member(session, project_id, user)
    dataset = await new_dataset(session, project_id, data)
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
    session: AsyncSession, user: CurrentUser, project_id: int, dataset_id: int
) -> DatasetExport:
    dataset = await get_dataset_for_member(session, project_id, dataset_id, user)
    return DatasetExport.model_validate(
        {
            "name": dataset.name,
            "zarr_dir": dataset.zarr_dir,
            "images": await list_all_images(session, dataset),
            "filters": dataset.filters,
        }
    )
