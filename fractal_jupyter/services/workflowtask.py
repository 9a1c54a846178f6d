"""Tasks inside a workflow: insertion at a position, side checks, argument checks."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import Task, Workflow, WorkflowTask
from ..errors import Unprocessable
from ..schemas.common import Filters
from ..schemas.task import has_non_parallel_part, has_parallel_part
from ..schemas.workflow import (
    DroppedArgument,
    TaskVersionRead,
    WorkflowTaskCreate,
    WorkflowTaskCreateItem,
    WorkflowTaskReplace,
    WorkflowTaskReplaced,
    WorkflowTaskUpdate,
)
from .access import get_workflow_for_member, get_workflow_task_for_member
from .args import argument_problems
from .task import get_task
from .task_package import PackageIdentity, package_identity, version_key
from .task_trust import may_run, require_runnable_tasks
from .users import CurrentUser


def check_sides(task_type: str, values: dict[str, Any], verb: str = "set") -> None:
    """A task's workflow entry may only carry args and meta for the parts the task has.

    The messages are fractal-server 2.6.4's, which words creation and patching differently.
    """
    for part, present in (
        ("non_parallel", has_non_parallel_part(task_type)),
        ("parallel", has_parallel_part(task_type)),
    ):
        if present or all(values.get(f"{kind}_{part}") is None for kind in ("args", "meta")):
            continue
        if verb == "set":
            raise Unprocessable(
                f"Cannot set `WorkflowTaskV2.meta_{part}` or `WorkflowTask.args_{part}` if "
                f"the associated Task is `{task_type}`."
            )
        raise Unprocessable(
            f"Cannot patch `WorkflowTaskV2.args_{part}` or `WorkflowTask.meta_{part}` if the "
            f"associated Task is {task_type.replace('_', ' ')}."
        )


def check_arguments(
    task: Task,
    args_non_parallel: dict[str, Any] | None,
    args_parallel: dict[str, Any] | None,
    *,
    location: list[str | int],
    require_all: bool = False,
) -> list[dict[str, Any]]:
    return [
        *argument_problems(
            task.args_schema_non_parallel,
            args_non_parallel,
            location=[*location, "args_non_parallel"],
            require_all=require_all and has_non_parallel_part(task.type),
        ),
        *argument_problems(
            task.args_schema_parallel,
            args_parallel,
            location=[*location, "args_parallel"],
            require_all=require_all and has_parallel_part(task.type),
        ),
    ]


def _merged_meta(defaults: dict[str, Any] | None, given: dict[str, Any] | None) -> Any:
    merged = {**(defaults or {}), **(given or {})}
    return merged or None


def insert_workflow_task(workflow: Workflow, task: Task, data: WorkflowTaskCreate) -> WorkflowTask:
    """Put a new entry at `data.order` (default: the end) and renumber the workflow."""
    workflow_task = WorkflowTask(
        task=task,
        task_type=task.type,
        args_non_parallel=data.args_non_parallel or None,
        args_parallel=data.args_parallel or None,
        meta_non_parallel=_merged_meta(task.meta_non_parallel, data.meta_non_parallel),
        meta_parallel=_merged_meta(task.meta_parallel, data.meta_parallel),
        input_filters=data.input_filters.model_dump(),
    )
    order = len(workflow.task_list) if data.order is None else data.order
    workflow.task_list.insert(order, workflow_task)
    renumber(workflow)
    return workflow_task


def renumber(workflow: Workflow) -> None:
    for position, workflow_task in enumerate(workflow.task_list):
        workflow_task.order = position


async def create_workflow_task(
    session: AsyncSession,
    user: CurrentUser,
    project_id: int,
    workflow_id: int,
    task_id: int,
    data: WorkflowTaskCreate,
    admin_users: Collection[str],
    *,
    location: list[str | int] | None = None,
) -> WorkflowTask:
    workflow = await get_workflow_for_member(session, project_id, workflow_id, user)
    task = await get_task(session, task_id, not_found=f"TaskV2 {task_id} not found.")
    await require_runnable_tasks(
        session, user, [task], admin_users, action=f"Cannot add task {task_id} to the workflow"
    )
    check_sides(task.type, data.model_dump())
    problems = check_arguments(
        task, data.args_non_parallel, data.args_parallel, location=location or ["body"]
    )
    if problems:
        raise Unprocessable(problems)
    workflow_task = insert_workflow_task(workflow, task, data)
    await session.flush()
    return workflow_task


async def create_workflow_tasks(
    session: AsyncSession,
    user: CurrentUser,
    project_id: int,
    workflow_id: int,
    items: list[WorkflowTaskCreateItem],
    order: int | None,
    admin_users: Collection[str],
) -> list[WorkflowTask]:
    """2.26's form: the tasks in the order given, from `order` on (default: the end); all
    or none (a refusal of one rolls the request back)."""
    created = []
    for index, item in enumerate(items):
        position = None if order is None else order + index
        created.append(
            await create_workflow_task(
                session,
                user,
                project_id,
                workflow_id,
                item.task_id,
                item.as_create(position),
                admin_users,
                location=["body", index],
            )
        )
    return created


async def get_workflow_task(
    session: AsyncSession, user: CurrentUser, project_id: int, workflow_id: int, wftask_id: int
) -> WorkflowTask:
    workflow_task, _ = await get_workflow_task_for_member(
        session, project_id, workflow_id, wftask_id, user
    )
    return workflow_task


async def update_workflow_task(
    session: AsyncSession,
    user: CurrentUser,
    project_id: int,
    workflow_id: int,
    wftask_id: int,
    data: WorkflowTaskUpdate,
) -> WorkflowTask:
    """Given args and meta replace the stored ones (empty args are stored as null)."""
    workflow_task, _ = await get_workflow_task_for_member(
        session, project_id, workflow_id, wftask_id, user
    )
    changes = data.model_dump(exclude_unset=True)
    check_sides(workflow_task.task_type, changes, verb="patch")
    for key in ("args_non_parallel", "args_parallel"):
        if key in changes:
            changes[key] = changes[key] or None
    problems = check_arguments(
        workflow_task.task,
        changes.get("args_non_parallel", workflow_task.args_non_parallel),
        changes.get("args_parallel", workflow_task.args_parallel),
        location=["body"],
    )
    if problems:
        raise Unprocessable(problems)
    for key, value in changes.items():
        setattr(workflow_task, key, value)
    await session.flush()
    return workflow_task


async def delete_workflow_task(
    session: AsyncSession, user: CurrentUser, project_id: int, workflow_id: int, wftask_id: int
) -> None:
    workflow_task, workflow = await get_workflow_task_for_member(
        session, project_id, workflow_id, wftask_id, user
    )
    workflow.task_list.remove(workflow_task)
    renumber(workflow)
    await session.flush()


# -- a newer version of a task in a workflow (fractal-server 2.26) --------------------------


async def _newer_versions(
    session: AsyncSession, user: CurrentUser, tasks: Iterable[Task], admin_users: Collection[str]
) -> dict[int, list[tuple[Task, PackageIdentity]]]:
    """For each task (by id): the tasks of the same package and name with a higher version
    that the user's jobs may run, lowest version first."""
    wanted = {task.id: (task, package_identity(task)) for task in tasks}
    names = {task.name for task, identity in wanted.values() if identity is not None}
    others = [
        (other, identity)
        for other in (await session.scalars(select(Task).where(Task.name.in_(names)))).all()
        if (identity := package_identity(other)) is not None and may_run(other, user, admin_users)
    ]
    newer: dict[int, list[tuple[Task, PackageIdentity]]] = {}
    for task_id, (task, identity) in wanted.items():
        if identity is None:
            newer[task_id] = []
            continue
        current = version_key(identity.version)
        newer[task_id] = sorted(
            (
                (other, other_identity)
                for other, other_identity in others
                if other.name == task.name
                and other_identity.pkg_name == identity.pkg_name
                and version_key(other_identity.version) > current
            ),
            key=lambda entry: (version_key(entry[1].version), entry[0].id),
        )
    return newer


