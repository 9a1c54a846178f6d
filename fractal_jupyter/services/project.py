from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import LinkUserProject, Project
from ..errors import Unprocessable
from ..schemas.project import ProjectCreate, ProjectUpdate
from .access import get_project_for_member, member_project_ids
from .job import check_no_submitted_job
from .users import CurrentUser


async def list_projects(session: AsyncSession, user: CurrentUser) -> Sequence[Project]:
    statement = select(Project).where(Project.id.in_(member_project_ids(user))).order_by(Project.id)
    return (await session.scalars(statement)).all()


async def _check_name_free(session: AsyncSession, user: CurrentUser, name: str) -> None:
    """Project names are unique among a user's projects (renaming to the same name included)."""
    clash = await session.scalar(
        select(Project.id).where(Project.id.in_(member_project_ids(user)), Project.name == name)
    )
    if clash is not None:
        raise Unprocessable(f"Project name ({name}) already in use")


async def create_project(session: AsyncSession, user: CurrentUser, data: ProjectCreate) -> Project:
    await _check_name_free(session, user, data.name)
    project = Project(name=data.name)
    session.add(project)
    await session.flush()
    session.add(LinkUserProject(project_id=project.id, user_id=user.id))
    await session.flush()
    return project


async def get_project(session: AsyncSession, user: CurrentUser, project_id: int) -> Project:
    return await get_project_for_member(session, project_id, user)


async def update_project(
    session: AsyncSession, user: CurrentUser, project_id: int, data: ProjectUpdate
) -> Project:
    project = await get_project_for_member(session, project_id, user)
    if data.name is not None:
        await _check_name_free(session, user, data.name)
        project.name = data.name
    await session.flush()
    return project


async def delete_project(session: AsyncSession, user: CurrentUser, project_id: int) -> None:
    """Deletes the project with its datasets and images (the database cascades)."""
    project = await get_project_for_member(session, project_id, user)
    await check_no_submitted_job(session, f"project {project_id}", project_id=project_id)
    await session.delete(project)
    await session.flush()
