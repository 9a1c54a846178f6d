from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import Task, Workflow
from ..errors import Unprocessable
from ..schemas.workflow import (
    WorkflowCreate,
    WorkflowExport,
    WorkflowImport,
    WorkflowTaskCreate,
    WorkflowUpdate,
)
from .access import get_project_for_member, get_workflow_for_member, member_project_ids
from .job import check_no_submitted_job
from .task_trust import require_runnable_tasks
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
    workflow = Workflow(name=data.name, project=project, task_list=[])
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
    workflow = await get_workflow_for_member(session, project_id, workflow_id, user)
    return WorkflowExport.model_validate(workflow)


async def import_workflow(
    session: AsyncSession,
    user: CurrentUser,
    project_id: int,
    data: WorkflowImport,
    admin_users: Collection[str],
) -> Workflow:
    """A new workflow whose tasks are found by `source`; all checked before anything is made
    (including that the caller's jobs may run them)."""
    project = await get_project_for_member(session, project_id, user)
    await _check_name_free(session, project_id, data.name)
    sources = {entry.task.source for entry in data.task_list}
    tasks = {
        task.source: task
        for task in (await session.scalars(select(Task).where(Task.source.in_(sources)))).all()
    }
    missing = sorted(sources - set(tasks))
    if missing:
        raise Unprocessable(
            "No task with source "
            + ", ".join(f"'{source}'" for source in missing)
            + ": collect or create it first (GET api/v2/task/ lists the known sources)."
        )
    await require_runnable_tasks(
        session,
        user,
        (tasks[entry.task.source] for entry in data.task_list),
        admin_users,
        action="Cannot import the workflow",
    )
    entries: list[tuple[Task, WorkflowTaskCreate]] = []
    problems: list[dict[str, Any]] = []
    for position, entry in enumerate(data.task_list):
        task = tasks[entry.task.source]
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
    workflow = Workflow(name=data.name, project=project, task_list=[])
    session.add(workflow)
    for task, create in entries:
        insert_workflow_task(workflow, task, create)
    await session.flush()
    return workflow