async def version_update_candidates(
    session: AsyncSession,
    user: CurrentUser,
    project_id: int,
    workflow_id: int,
    admin_users: Collection[str],
) -> list[list[TaskVersionRead]]:
    """Per task of the workflow, in order: the newer versions it could be replaced with."""
    workflow = await get_workflow_for_member(session, project_id, workflow_id, user)
    tasks = [workflow_task.task for workflow_task in workflow.task_list]
    newer = await _newer_versions(session, user, tasks, admin_users)
    return [
        [TaskVersionRead(task_id=other.id, version=identity.version) for other, identity in found]
        for found in (newer[task.id] for task in tasks)
    ]


def _kept_arguments(
    schema: dict[str, Any] | None, args: dict[str, Any] | None, part: str
) -> tuple[dict[str, Any] | None, list[DroppedArgument]]:
    """The arguments that `schema` accepts one by one, and the others with the reason."""
    if not args:
        return None, []
    kept: dict[str, Any] = {}
    dropped: list[DroppedArgument] = []
    for name, value in args.items():
        problems = argument_problems(schema, {name: value}, location=[], require_all=False)
        if problems:
            reason = "; ".join(str(problem["msg"]) for problem in problems)
            dropped.append(DroppedArgument(loc=[part, name], value=value, msg=reason))
        else:
            kept[name] = value
    if argument_problems(schema, kept, location=[], require_all=False):
        # Accepted one by one, refused together (a rule across arguments): none is kept.
        reason = "refused in combination by the new task's schema"
        dropped += [
            DroppedArgument(loc=[part, name], value=value, msg=reason)
            for name, value in kept.items()
        ]
        kept = {}
    return kept or None, dropped


