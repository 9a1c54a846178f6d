"""Who may use which task, and what of a task may change while others use it.

A job runs its tasks' command lines as the submitting user's OS account, so a user's jobs may
run a task only if the user trusts whoever decides what that command line is. Tasks belong to
task groups (one per collected package version or custom task), and the rule is the group's:

- a group's tasks are for its owner and for the members of its user group (`user_group_id`):
  they see the group (the task-group routes) and their jobs may run its tasks (every user
  still reads every task through `api/v2/task/`, as fractal-server 2.6.4 answers);
- an administrator's groups are shared with the group "All" when made (every user's jobs
  could run an administrator's tasks before groups existed); any other user's groups are
  private until their owner shares them with a user group they belong to;
- a task without group (a row made behind the API's back) follows the rule from before
  groups: no owner, the user's own, or an administrator's (`FractalJupyter.admin_users`).

`require_runnable_tasks` is the one place that decides who may run what: job submission
enforces it, and adding a task to a workflow (by id, or by source in an import) checks it
first, so no one builds a workflow that can never run. It also refuses the tasks of
deactivated groups (their venv is gone), naming the group. `group_access` is the same rule
as a SQL condition, for the listings.

While a workflow outside its owner's projects uses a task, its owner may not change what it
runs (`check_run_fields_unchanged`); administrators may, as they already decide what every
user runs through the tasks they collected.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from sqlalchemy import ColumnElement, distinct, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import LinkUserGroup, Task, TaskGroup, UserGroup, Workflow, WorkflowTask
from ..errors import Forbidden, NotFound, Unprocessable
from .access import member_project_ids
from .group import default_group
from .users import CurrentUser

# The task fields that decide what a job runs and on which images (frozen in the job folder
# at submission). `meta_*` and `source` cannot be changed by PATCH at all.
RUN_FIELDS = ("command_non_parallel", "command_parallel", "input_types", "output_types")

RULE = (
    "a job runs only the tasks of task groups that the submitting user owns or that are "
    "shared with a user group the submitting user belongs to (administrators' collections "
    "are shared with everyone)"
)


def group_access(user_id: int) -> ColumnElement[bool]:
    """SQL: the task group is `user_id`'s, or shared with a user group `user_id` is in."""
    return or_(
        TaskGroup.user_id == user_id,
        TaskGroup.user_group_id.in_(
            select(LinkUserGroup.group_id).where(LinkUserGroup.user_id == user_id)
        ),
    )


async def check_share(
    session: AsyncSession, user: CurrentUser, user_group_id: int, *, admin: bool
) -> None:
    """404 for an unknown user group; 403 unless `user` (or an administrator, `admin`)
    belongs to it (fractal-server's answers): a group's owner shares it only with people
    they are grouped with."""
    if await session.get(UserGroup, user_group_id) is None:
        raise NotFound(f"UserGroup {user_group_id} not found.")
    if admin:
        return
    member = await session.scalar(
        select(LinkUserGroup.user_id).where(
            LinkUserGroup.user_id == user.id, LinkUserGroup.group_id == user_group_id
        )
    )
    if member is None:
        raise Forbidden(
            f"User {user.id} does not belong to UserGroup {user_group_id}: a task group can "
            "only be shared with a user group its owner belongs to."
        )


async def new_group_user_group_id(
    session: AsyncSession,
    user: CurrentUser,
    *,
    private: bool = False,
    user_group_id: int | None = None,
) -> int | None:
    """The user group a new task group of `user` is shared with: none when `private`, the
    one asked for (the user must belong to it), else "All" for an administrator and none
    for anyone else (the rule of this module's docstring, where fractal-server shares
    everyone's with "All"). Both `private` and a user group: 422, as fractal-server says."""
    if private and user_group_id is not None:
        raise Unprocessable(f"Cannot set both user_group_id={user_group_id} and private=True")
    if private:
        return None
    if user_group_id is not None:
        await check_share(session, user, user_group_id, admin=False)
        return user_group_id
    if not user.is_superuser:
        return None
    return (await default_group(session)).id


