"""Which tasks a user's jobs may run, and what of a task may change while others use it.

Every user reads every task (fractal-server 2.6.4), but a job runs its tasks' command lines
as the submitting user's OS account. A job may therefore run a task only if the submitter
trusts whoever decides what that command line is:

- the task has no owner (collected by an administrator), or
- its owner is the submitting user, or
- its owner is an administrator (`FractalJupyter.admin_users`, trusted by everyone).

`require_runnable_tasks` is the one place that decides it: job submission enforces it, and
adding a task to a workflow (by id, or by source in an import) checks it first, so no one
builds a workflow that can never run. Task groups (sharing a task with a user group) will
extend this function and nothing else.

While a workflow outside its owner's projects uses a task, its owner may not change what it
runs (`check_run_fields_unchanged`); administrators may, as they already decide what every
user runs through the tasks they collected.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import Task, Workflow, WorkflowTask
from ..errors import Unprocessable
from .access import member_project_ids
from .users import CurrentUser

# The task fields that decide what a job runs and on which images (frozen in the job folder
# at submission). `meta_*` and `source` cannot be changed by PATCH at all.
RUN_FIELDS = ("command_non_parallel", "command_parallel", "input_types", "output_types")

RULE = (
    "a job runs only tasks without owner (collected by an administrator), tasks owned by the "
    "submitting user, or tasks owned by an administrator (FractalJupyter.admin_users)"
)


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
    """422 naming every task of `tasks` that `user`'s jobs may not run.

    `action` says what was refused ("Cannot submit the job"). `session` is for the group
    sharing of task groups, which will look up the user's groups.
    """
    del session  # not needed until tasks can be shared with a group
    refused: dict[int, Task] = {}
    for task in tasks:
        if not may_run(task, user, admin_users):
            refused.setdefault(task.id, task)
    if not refused:
        return
    listing = "; ".join(
        f"task {task.id} '{task.name}' (owner '{task.owner}')" for task in refused.values()
    )
    raise Unprocessable(
        f"{action}: user '{user.username}' may not run {listing}. Tasks run as the submitting "
        f"user, so {RULE}. Use your own copy of the task, or ask an administrator to collect it."
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
