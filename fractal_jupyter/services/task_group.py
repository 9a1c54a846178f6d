"""Task groups, the database side: list and read them, share them with a user group, and
deactivate (keep the freeze, remove the venv), reactivate (rebuild the venv from the freeze)
or delete them (tasks, venv and files), as fractal-server 2.26's task-group routes do.

Who may see and use a group: `task_trust` (owner, or member of its user group); only its
owner (or an administrator, through `admin/v2/`) changes it. The long operations run in the
background through the server's `TaskCollector`, each recorded as an activity whose log grows
while it runs; the package mechanics are `fractal_jupyter.tasks.venv`'s.
"""

from __future__ import annotations

import asyncio
import functools
import re
import shutil
from collections.abc import Callable, Coroutine, Iterable, Sequence
from itertools import groupby
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Text,
    cast,
    distinct,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from ..db.engine import Database
from ..db.models import (
    Task,
    TaskGroup,
    TaskGroupActivity,
    User,
    WorkflowTask,
    utc_now,
)
from ..errors import Forbidden, NotFound, Unprocessable
from ..schemas.task import TaskRead
from ..schemas.task_group import (
    ActivityListQuery,
    AdminActivityListQuery,
    AdminTaskGroupListQuery,
    RenderedTaskGroupList,
    TaskGroupActivityPage,
    TaskGroupActivityRead,
    TaskGroupPage,
    TaskGroupRead,
    TaskGroupReadSuperuser,
    TaskGroupUpdate,
    render_slim_task,
)
from ..tasks import venv
from ..tasks.log import CollectionError, CollectionLog
from .images import check_pagination
from .task_collection import TaskCollector, after_commit, end_activity
from .task_trust import check_share, group_access
from .users import CurrentUser

PIP_ORIGINS = ("pypi", "wheel-file")
RUNNING = ("pending", "ongoing")
# The listing's group fields (rows, not objects).
GROUP_LIST_COLUMNS = (
    TaskGroup.id,
    TaskGroup.user_id,
    TaskGroup.user_group_id,
    TaskGroup.origin,
    TaskGroup.pkg_name,
    TaskGroup.version,
    TaskGroup.python_version,
    TaskGroup.path,
    TaskGroup.venv_path,
    TaskGroup.wheel_path,
    TaskGroup.pip_extras,
    TaskGroup.pinned_package_versions,
    TaskGroup.pinned_package_versions_pre,
    TaskGroup.active,
    TaskGroup.timestamp_created,
    TaskGroup.timestamp_last_used,
)
# The listing's task fields; JSON columns as text, spliced into the answer as they are.
SLIM_TASK_COLUMNS = (
    Task.taskgroupv2_id,
    Task.id,
    Task.name,
    Task.version,
    Task.is_core,
    Task.category,
    Task.modality,
    Task.authors,
    cast(Task.tags, Text),
    cast(Task.input_types, Text),
    Task.docs_info,
    Task.docs_link,
)


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Orders versions as people read them: 2.10.0 after 2.9.1, numbers before text."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part)
        for part in re.split(r"[.+!_-]", version.lower())
    )


# -- access --------------------------------------------------------------------------------


async def _group_or_404(session: AsyncSession, group_id: int) -> TaskGroup:
    group = await session.get(TaskGroup, group_id)
    if group is None:
        raise NotFound(f"TaskGroupV2 {group_id} not found")
    return group


async def get_group_for_reader(
    session: AsyncSession, user: CurrentUser, group_id: int
) -> TaskGroup:
    """The group, if `user` may use it (owner, or member of its user group)."""
    group = await _group_or_404(session, group_id)
    readable = await session.scalar(
        select(TaskGroup.id).where(TaskGroup.id == group_id, group_access(user.id))
    )
    if readable is None:
        raise Forbidden(f"Current user has no read access to TaskGroupV2 {group_id}.")
    return group


async def get_group_for_owner(
    session: AsyncSession, user: CurrentUser, group_id: int, *, admin: bool = False
) -> TaskGroup:
    """The group, if `user` may change it: its owner (any group through `admin/v2/`)."""
    group = await _group_or_404(session, group_id)
    if not admin and group.user_id != user.id:
        raise Forbidden(f"Current user has no full access to TaskGroupV2 {group_id}.")
    return group


# -- reading -------------------------------------------------------------------------------


