from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import Task, Workflow
from ..errors import Unprocessable
from ..schemas.common import Filters
from ..schemas.workflow import (
    TaskExport,
    TaskImport,
    WorkflowCreate,
    WorkflowExport,
    WorkflowImport,
    WorkflowReadWithWarnings,
    WorkflowTaskCreate,
    WorkflowTaskExport,
    WorkflowUpdate,
)
from ..tasks.package import normalize_package_name
from .access import get_project_for_member, get_workflow_for_member, member_project_ids
from .job import check_no_submitted_job
from .task_package import newest, package_identity
from .task_trust import may_run, require_runnable_tasks
from .users import CurrentUser
from .workflowtask import check_arguments, check_sides, insert_workflow_task


async def _check_name_free(session: AsyncSession, project_id: int, name: str) -> None:
    clash = await session.scalar(
        select(Workflow.id).where(Workflow.project_id == project_id, Workflow.name == name)
    )
    if clash is not None:
        raise Unprocessable(
            f"Workflow with name='{name}' and project_id={project_id} already exists."
        )


async def list_project_workflows(
    session: AsyncSession, user: CurrentUser, project_id: int
) -> Sequence[Workflow]:
    await get_project_for_member(session, project_id, user)
    statement = select(Workflow).where(Workflow.project_id == project_id).order_by(Workflow.id)
    return (await session.scalars(statement)).all()


async def list_user_workflows(session: AsyncSession, user: CurrentUser) -> Sequence[Workflow]:
    statement = (
        select(Workflow)
        .where(Workflow.project_id.in_(member_project_ids(user)))
        .order_by(Workflow.id)
    )
    return (await session.scalars(statement)).all()


async def create_workflow(
    session: AsyncSession, user: CurrentUser, project_id: int, data: WorkflowCreate
) -> Workflow:
    project = await get_project_for_member(session, project_id, user)
    await _check_name_free(session, project_id, data.name)
    workflow = Workflow(name=data.name, description=data.description, project=project, task_list=[])
    session.add(workflow)
    await session.flush()
    return workflow


async def get_workflow(
    session: AsyncSession, user: CurrentUser, project_id: int, workflow_id: int
) -> Workflow:
    return await get_workflow_for_member(session, project_id, workflow_id, user)


async def update_workflow(
    session: AsyncSession,
    user: CurrentUser,
    project_id: int,
    workflow_id: int,
    data: WorkflowUpdate,
) -> Workflow:
    workflow = await get_workflow_for_member(session, project_id, workflow_id, user)
    if data.name is not None:
        await _check_name_free(session, project_id, data.name)
        workflow.name = data.name
    if "description" in data.model_fields_set:
        workflow.description = data.description  # null clears it
    new_order = data.reordered_workflowtask_ids
    if new_order is not None:
        current = [workflow_task.id for workflow_task in workflow.task_list]
        if sorted(new_order) != sorted(current):
            raise Unprocessable(
                f"`reordered_workflowtask_ids` must be a permutation of {current} "
                f"(given {new_order})"
            )
        by_id = {workflow_task.id: workflow_task for workflow_task in workflow.task_list}
        for position, workflow_task_id in enumerate(new_order):
            by_id[workflow_task_id].order = position
        workflow.task_list.sort(key=lambda workflow_task: workflow_task.order)
    await session.flush()
    return workflow


async def delete_workflow(
    session: AsyncSession, user: CurrentUser, project_id: int, workflow_id: int
) -> None:
    workflow = await get_workflow_for_member(session, project_id, workflow_id, user)
    await check_no_submitted_job(session, f"workflow {workflow_id}", workflow_id=workflow_id)
    await session.delete(workflow)
    await session.flush()


async def export_workflow(
    session: AsyncSession, user: CurrentUser, project_id: int, workflow_id: int
) -> WorkflowExport:
    """Each task named by its source (2.6.4) and by package, version and name (2.7+)."""
    workflow = await get_workflow_for_member(session, project_id, workflow_id, user)
    entries = []
    for workflow_task in workflow.task_list:
        task = workflow_task.task
        identity = package_identity(task)
        exported = TaskExport(
            source=task.source,
            pkg_name=identity.pkg_name if identity else None,
            version=identity.version if identity else None,
            name=task.name,
        )
        entries.append(
            WorkflowTaskExport(
                meta_non_parallel=workflow_task.meta_non_parallel,
                meta_parallel=workflow_task.meta_parallel,
                args_non_parallel=workflow_task.args_non_parallel,
                args_parallel=workflow_task.args_parallel,
                input_filters=Filters.model_validate(workflow_task.input_filters),
                task=exported,
            )
        )
    return WorkflowExport(name=workflow.name, description=workflow.description, task_list=entries)


