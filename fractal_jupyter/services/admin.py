"""The admin API (`admin/v2/`, fractal-server 2.6.4): every project, job and task, regardless of
membership. The handlers let only admins in; nothing here checks the caller."""

from __future__ import annotations

import contextlib
import re
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import Job, LinkUserProject, Project, Task, User, Workflow, WorkflowTask, utc_now
from ..errors import NotFound, Unprocessable
from ..runner.launcher import JobLauncher
from ..schemas.admin import (
    AdminJobQuery,
    AdminProjectQuery,
    AdminTaskQuery,
    JobUpdate,
    ProjectUser,
    TaskInfo,
    TaskMinimal,
    TaskRelationship,
)
from ..schemas.job import JobRead
from ..schemas.project import ProjectRead
from .job import FolderArchive, job_folder_archive, job_read, stop_job_process

# Configuration values whose names say they are secret are shown as "***".
SECRET_NAME = re.compile(r"password|passwd|pwd|secret|credential|private_key$|_token$", re.I)
MASK = "***"


def _member_of(user_id: int) -> Select[int]:
    return select(LinkUserProject.project_id).where(LinkUserProject.user_id == user_id)


async def list_projects(session: AsyncSession, query: AdminProjectQuery) -> list[ProjectRead]:
    statement = select(Project).order_by(Project.id)
    if query.id is not None:
        statement = statement.where(Project.id == query.id)
    if query.user_id is not None:
        statement = statement.where(Project.id.in_(_member_of(query.user_id)))
    return [ProjectRead.model_validate(project) for project in await session.scalars(statement)]


async def list_jobs(session: AsyncSession, query: AdminJobQuery) -> list[JobRead]:
    statement = select(Job).order_by(Job.id)
    equal: dict[Any, Any] = {
        Job.id: query.id,
        Job.project_id: query.project_id,
        Job.dataset_id: query.dataset_id,
        Job.workflow_id: query.workflow_id,
        Job.status: query.status,
    }
    for column, value in equal.items():
        if value is not None:
            statement = statement.where(column == value)
    if query.user_id is not None:
        statement = statement.where(Job.project_id.in_(_member_of(query.user_id)))
    ranges: list[tuple[Any, datetime | None, datetime | None]] = [
        (Job.start_timestamp, query.start_timestamp_min, query.start_timestamp_max),
        (Job.end_timestamp, query.end_timestamp_min, query.end_timestamp_max),
    ]
    for column, low, high in ranges:
        if low is not None:
            statement = statement.where(column >= _utc(low))
        if high is not None:
            statement = statement.where(column <= _utc(high))
    return [job_read(job, log=query.log) for job in await session.scalars(statement)]


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise Unprocessable(f"The timestamp provided has no timezone information: {value}")
    return value.astimezone(UTC)


async def _job_or_404(session: AsyncSession, job_id: int) -> Job:
    job = await session.get(Job, job_id)
    if job is None:
        raise NotFound(f"Job {job_id} not found")
    return job


async def get_job(session: AsyncSession, job_id: int, show_tmp_logs: bool) -> JobRead:
    return job_read(await _job_or_404(session, job_id), live_log=show_tmp_logs)


async def mark_job_failed(
    session: AsyncSession, job_id: int, data: JobUpdate, launcher: JobLauncher
) -> JobRead:
    """Only `failed` may be set (fractal-server 2.6.4). A job still running is also asked to
    stop, so that no process keeps working for a job the database calls failed."""
    job = await _job_or_404(session, job_id)
    if data.status != "failed":
        raise Unprocessable(f"Cannot set job status to {data.status}")
    if job.status == "submitted":
        launcher.stop(job.pid)
    job.status = "failed"
    job.end_timestamp = utc_now()
    job.log = (job.log or "") + "\nThe job was marked as failed by a Fractal administrator.\n"
    await session.flush()
    return job_read(job)


async def stop_job(session: AsyncSession, job_id: int, launcher: JobLauncher) -> None:
    stop_job_process(await _job_or_404(session, job_id), launcher)


async def job_archive(session: AsyncSession, job_id: int) -> FolderArchive:
    return job_folder_archive(await _job_or_404(session, job_id))


async def query_tasks(session: AsyncSession, query: AdminTaskQuery) -> list[TaskInfo]:
    """Tasks matching the filters, each with the workflows (and their projects) that use it."""
    statement = select(Task).order_by(Task.id)
    if query.id is not None:
        statement = statement.where(Task.id == query.id)
    if query.source is not None:
        statement = statement.where(Task.source.icontains(query.source, autoescape=True))
    if query.version is not None:
        statement = statement.where(Task.version == query.version)
    if query.name is not None:
        statement = statement.where(Task.name.icontains(query.name, autoescape=True))
    if query.owner is not None:
        statement = statement.where(Task.owner == query.owner)
    if query.kind == "common":
        statement = statement.where(Task.owner.is_(None))
    elif query.kind == "users":
        statement = statement.where(Task.owner.is_not(None))
    tasks = (await session.scalars(statement.limit(query.max_number_of_results + 1))).all()
    if len(tasks) > query.max_number_of_results:
        raise Unprocessable(
            f"Too many Tasks (more than {query.max_number_of_results}). "
            "Please add more query filters."
        )
    task_ids = [task.id for task in tasks]
    uses = (
        await session.execute(
            select(WorkflowTask.task_id, Workflow.id, Workflow.name, Project.id, Project.name)
            .distinct()
            .join(Workflow, Workflow.id == WorkflowTask.workflow_id)
            .join(Project, Project.id == Workflow.project_id)
            .where(WorkflowTask.task_id.in_(task_ids))
            .order_by(WorkflowTask.task_id, Workflow.id)
        )
    ).all()
    project_ids = {row[3] for row in uses}
    members: dict[int, list[ProjectUser]] = defaultdict(list)
    for project_id, user_id, email in await session.execute(
        select(LinkUserProject.project_id, User.id, User.email)
        .join(User, User.id == LinkUserProject.user_id)
        .where(LinkUserProject.project_id.in_(project_ids))
        .order_by(User.id)
    ):
        members[project_id].append(ProjectUser(id=user_id, email=email))
    relationships: dict[int, list[TaskRelationship]] = defaultdict(list)
    for task_id, workflow_id, workflow_name, project_id, project_name in uses:
        relationships[task_id].append(
            TaskRelationship(
                workflow_id=workflow_id,
                workflow_name=workflow_name,
                project_id=project_id,
                project_name=project_name,
                project_users=members[project_id],
            )
        )
    return [
        TaskInfo(task=TaskMinimal.model_validate(task), relationships=relationships[task.id])
        for task in tasks
    ]


def sanitized_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """The server's configuration for `GET api/settings/`: secrets masked, a database URL
    without its password, sets as sorted lists."""
    shown: dict[str, Any] = {}
    for name, value in sorted(values.items()):
        if SECRET_NAME.search(name):
            value = MASK
        elif isinstance(value, str) and "://" in value:
            with contextlib.suppress(ArgumentError):
                value = make_url(value).render_as_string(hide_password=True)
        elif isinstance(value, set | frozenset):
            value = sorted(value)
        shown[name] = value
    return shown