def _in_use_query(group_ids: Iterable[int]) -> Select[int | None]:
    """The groups among `group_ids` with a task that some workflow uses."""
    return (
        select(Task.taskgroupv2_id)
        .join(WorkflowTask, WorkflowTask.task_id == Task.id)
        .where(Task.taskgroupv2_id.in_(list(group_ids)))
        .distinct()
    )


def _emails_query(groups: Iterable[Any]) -> Select[int, str]:
    """The e-mail addresses of the groups' owners."""
    user_ids = {group.user_id for group in groups if group.user_id is not None}
    return select(User.id, User.email).where(User.id.in_(user_ids))


async def _in_use(session: AsyncSession, group_ids: Iterable[int]) -> set[int]:
    return {group_id for group_id in await session.scalars(_in_use_query(group_ids)) if group_id}


async def _emails(session: AsyncSession, groups: Sequence[TaskGroup]) -> dict[int, str]:
    return {user_id: email for user_id, email in await session.execute(_emails_query(groups))}


def _group_fields(group: Any, emails: dict[int, str], in_use: set[int]) -> dict[str, Any]:
    """A group's fields as the models have them (`group`: a TaskGroup, or a row of it)."""
    return {
        "id": group.id,
        "user_email": emails.get(group.user_id, "") if group.user_id is not None else "",
        "user_group_id": group.user_group_id,
        "origin": group.origin,
        "pkg_name": group.pkg_name,
        "version": group.version,
        "python_version": group.python_version,
        "path": group.path,
        "venv_path": group.venv_path,
        "archive_path": group.wheel_path,
        "pip_extras": group.pip_extras,
        # `pinned_package_versions` holds 2.6.4's pins, applied after the package:
        # fractal-server 2.9 renamed that column `_post`.
        "pinned_package_versions_pre": group.pinned_package_versions_pre,
        "pinned_package_versions_post": group.pinned_package_versions,
        "pixi_version": None,
        "in_use": group.id in in_use,
        "active": group.active,
        "timestamp_created": group.timestamp_created,
        "timestamp_last_used": group.timestamp_last_used,
    }


async def list_task_groups(
    database: Database, user: CurrentUser, only_active: bool, only_owner: bool
) -> RenderedTaskGroupList:
    """The groups `user` may use, by package name, the newest version first (2.26's shape).

    Read in one go off the event loop (`Database.read`): with thousands of tasks, the
    rows are most of the cost."""
    return await database.read(
        functools.partial(_read_task_groups, user.id, only_active, only_owner)
    )


# Each group's rendered task list, by database and group, with the fingerprint of the tasks
# it was rendered from: (count, largest id, latest `timestamp_updated`, the group's version).
# Any insert, update or deletion of a group's tasks changes the fingerprint, so an entry is
# used only while it is current, whichever server process wrote the tasks.
_rendered_tasks: dict[tuple[str, int], tuple[tuple[Any, ...], list[str]]] = {}


def _read_task_groups(
    user_id: int, only_active: bool, only_owner: bool, connection: Connection
) -> RenderedTaskGroupList:
    where = [TaskGroup.user_id == user_id if only_owner else group_access(user_id)]
    if only_active:
        where.append(TaskGroup.active.is_(True))
    groups = connection.execute(select(*GROUP_LIST_COLUMNS).where(*where)).all()
    versions = {group.id: group.version for group in groups}
    database = connection.engine.url.render_as_string(hide_password=True)
    fingerprints = {
        group_id: (count, last_id, updated, versions.get(group_id))
        for group_id, count, last_id, updated in connection.execute(
            select(
                Task.taskgroupv2_id,
                func.count(Task.id),
                func.max(Task.id),
                func.max(Task.timestamp_updated),
            )
            .join(TaskGroup, TaskGroup.id == Task.taskgroupv2_id)
            .where(*where)
            .group_by(Task.taskgroupv2_id)
        )
    }
    tasks: dict[int | None, list[str]] = {}
    for group_id in versions:
        cached = _rendered_tasks.get((database, group_id))
        if cached is not None and cached[0] == fingerprints.get(group_id):
            tasks[group_id] = cached[1]
    stale = [group_id for group_id in versions if group_id not in tasks]
    stale_ids = set(stale)
    for group_id in stale:
        tasks[group_id] = []
    if stale:
        # All of them (a cold cache): the groups' own condition, not hundreds of ids.
        which = where if len(stale) == len(versions) else [Task.taskgroupv2_id.in_(stale)]
        rows = connection.execute(
            select(*SLIM_TASK_COLUMNS)
            .join(TaskGroup, TaskGroup.id == Task.taskgroupv2_id)
            .where(*which)
            .order_by(Task.id)
        )
        for group_id, task_id, name, version, *rest in rows:
            if group_id not in stale_ids:
                continue  # a group made since the groups were read
            if version is None:
                version = versions[group_id]
            tasks[group_id].append(render_slim_task(task_id, name, version, *rest))
        for group_id in stale:
            if group_id in fingerprints:
                _rendered_tasks[(database, group_id)] = (fingerprints[group_id], tasks[group_id])
    emails = {user_id: email for user_id, email in connection.execute(_emails_query(groups))}
    in_use = {
        group_id for group_id in connection.scalars(_in_use_query(versions)) if group_id is not None
    }
    ordered = sorted(groups, key=lambda group: (group.pkg_name, version_key(group.version)))
    return RenderedTaskGroupList(
        [
            (
                pkg_name,
                [
                    (_group_fields(group, emails, in_use), tasks[group.id])
                    for group in reversed(list(members))
                ],
            )
            for pkg_name, members in groupby(ordered, key=lambda group: group.pkg_name)
        ]
    )