def is_trusted_by_everyone(task: Task, admin_users: Collection[str]) -> bool:
    """A task with no owner, or an administrator's: every user's jobs may run it."""
    return task.owner is None or task.owner in admin_users


def may_run(task: Task, user: CurrentUser, admin_users: Collection[str]) -> bool:
    return is_trusted_by_everyone(task, admin_users) or task.owner == user.username


async def require_runnable_tasks(
    session: AsyncSession,
    user: CurrentUser,
    tasks: Iterable[Task],
    admin_users: Collection[str],
    *,
    action: str,
) -> None:
    """422 naming every task of `tasks` that `user`'s jobs may not run, and every deactivated
    task group among theirs.

    `action` says what was refused ("Cannot submit the job").
    """
    by_id = {task.id: task for task in tasks}
    group_ids = {task.taskgroupv2_id for task in by_id.values()} - {None}
    groups: dict[int, TaskGroup] = {}
    accessible: set[int] = set()
    if group_ids:
        groups = {
            group.id: group
            for group in await session.scalars(select(TaskGroup).where(TaskGroup.id.in_(group_ids)))
        }
        accessible = set(
            await session.scalars(
                select(TaskGroup.id).where(TaskGroup.id.in_(group_ids), group_access(user.id))
            )
        )
    refused: list[Task] = []
    inactive: dict[int, TaskGroup] = {}
    for task in by_id.values():
        group = groups.get(task.taskgroupv2_id) if task.taskgroupv2_id is not None else None
        if group is None:
            if not may_run(task, user, admin_users):
                refused.append(task)
        elif group.id not in accessible:
            refused.append(task)
        elif not group.active:
            inactive.setdefault(group.id, group)
    if refused:
        listing = "; ".join(
            f"task {task.id} '{task.name}' (owner '{task.owner}')"
            + (f" of task group {task.taskgroupv2_id}" if task.taskgroupv2_id is not None else "")
            for task in refused
        )
        raise Unprocessable(
            f"{action}: user '{user.username}' may not run {listing}. Tasks run as the "
            f"submitting user, so {RULE}. Use your own copy of the task, or ask an "
            "administrator to collect it."
        )
    if inactive:
        listing = "; ".join(
            f"task group {group.id} ({group.pkg_name} {group.version})"
            for group in inactive.values()
        )
        raise Unprocessable(
            f"{action}: its tasks include tasks of deactivated task groups: {listing}. "
            "Reactivate them first (POST api/v2/task-group/{id}/reactivate/)."
        )


async def count_foreign_workflows(session: AsyncSession, task: Task, owner: CurrentUser) -> int:
    """How many workflows of projects `owner` is not a member of use `task`."""
    count = await session.scalar(
        select(func.count(distinct(Workflow.id)))
        .join(WorkflowTask, WorkflowTask.workflow_id == Workflow.id)
        .where(
            WorkflowTask.task_id == task.id,
            Workflow.project_id.not_in(member_project_ids(owner)),
        )
    )
    return int(count or 0)


async def check_run_fields_unchanged(
    session: AsyncSession, user: CurrentUser, task: Task, changes: dict[str, Any]
) -> None:
    """422 when a non-admin owner changes what `task` runs while other users' workflows use it.

    Values equal to the stored ones are no change (clients may send the whole task back).
    """
    if user.is_superuser:
        return
    changed = sorted(
        key for key in RUN_FIELDS if key in changes and changes[key] != getattr(task, key)
    )
    if not changed:
        return
    count = await count_foreign_workflows(session, task, user)
    if count:
        raise Unprocessable(
            f"Cannot change {', '.join(f'`{key}`' for key in changed)} of TaskV2 {task.id}: "
            f"it is used in {count} workflow(s) of other users, whose jobs would run the new "
            "version. Create a new task instead (only an administrator may change a task that "
            "other users' workflows use)."
        )
