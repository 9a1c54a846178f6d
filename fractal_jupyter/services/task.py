"""The task catalogue: every user reads every task (fractal-server 2.6.4; the task-group
routes show only the groups a user may use); owners (or admins) change their own. A task made
here is a task group of its own (origin `other`), as in fractal-server 2.7+.

Who may run which task, and what may not change while others use it: `task_trust`.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import LinkUserProject, Project, Task, TaskGroup, Workflow, WorkflowTask
from ..errors import Forbidden, NotFound, Unprocessable
from ..schemas.task import TaskCreate, TaskRead, TaskUpdate, has_parallel_part
from .task_package import generated_source
from .task_trust import check_run_fields_unchanged, new_group_user_group_id
from .users import CurrentUser

# The version of a task group whose package has none (fractal-server 2.23's placeholder).
LEGACY_VERSION = "0"


async def list_tasks(
    session: AsyncSession, args_schema_parallel: bool, args_schema_non_parallel: bool
) -> list[TaskRead]:
    tasks = (await session.scalars(select(Task).order_by(Task.id))).all()
    hidden: dict[str, None] = {}
    if not args_schema_parallel:
        hidden["args_schema_parallel"] = None
    if not args_schema_non_parallel:
        hidden["args_schema_non_parallel"] = None
    return [TaskRead.model_validate(task).model_copy(update=hidden) for task in tasks]


async def get_task(session: AsyncSession, task_id: int, *, not_found: str = "") -> Task:
    task = await session.get(Task, task_id)
    if task is None:
        raise NotFound(not_found or "TaskV2 not found")
    return task


async def get_task_for_owner(session: AsyncSession, task_id: int, user: CurrentUser) -> Task:
    """The task, if `user` may change it: its owner, or an admin (collected tasks: admins)."""
    task = await get_task(session, task_id)
    if user.is_superuser:
        return task
    if task.owner is None:
        raise Forbidden(
            f"Only a superuser can modify TaskV2 {task.id}, since its owner attribute is None."
        )
    if task.owner != user.username:
        raise Forbidden(
            f"Current user ({user.username}) cannot modify TaskV2 {task.id} with different "
            f"owner ({task.owner})."
        )
    return task


async def check_source_free(session: AsyncSession, source: str) -> None:
    if await session.scalar(select(Task.id).where(Task.source == source)) is not None:
        raise Unprocessable(f"Source '{source}' already used by some TaskV2")


def new_task(data: TaskCreate, *, source: str | None, owner: str | None) -> Task:
    """A task row for `data` (not added to a session): the checks every way of creating
    a task shares (by hand, or collected from a package's manifest). `source` is the one
    stored (None: the one `data` names)."""
    source = source or data.source
    if source is None:
        raise Unprocessable(f"Task '{data.name}' has no source")
    task_type = data.task_type
    if not has_parallel_part(task_type) and (
        data.args_schema_parallel is not None or data.meta_parallel is not None
    ):
        raise Unprocessable(
            f"Cannot set `TaskV2.args_schema_parallel` or `TaskV2.meta_parallel` if TaskV2 "
            f"is {task_type}"
        )
    if task_type == "parallel" and (
        data.args_schema_non_parallel is not None or data.meta_non_parallel is not None
    ):
        raise Unprocessable(
            "Cannot set `TaskV2.args_schema_non_parallel` or `TaskV2.meta_non_parallel` if "
            "TaskV2 is parallel"
        )
    fields = data.model_dump(exclude={"type", "source"})
    fields["meta_parallel"] = fields["meta_parallel"] or {}
    fields["meta_non_parallel"] = fields["meta_non_parallel"] or {}
    return Task(**fields, type=task_type, source=source, owner=owner)


async def create_task(
    session: AsyncSession,
    user: CurrentUser,
    data: TaskCreate,
    *,
    private: bool = False,
    user_group_id: int | None = None,
) -> Task:
    """The task, in a new task group of its own (origin `other`), shared as
    `new_group_user_group_id` decides."""
    given = data.source
    if given is None:
        assert data.version is not None  # (TaskCreate requires one without source)
        given = generated_source(data.name, data.version)
    source = f"{user.username}:{given}"
    task = new_task(data, source=source, owner=user.username)
    await check_source_free(session, source)
    group = TaskGroup(
        user_id=user.id,
        user_group_id=await new_group_user_group_id(
            session, user, private=private, user_group_id=user_group_id
        ),
        origin="other",
        pkg_name=data.name,
        version=data.version or LEGACY_VERSION,
    )
    session.add(group)
    await session.flush()
    task.taskgroupv2_id = group.id
    session.add(task)
    await session.flush()
    return task


async def update_task(
    session: AsyncSession, user: CurrentUser, task_id: int, data: TaskUpdate
) -> Task:
    task = await get_task_for_owner(session, task_id, user)
    changes = data.model_dump(exclude_unset=True)
    if "command_parallel" in changes and not has_parallel_part(task.type):
        raise Unprocessable("Cannot set an unset `command_parallel`.")
    if "command_non_parallel" in changes and task.type == "parallel":
        raise Unprocessable("Cannot set an unset `command_non_parallel`.")
    await check_run_fields_unchanged(session, user, task, changes)
    for key, value in changes.items():
        setattr(task, key, value)
    await session.flush()
    return task


async def delete_task(session: AsyncSession, user: CurrentUser, task_id: int) -> None:
    """Refused while a workflow uses the task (the caller's workflows are named)."""
    task = await get_task_for_owner(session, task_id, user)
    workflows: Sequence[Workflow] = (
        await session.scalars(
            select(Workflow)
            .where(
                Workflow.id.in_(
                    select(WorkflowTask.workflow_id).where(WorkflowTask.task_id == task_id)
                )
            )
            .order_by(Workflow.id)
        )
    ).all()
    if workflows:
        member_projects = set(
            (
                await session.scalars(
                    select(Project.id)
                    .join(LinkUserProject, LinkUserProject.project_id == Project.id)
                    .where(LinkUserProject.user_id == user.id)
                )
            ).all()
        )
        mine = [workflow for workflow in workflows if workflow.project_id in member_projects]
        listing = "".join(f"\n* '{workflow.name}' (id={workflow.id})" for workflow in mine)
        if mine:
            listing = (
                "For the current-user workflows (listed below), you can update the task or "
                "remove the workflows." + listing
            )
        raise Unprocessable(
            f"Cannot remove Task with id={task_id}: it is currently in use in {len(mine)} "
            f"current-user workflows and in {len(workflows) - len(mine)} other-users "
            f"workflows.\n{listing}"
        )
    group_id = task.taskgroupv2_id
    await session.delete(task)
    await session.flush()
    if group_id is not None:
        left = await session.scalar(select(Task.id).where(Task.taskgroupv2_id == group_id))
        group = await session.get(TaskGroup, group_id) if left is None else None
        if group is not None:
            # A group is its tasks' package: without tasks it is nothing.
            await session.delete(group)
            await session.flush()