async def _read(
    session: AsyncSession, group: TaskGroup, model: type[TaskGroupRead] = TaskGroupRead
) -> Any:
    tasks = (
        await session.scalars(select(Task).where(Task.taskgroupv2_id == group.id).order_by(Task.id))
    ).all()
    fields = _group_fields(
        group, await _emails(session, [group]), await _in_use(session, [group.id])
    )
    if model is TaskGroupReadSuperuser:
        fields["user_id"] = group.user_id
    return model(**fields, task_list=[TaskRead.model_validate(task) for task in tasks])


async def read_task_group(session: AsyncSession, user: CurrentUser, group_id: int) -> TaskGroupRead:
    group = await get_group_for_reader(session, user, group_id)
    result: TaskGroupRead = await _read(session, group)
    return result


async def update_task_group(
    session: AsyncSession,
    user: CurrentUser,
    group_id: int,
    body: TaskGroupUpdate,
    *,
    admin: bool = False,
) -> Any:
    """Share the group with a user group (its owner must belong to it), or make it private."""
    group = await get_group_for_owner(session, user, group_id, admin=admin)
    changes = body.model_dump(exclude_unset=True)
    if "user_group_id" in changes:
        if body.user_group_id is not None:
            await check_share(session, user, body.user_group_id, admin=admin)
        group.user_group_id = body.user_group_id
        await session.flush()
    return await _read(session, group, TaskGroupReadSuperuser if admin else TaskGroupRead)


async def mark_used(session: AsyncSession, tasks: Iterable[Task]) -> None:
    """A job was submitted with `tasks`: their groups were used now."""
    group_ids = {task.taskgroupv2_id for task in tasks} - {None}
    for group_id in group_ids:
        group = await session.get(TaskGroup, group_id)
        if group is not None:
            group.timestamp_last_used = utc_now()


# -- activities ----------------------------------------------------------------------------


def activity_read(activity: TaskGroupActivity) -> TaskGroupActivityRead:
    read = TaskGroupActivityRead.model_validate(activity)
    if activity.log is None and activity.log_file is not None:
        read.log = CollectionLog(Path(activity.log_file)).read()
    return read


def _activity_filters(query: ActivityListQuery) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if query.task_group_activity_id is not None:
        where.append(TaskGroupActivity.id == query.task_group_activity_id)
    if query.taskgroupv2_id is not None:
        where.append(TaskGroupActivity.taskgroupv2_id == query.taskgroupv2_id)
    if query.pkg_name is not None:
        where.append(TaskGroupActivity.pkg_name.icontains(query.pkg_name, autoescape=True))
    if query.status is not None:
        where.append(TaskGroupActivity.status == query.status)
    if query.action is not None:
        where.append(TaskGroupActivity.action == query.action)
    if query.timestamp_started_min is not None:
        where.append(TaskGroupActivity.timestamp_started >= query.timestamp_started_min)
    return where


