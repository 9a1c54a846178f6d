"""Access checks shared by the resources (fractal-server's `_aux_functions`).

A project is visible to its members only: an unknown id is 404, someone else's project 403.
A child object is looked up after its project: unknown 404, belonging to another project 422.
"""

from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import Dataset, LinkUserProject, Project
from ..errors import Forbidden, NotFound, Unprocessable
from .users import CurrentUser


async def get_project_for_member(
    session: AsyncSession, project_id: int, user: CurrentUser
) -> Project:
    project = await session.get(Project, project_id)
    if project is None:
        raise NotFound("Project not found")
    link = await session.get(LinkUserProject, (project_id, user.id))
    if link is None:
        raise Forbidden(f"Not allowed on project {project_id}")
    return project


async def get_dataset_for_member(
    session: AsyncSession,
    project_id: int,
    dataset_id: int,
    user: CurrentUser,
) -> Dataset:
    await get_project_for_member(session, project_id, user)
    dataset = await session.get(Dataset, dataset_id)
    if dataset is None:
        raise NotFound("Dataset not found")
    if dataset.project_id != project_id:
        raise Unprocessable(f"Invalid project_id={project_id} for dataset_id={dataset_id}")
    return dataset


def member_project_ids(user: CurrentUser) -> Select[int]:
    """A subquery of the ids of the projects `user` is a member of."""
    return select(LinkUserProject.project_id).where(LinkUserProject.user_id == user.id)