@dataclass
class ImportedTask:
    task: Task
    warning: str | None = None


async def _find_by_package(
    session: AsyncSession, user: CurrentUser, named: TaskImport, admin_users: Collection[str]
) -> ImportedTask | str:
    """The task `named` by package and name among those the user may run: the named version,
    else the newest (with a warning); or why there is none."""
    assert named.pkg_name is not None and named.name is not None
    pkg_name = normalize_package_name(named.pkg_name)
    candidates = [
        (task, identity)
        for task in (await session.scalars(select(Task).where(Task.name == named.name))).all()
        if (identity := package_identity(task)) is not None
        and identity.pkg_name == pkg_name
        and may_run(task, user, admin_users)
    ]
    same = [entry for entry in candidates if entry[1].version == named.version]
    chosen = newest(same) or newest(candidates)
    if chosen is None:
        return (
            f"no task '{named.name}' of package '{pkg_name}' that user '{user.username}' may "
            "run (collect the package first: GET api/v2/task/ lists the tasks)"
        )
    task, identity = chosen
    if identity.version == named.version:
        return ImportedTask(task)
    wanted = f"version {named.version}" if named.version else "no version"
    return ImportedTask(
        task,
        f"The import named {wanted} of task '{named.name}' of package '{pkg_name}'; "
        f"imported version {identity.version} (task {task.id}), the newest one available.",
    )


async def _resolve_import_tasks(
    session: AsyncSession,
    user: CurrentUser,
    data: WorkflowImport,
    admin_users: Collection[str],
) -> list[ImportedTask]:
    """The task of each entry: by source where it is known (2.6.4), else by package."""
    sources = {entry.task.source for entry in data.task_list if entry.task.source is not None}
    by_source = {
        task.source: task
        for task in (await session.scalars(select(Task).where(Task.source.in_(sources)))).all()
    }
    found: list[ImportedTask] = []
    unknown_sources: list[str] = []
    problems: list[str] = []
    for position, entry in enumerate(data.task_list):
        named = entry.task
        if named.source is not None and named.source in by_source:
            found.append(ImportedTask(by_source[named.source]))
        elif named.pkg_name is not None and named.name is not None:
            match = await _find_by_package(session, user, named, admin_users)
            if isinstance(match, str):
                problems.append(f"task_list[{position}]: {match}")
            else:
                found.append(match)
        elif named.source not in unknown_sources:
            unknown_sources.append(str(named.source))
    if unknown_sources:
        problems.insert(
            0,
            "No task with source "
            + ", ".join(f"'{source}'" for source in unknown_sources)
            + ": collect or create it first (GET api/v2/task/ lists the known sources).",
        )
    if problems:
        raise Unprocessable("\n".join(problems))
    return found


async def import_workflow(
    session: AsyncSession,
    user: CurrentUser,
    project_id: int,
    data: WorkflowImport,
    admin_users: Collection[str],
) -> WorkflowReadWithWarnings:
    """A new workflow whose tasks are found by source or by package (`_resolve_import_tasks`);
    all checked before anything is made (including that the caller's jobs may run them)."""
    project = await get_project_for_member(session, project_id, user)
    await _check_name_free(session, project_id, data.name)
    imported = await _resolve_import_tasks(session, user, data, admin_users)
    await require_runnable_tasks(
        session,
        user,
        (entry.task for entry in imported),
        admin_users,
        action="Cannot import the workflow",
    )
    entries: list[tuple[Task, WorkflowTaskCreate]] = []
    problems: list[dict[str, Any]] = []
    for position, (entry, match) in enumerate(zip(data.task_list, imported, strict=True)):
        task = match.task
        fields = entry.model_dump(exclude={"task"}, exclude_none=True)
        try:
            check_sides(task.type, fields)
        except Unprocessable as error:
            raise Unprocessable(f"task_list[{position}]: {error.detail}") from None
        problems += check_arguments(
            task,
            entry.args_non_parallel,
            entry.args_parallel,
            location=["body", "task_list", position],
        )
        entries.append((task, WorkflowTaskCreate.model_validate(fields)))
    if problems:
        raise Unprocessable(problems)
    workflow = Workflow(name=data.name, description=data.description, project=project, task_list=[])
    session.add(workflow)
    for task, create in entries:
        insert_workflow_task(workflow, task, create)
    await session.flush()
    answer = WorkflowReadWithWarnings.model_validate(workflow)
    for read, match in zip(answer.task_list, imported, strict=True):
        read.warning = match.warning
    return answer