async def list_activities(
    session: AsyncSession, user: CurrentUser, query: ActivityListQuery
) -> list[TaskGroupActivityRead]:
    """The caller's own activities, newest first."""
    activities = await session.scalars(
        select(TaskGroupActivity)
        .where(TaskGroupActivity.user_id == user.id, *_activity_filters(query))
        .order_by(TaskGroupActivity.id.desc())
    )
    return [activity_read(activity) for activity in activities]


async def get_activity(
    session: AsyncSession, collector: TaskCollector, user: CurrentUser, activity_id: int
) -> TaskGroupActivityRead:
    activity = await session.get(TaskGroupActivity, activity_id)
    if activity is None:
        raise NotFound(f"TaskGroupActivityV2 {activity_id} not found")
    if activity.user_id != user.id and not user.is_superuser:
        raise Forbidden(f"You are not the owner of TaskGroupActivityV2 {activity_id}")
    if activity.runner is not None and collector.activity_is_orphan(activity):
        await collector.reap_orphans()
        await session.refresh(activity)
    return activity_read(activity)


async def admin_list_activities(
    session: AsyncSession, query: AdminActivityListQuery
) -> TaskGroupActivityPage:
    check_pagination(query.page, query.page_size)
    where = _activity_filters(query)
    if query.user_id is not None:
        where.append(TaskGroupActivity.user_id == query.user_id)
    statement = select(TaskGroupActivity).where(*where).order_by(TaskGroupActivity.id.desc())
    total, page, page_size, rows = await _page(session, statement, query.page, query.page_size)
    return TaskGroupActivityPage(
        current_page=page,
        page_size=page_size,
        total_count=total,
        items=[activity_read(activity) for activity in rows],
    )