async def replace_workflow_task(
    session: AsyncSession,
    user: CurrentUser,
    project_id: int,
    workflow_id: int,
    workflow_task_id: int,
    task_id: int,
    data: WorkflowTaskReplace,
    admin_users: Collection[str],
) -> WorkflowTaskReplaced:
    """A new entry with task `task_id` in place of `workflow_task_id` (same position, meta
    and filters). Arguments given are checked like any; a side not given keeps the old
    arguments that the new schema accepts, and the answer lists the others."""
    old, workflow = await get_workflow_task_for_member(
        session, project_id, workflow_id, workflow_task_id, user
    )
    task = await get_task(session, task_id, not_found=f"TaskV2 {task_id} not found.")
    if task.type != old.task_type:
        raise Unprocessable(
            f"Cannot replace a task of type '{old.task_type}' with task {task_id} of type "
            f"'{task.type}'."
        )
    await require_runnable_tasks(
        session, user, [task], admin_users, action=f"Cannot replace with task {task_id}"
    )
    given = data.model_dump(exclude_unset=True)
    check_sides(task.type, given)
    problems = check_arguments(task, data.args_non_parallel, data.args_parallel, location=["body"])
    if problems:
        raise Unprocessable(problems)
    arguments: dict[str, Any] = {}
    dropped: list[DroppedArgument] = []
    for part in ("args_non_parallel", "args_parallel"):
        if part in given:
            arguments[part] = given[part]
            continue
        schema = getattr(task, f"args_schema_{part.removeprefix('args_')}")
        arguments[part], lost = _kept_arguments(schema, getattr(old, part), part)
        dropped += lost
    order = workflow.task_list.index(old)
    workflow.task_list.remove(old)
    create = WorkflowTaskCreate(
        **arguments,
        meta_non_parallel=old.meta_non_parallel,
        meta_parallel=old.meta_parallel,
        order=order,
        input_filters=Filters.model_validate(old.input_filters),
    )
    new = insert_workflow_task(workflow, task, create)
    await session.flush()
    answer = WorkflowTaskReplaced.model_validate(new)
    answer.dropped_arguments = dropped
    return answer
