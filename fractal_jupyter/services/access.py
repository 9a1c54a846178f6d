"""Access checks shared by the resources (fractal-server's `_aux_functions`).

A project is visible to its members only: an unknown id is 404, someone else's project 403.
A child object is looked up after its project: unknown 404, belonging to another project 422.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import Dataset, LinkUserProject, Project
from ..errors import Forbidden, NotFound, Unprocessable
from .users import CurrentUser


async def get_project_for_member(
    session: AsyncSession, project_id: int, user: CurrentUser
) -> Project:
    row = (
        await session.execute(
            select(Project, LinkUserProject.user_id)
            .outerjoin(LinkUserProject, _membership(user))
            .where(Project.id == project_id)
        )
    ).first()
    if row is None:
        raise NotFound("Project not found")
    project, member = row
    if member is None:
        raise Forbidden(f"Not allowed on project {project_id}")
    return project


async def get_dataset_for_member(
    session: AsyncSession,
    project_id: int,
    dataset_id: int,
    user: CurrentUser,
) -> Dataset:
    """The project check and the dataset look-up in one query (this runs on every image call)."""
    row = (
        await session.execute(
            select(Project.id, LinkUserProject.user_id, Dataset)
            .outerjoin(LinkUserProject, _membership(user))
            .outerjoin(Dataset, Dataset.id == dataset_id)
            .where(Project.id == project_id)
        )
    ).first()
    if row is None:
        raise NotFound("Project not found")
    _, member, dataset = row
    if member is None:
        raise Forbidden(f"Not allowed on project {project_id}")
    if dataset is None:
        raise NotFound("Dataset not found")
    if dataset.project_id != project_id:
        raise Unprocessable(f"Invalid project_id={project_id} for dataset_id={dataset_id}")
    return dataset


def _membership(user: CurrentUser) -> ColumnElement[bool]:
    return (LinkUserProject.project_id == Project.id) & (LinkUserProject.user_id == user.id)


def member_project_ids(user: CurrentUser) -> Select[int]:
    """A subquery of the ids of the projects `user` is a member of."""
    return select(LinkUserProject.project_id).where(LinkUserProject.user_id == user.id)