async def _page(
    session: AsyncSession, statement: Select[Any], page: int, page_size: int | None
) -> tuple[int, int, int, Sequence[Any]]:
    """(total, page, page size, rows) of `statement`, as fractal-server pages: no page size
    is one page of everything."""
    total = await session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    size = page_size if page_size is not None else max(total, 1)
    page = max(1, min(page, -(-total // size)))
    rows = (await session.scalars(statement.offset((page - 1) * size).limit(size))).all()
    return total, page, page_size if page_size is not None else total, rows


async def admin_list_task_groups(
    session: AsyncSession, query: AdminTaskGroupListQuery
) -> TaskGroupPage:
    check_pagination(query.page, query.page_size)
    where: list[ColumnElement[bool]] = []
    if query.task_group_id is not None:
        where.append(TaskGroup.id == query.task_group_id)
    if query.user_id is not None:
        where.append(TaskGroup.user_id == query.user_id)
    if query.user_group_id is not None:
        if query.private is True:
            raise Unprocessable("Cannot get task groups with both private=True and user_group_id")
        where.append(TaskGroup.user_group_id == query.user_group_id)
    if query.private is not None:
        where.append(
            TaskGroup.user_group_id.is_(None)
            if query.private
            else TaskGroup.user_group_id.is_not(None)
        )
    if query.active is not None:
        where.append(TaskGroup.active.is_(query.active))
    if query.pkg_name is not None:
        where.append(TaskGroup.pkg_name.icontains(query.pkg_name, autoescape=True))
    if query.origin is not None:
        where.append(TaskGroup.origin == query.origin)
    if query.timestamp_last_used_min is not None:
        where.append(TaskGroup.timestamp_last_used >= query.timestamp_last_used_min)
    if query.timestamp_last_used_max is not None:
        where.append(TaskGroup.timestamp_last_used <= query.timestamp_last_used_max)
    if query.in_use is not None:
        used = (
            select(Task.taskgroupv2_id)
            .join(WorkflowTask, WorkflowTask.task_id == Task.id)
            .where(Task.taskgroupv2_id.is_not(None))
        )
        where.append(TaskGroup.id.in_(used) if query.in_use else TaskGroup.id.not_in(used))
    statement = select(TaskGroup).where(*where).order_by(TaskGroup.id)
    total, page, page_size, groups = await _page(session, statement, query.page, query.page_size)
    return TaskGroupPage(
        current_page=page,
        page_size=page_size,
        total_count=total,
        items=[await _read(session, group, TaskGroupReadSuperuser) for group in groups],
    )


async def admin_read_task_group(session: AsyncSession, group_id: int) -> TaskGroupReadSuperuser:
    result: TaskGroupReadSuperuser = await _read(
        session, await _group_or_404(session, group_id), TaskGroupReadSuperuser
    )
    return result


# -- core tasks (fractal-server 2.26) ------------------------------------------------------


async def make_core(session: AsyncSession, group_id: int) -> None:
    """Make every task of the group core, unless another core task has the same name, of a
    group with the same package name and version (422, nothing changed)."""
    await _group_or_404(session, group_id)
    which = Task.taskgroupv2_id == group_id
    await _check_no_core_twin(session, which)
    await _set_core(session, which, True)


async def make_tasks_core(session: AsyncSession, task_ids: Sequence[int]) -> None:
    """Make the tasks core (`admin/v2/task/make-core/`): each must be in a task group (404
    for the others), no two of them may have the same name, package name and version, and
    no other core task either (422, nothing changed)."""
    rows = (
        await session.execute(
            select(Task.id, Task.name, TaskGroup.pkg_name, TaskGroup.version)
            .join(TaskGroup, TaskGroup.id == Task.taskgroupv2_id)
            .where(Task.id.in_(task_ids))
        )
    ).all()
    _check_all_found(task_ids, {row.id for row in rows})
    if len({tuple(row[1:]) for row in rows}) != len(rows):
        raise Unprocessable(
            "Two of these tasks have the same name in groups of the same package and "
            "version: at most one of them can be core. Nothing was changed."
        )
    which = Task.id.in_(task_ids)
    await _check_no_core_twin(session, which)
    await _set_core(session, which, True)


async def make_tasks_not_core(session: AsyncSession, task_ids: Sequence[int]) -> None:
    """Make the tasks not core (`admin/v2/task/make-not-core/`; 404 if one is unknown)."""
    found = set(await session.scalars(select(Task.id).where(Task.id.in_(task_ids))))
    _check_all_found(task_ids, found)
    await _set_core(session, Task.id.in_(task_ids), False)


def _check_all_found(task_ids: Sequence[int], found: set[int]) -> None:
    missing = sorted(set(task_ids) - found)
    if missing:
        raise NotFound(f"No task with the ids {missing}. Nothing was changed.")


async def _check_no_core_twin(session: AsyncSession, which: ColumnElement[bool]) -> None:
    """422 if a core task other than one of `which` has the name of one of them, in a group
    of the same package name and version (fractal-server 2.26's rule)."""
    mine, other, theirs = aliased(TaskGroup), aliased(Task), aliased(TaskGroup)
    clash = (
        await session.execute(
            select(Task.name, mine.pkg_name, mine.version, other.id)
            .join(mine, mine.id == Task.taskgroupv2_id)
            .join(other, other.name == Task.name)
            .join(theirs, theirs.id == other.taskgroupv2_id)
            .where(
                which,
                other.id != Task.id,
                other.is_core.is_(True),
                theirs.pkg_name == mine.pkg_name,
                theirs.version == mine.version,
            )
            .order_by(Task.id, other.id)
            .limit(1)
        )
    ).first()
    if clash is not None:
        name, pkg_name, version, duplicate_id = clash
        raise Unprocessable(
            f"Task '{name}' of {pkg_name} {version} is core already as task {duplicate_id}: "
            "at most one task of a name, package and version can be core. Nothing was changed."
        )


async def make_not_core(session: AsyncSession, group_id: int) -> None:
    """Make every task of the group not core."""
    await _group_or_404(session, group_id)
    await _set_core(session, Task.taskgroupv2_id == group_id, False)


async def _set_core(session: AsyncSession, which: ColumnElement[bool], is_core: bool) -> None:
    # Through the ORM's update, so that `timestamp_updated` moves (the listing's cache).
    await session.execute(update(Task).where(which).values(is_core=is_core))


# -- deactivate, reactivate, delete --------------------------------------------------------

Work = Callable[[Database, TaskCollector, int, int, CollectionLog], Coroutine[Any, Any, None]]


async def _start(
    session: AsyncSession,
    collector: TaskCollector,
    user: CurrentUser,
    group: TaskGroup,
    action: str,
    work: Work,
) -> TaskGroupActivity:
    """Record a pending activity of `group` and run `work` once it is committed."""
    running = await session.scalar(
        select(TaskGroupActivity.id).where(
            TaskGroupActivity.taskgroupv2_id == group.id, TaskGroupActivity.status.in_(RUNNING)
        )
    )
    if running is not None:
        raise Unprocessable(
            f"TaskGroupV2 {group.id} has an activity in progress (TaskGroupActivityV2 "
            f"{running}): wait until it ends."
        )
    activity = TaskGroupActivity(
        user_id=user.id,
        taskgroupv2_id=group.id,
        pkg_name=group.pkg_name,
        version=group.version,
        status="pending",
        action=action,
        runner=collector.runner,
    )
    session.add(activity)
    await session.flush()
    log_file = collector.activity_log_file(activity)
    activity.log_file = str(log_file)
    await session.flush()
    activity_id, group_id, database = activity.id, group.id, collector.database

    def begin() -> None:
        log = CollectionLog(log_file)
        collector.start_activity(
            activity_id,
            lambda: _run(database, collector, activity_id, group_id, log, action, work),
        )

    after_commit(session, begin)
    return activity


async def _run(
    database: Database,
    collector: TaskCollector,
    activity_id: int,
    group_id: int,
    log: CollectionLog,
    action: str,
    work: Work,
) -> None:
    """An activity's frame: its status, its log, and its end whatever happens."""
    try:
        log.path.parent.mkdir(parents=True, exist_ok=True)
        log.write(f"START {action} of task group {group_id}")
        async with database.session(write=True) as session:
            activity = await session.get(TaskGroupActivity, activity_id)
            if activity is not None:
                activity.status = "ongoing"
        await work(database, collector, activity_id, group_id, log)
        log.write(f"END: {action} OK")
        async with database.session(write=True) as session:
            await end_activity(session, activity_id, "OK", log.read())
    except BaseException as error:
        if isinstance(error, asyncio.CancelledError):
            reason = "the server stopped during the activity"
        elif isinstance(error, CollectionError):
            reason = str(error)
        else:
            collector.log.exception("Task group activity %s failed", activity_id)
            reason = f"{type(error).__name__}: {error}"
        log.write(f"ERROR: {action} failed: {reason}")
        try:
            async with database.session(write=True) as session:
                await end_activity(session, activity_id, "failed", log.read())
        except Exception:
            collector.log.exception("Could not record the failure of activity %s", activity_id)
        if not isinstance(error, Exception):
            raise
    finally:
        log.path.unlink(missing_ok=True)


def _folder(group: TaskGroup) -> Path | None:
    """The folder a pip collection made for the group (None for other origins)."""
    if group.origin not in PIP_ORIGINS or group.path is None:
        return None
    return Path(group.path)


async def _load(database: Database, group_id: int) -> TaskGroup:
    async with database.session() as session:
        group = await session.get(TaskGroup, group_id)
        if group is None:
            raise CollectionError(f"TaskGroupV2 {group_id} no longer exists")
        session.expunge(group)
        return group


async def _deactivate(
    database: Database,
    collector: TaskCollector,
    activity_id: int,
    group_id: int,
    log: CollectionLog,
) -> None:
    group = await _load(database, group_id)
    folder = _folder(group)
    frozen = group.pip_freeze
    if folder is not None and frozen is None:
        log.write("no freeze recorded: taking it from the venv before removing it")
        frozen = await venv.freeze(folder, log)
    async with database.session(write=True) as session:
        stored = await session.get(TaskGroup, group_id)
        if stored is None:
            raise CollectionError(f"TaskGroupV2 {group_id} no longer exists")
        stored.active = False
        stored.pip_freeze = frozen
    if folder is None:
        log.write(f"origin '{group.origin}': no venv of ours to remove")
        return
    freed = await venv.remove_venv(folder, log)
    log.write(f"{freed / 1e6:.1f} MB freed; the freeze is kept for reactivation")


async def _reactivate(
    database: Database,
    collector: TaskCollector,
    activity_id: int,
    group_id: int,
    log: CollectionLog,
) -> None:
    group = await _load(database, group_id)
    folder = _folder(group)
    if folder is not None:
        assert group.pip_freeze is not None and group.python_version is not None
        interpreter = collector.interpreter(group.python_version)
        try:
            await venv.reinstall(interpreter, folder, group.pip_freeze, log)
            async with database.session() as session:
                commands = (
                    await session.execute(
                        select(Task.command_non_parallel, Task.command_parallel).where(
                            Task.taskgroupv2_id == group_id
                        )
                    )
                ).all()
            for command in (c for pair in commands for c in pair if c is not None):
                script = command.split()[1] if len(command.split()) > 1 else ""
                if script and not Path(script).exists():
                    raise CollectionError(f"the reinstalled venv has no {script}")
        except BaseException:
            log.write(f"removing the incomplete {folder / venv.VENV_SUBDIR}")
            await asyncio.to_thread(shutil.rmtree, folder / venv.VENV_SUBDIR, True)
            raise
        venv.restore_collection_file(folder)
    async with database.session(write=True) as session:
        stored = await session.get(TaskGroup, group_id)
        if stored is None:
            raise CollectionError(f"TaskGroupV2 {group_id} no longer exists")
        stored.active = True


async def _delete(
    database: Database,
    collector: TaskCollector,
    activity_id: int,
    group_id: int,
    log: CollectionLog,
) -> None:
    group = await _load(database, group_id)
    async with database.session(write=True) as session:
        # Checked again: a workflow may have taken one of its tasks since the request.
        await _check_not_in_use(session, group_id)
        tasks = (await session.scalars(select(Task).where(Task.taskgroupv2_id == group_id))).all()
        log.write(f"deleting {len(tasks)} tasks and the task group")
        for task in tasks:
            await session.delete(task)
        await session.flush()
        stored = await session.get(TaskGroup, group_id)
        if stored is not None:
            await session.delete(stored)
    folder = _folder(group)
    if folder is not None and folder.is_relative_to(collector.public_dir):
        await venv.remove_folder(folder, log)
    elif group.path is not None:
        log.write(f"{group.path} is not a folder of ours: left in place")


async def _check_not_in_use(session: AsyncSession, group_id: int) -> None:
    count = await session.scalar(
        select(func.count(distinct(WorkflowTask.workflow_id)))
        .join(Task, Task.id == WorkflowTask.task_id)
        .where(Task.taskgroupv2_id == group_id)
    )
    if count:
        raise Unprocessable(
            f"Cannot delete TaskGroupV2 {group_id}: its tasks are used in {count} workflow(s). "
            "Remove them from the workflows first."
        )


async def start_deactivation(
    session: AsyncSession,
    collector: TaskCollector,
    user: CurrentUser,
    group_id: int,
    *,
    admin: bool = False,
) -> TaskGroupActivity:
    group = await get_group_for_owner(session, user, group_id, admin=admin)
    if not group.active:
        raise Unprocessable(f"Cannot deactivate TaskGroupV2 {group_id}: it is not active.")
    folder = _folder(group)
    if folder is not None and not (folder / venv.VENV_SUBDIR).is_dir():
        raise Unprocessable(
            f"Cannot deactivate TaskGroupV2 {group_id}: its venv {folder / venv.VENV_SUBDIR} "
            "does not exist."
        )
    return await _start(session, collector, user, group, "deactivate", _deactivate)


async def start_reactivation(
    session: AsyncSession,
    collector: TaskCollector,
    user: CurrentUser,
    group_id: int,
    *,
    admin: bool = False,
) -> TaskGroupActivity:
    group = await get_group_for_owner(session, user, group_id, admin=admin)
    if group.active:
        raise Unprocessable(f"Cannot reactivate TaskGroupV2 {group_id}: it is active already.")
    folder = _folder(group)
    if folder is not None:
        if group.pip_freeze is None or group.python_version is None:
            raise Unprocessable(
                f"Cannot reactivate TaskGroupV2 {group_id}: it has no recorded pip freeze "
                "(or Python version) to rebuild its venv from."
            )
        if (folder / venv.VENV_SUBDIR).exists():
            raise Unprocessable(
                f"Cannot reactivate TaskGroupV2 {group_id}: {folder / venv.VENV_SUBDIR} exists "
                "already (remove it, or deactivate the group again)."
            )
        collector.interpreter(group.python_version)
    return await _start(session, collector, user, group, "reactivate", _reactivate)


async def start_deletion(
    session: AsyncSession,
    collector: TaskCollector,
    user: CurrentUser,
    group_id: int,
    *,
    admin: bool = False,
) -> TaskGroupActivity:
    group = await get_group_for_owner(session, user, group_id, admin=admin)
    await _check_not_in_use(session, group_id)
    return await _start(session, collector, user, group, "delete", _delete)
