"""Access checks shared by the resources (fractal-server's `_aux_functions`).

A project is visible to its members only: an unknown id is 404, someone else's project 403.
A child object is looked up after its project: unknown 404, belonging to another project 422.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, Select, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from ..db.models import Dataset, LinkUserProject, Project, Workflow, WorkflowTask
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
    dataset: Dataset = await session.run_sync(dataset_for_member, project_id, dataset_id, user)
    return dataset


def dataset_for_member(
    session: Session, project_id: int, dataset_id: int, user: CurrentUser
) -> Dataset:
    """`get_dataset_for_member` in a synchronous session (for `Database.write`)."""
    found = session.execute(_DATASET_FOR_MEMBER, _parameters(project_id, dataset_id, user))
    dataset: Dataset = _checked_dataset(found.first(), project_id, dataset_id)
    return dataset


def read_dataset_filters(
    connection: Connection, project_id: int, dataset_id: int, user: CurrentUser
) -> dict[str, Any]:
    """The dataset's filters, after `get_dataset_for_member`'s checks (for `Database.read`)."""
    filters: dict[str, Any] = _read_for_member(
        connection, _FILTERS_FOR_MEMBER, project_id, dataset_id, user
    )
    return filters


def read_dataset_zarr_dir(
    connection: Connection, project_id: int, dataset_id: int, user: CurrentUser
) -> str:
    """The dataset's zarr_dir, after `get_dataset_for_member`'s checks (no ORM object: this
    runs on every image added)."""
    zarr_dir: str = _read_for_member(connection, _ZARR_DIR_FOR_MEMBER, project_id, dataset_id, user)
    return zarr_dir


def _read_for_member(
    connection: Connection,
    statement: Select[Any, Any, Any],
    project_id: int,
    dataset_id: int,
    user: CurrentUser,
) -> Any:
    found = connection.execute(statement, _parameters(project_id, dataset_id, user))
    return _checked_dataset(found.first(), project_id, dataset_id)


def _parameters(project_id: int, dataset_id: int, user: CurrentUser) -> dict[str, int]:
    return {"project_id": project_id, "dataset_id": dataset_id, "user_id": user.id}


def _dataset_for_member(wanted: Any) -> Select[Any, Any, Any]:
    """The caller's membership, the dataset's project and `wanted` (of the dataset).

    Built once, with bound parameters `project_id`, `dataset_id` and `user_id`: every image
    request runs it, and SQLAlchemy then reuses its compiled form without rebuilding it.
    """
    return (
        select(LinkUserProject.user_id, Dataset.project_id, wanted)
        .select_from(Project)
        .outerjoin(
            LinkUserProject,
            (LinkUserProject.project_id == Project.id)
            & (LinkUserProject.user_id == bindparam("user_id")),
        )
        .outerjoin(Dataset, Dataset.id == bindparam("dataset_id"))
        .where(Project.id == bindparam("project_id"))
    )


_DATASET_FOR_MEMBER = _dataset_for_member(Dataset)
_FILTERS_FOR_MEMBER = _dataset_for_member(Dataset.filters)
_ZARR_DIR_FOR_MEMBER = _dataset_for_member(Dataset.zarr_dir)


def _checked_dataset(row: Row[Any, Any, Any] | None, project_id: int, dataset_id: int) -> Any:
    if row is None:
        raise NotFound("Project not found")
    member, dataset_project_id, wanted = row
    if member is None:
        raise Forbidden(f"Not allowed on project {project_id}")
    if dataset_project_id is None:
        raise NotFound("Dataset not found")
    if dataset_project_id != project_id:
        raise Unprocessable(f"Invalid project_id={project_id} for dataset_id={dataset_id}")
    return wanted


def _membership(user: CurrentUser) -> ColumnElement[bool]:
    return (LinkUserProject.project_id == Project.id) & (LinkUserProject.user_id == user.id)


def member_project_ids(user: CurrentUser) -> Select[int]:
    """A subquery of the ids of the projects `user` is a member of."""
    return select(LinkUserProject.project_id).where(LinkUserProject.user_id == user.id)


async def get_workflow_for_member(
    session: AsyncSession, project_id: int, workflow_id: int, user: CurrentUser
) -> Workflow:
    project = await get_project_for_member(session, project_id, user)
    workflow = await session.get(Workflow, workflow_id)
    if workflow is None:
        raise NotFound("Workflow not found")
    if workflow.project_id != project.id:
        raise Unprocessable(f"Invalid project_id={project_id} for workflow_id={workflow_id}")
    return workflow


async def get_workflow_task_for_member(
    session: AsyncSession,
    project_id: int,
    workflow_id: int,
    workflow_task_id: int,
    user: CurrentUser,
) -> tuple[WorkflowTask, Workflow]:
    workflow = await get_workflow_for_member(session, project_id, workflow_id, user)
    workflow_task = await session.get(WorkflowTask, workflow_task_id)
    if workflow_task is None:
        raise NotFound("WorkflowTask not found")
    if workflow_task.workflow_id != workflow_id:
        raise Unprocessable(
            f"Invalid workflow_id={workflow_id} for workflow_task_id={workflow_task_id}"
        )
    return workflow_task, workflow


def require_server_owner(user: CurrentUser, owner: str, action: str) -> None:
    """Under JupyterHub (`owner` set) only the server's owner may run code on it.

    Jobs and task installations run as the server's OS user, so a hub admin or a user the
    owner shared the server with must not start them: they would act as the owner.
    """
    if owner and user.username != owner:
        raise Forbidden(
            f"Only {owner!r} may {action} on this server: it is {owner}'s JupyterHub server, "
            f"and what it runs runs as {owner}'s account. You are {user.username!r} (a hub "
            "admin or a user the server is shared with); use your own server."
        )
