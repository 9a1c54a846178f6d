"""`api/v2/task-group/...` and `admin/v2/task-group/...` (fractal-server 2.26.0's paths)."""

from __future__ import annotations

from ..db.models import TaskGroupActivity
from ..schemas.task_group import (
    ActivityListQuery,
    AdminActivityListQuery,
    AdminTaskGroupListQuery,
    RenderedTaskGroupList,
    TaskGroupActivityPage,
    TaskGroupActivityRead,
    TaskGroupListQuery,
    TaskGroupPage,
    TaskGroupRead,
    TaskGroupReadSlim,
    TaskGroupReadSuperuser,
    TaskGroupUpdate,
)
from ..services import task_group
from .base import FractalHandler, operation


class TaskGroupListHandler(FractalHandler):
    @operation(
        "The task groups the caller may use, by package name (newest version first)",
        query=TaskGroupListQuery,
        response=list[tuple[str, list[TaskGroupReadSlim]]],
    )
    async def get(self, query: TaskGroupListQuery) -> RenderedTaskGroupList:
        return await task_group.list_task_groups(
            self.fractal.database, self.user, query.only_active, query.only_owner
        )


class TaskGroupHandler(FractalHandler):
    @operation(
        "One task group with its tasks (its owner, or a member of its user group)",
        response=TaskGroupRead,
    )
    async def get(self, task_group_id: int) -> TaskGroupRead:
        return await task_group.read_task_group(self.db_session, self.user, task_group_id)

    @operation(
        "Share a task group with a user group of its owner's, or with none (its owner)",
        body=TaskGroupUpdate,
        response=TaskGroupRead,
    )
    async def patch(self, task_group_id: int, body: TaskGroupUpdate) -> TaskGroupRead:
        result: TaskGroupRead = await task_group.update_task_group(
            self.db_session, self.user, task_group_id, body
        )
        return result


class TaskGroupDeactivateHandler(FractalHandler):
    @operation(
        "Deactivate a task group: keep its pip freeze, remove its venv (in the background)",
        response=TaskGroupActivityRead,
    )
    async def post(self, task_group_id: int) -> TaskGroupActivity:
        self.require_server_owner("deactivate task groups")
        return await task_group.start_deactivation(
            self.db_session, self.fractal.collector, self.user, task_group_id
        )


class TaskGroupReactivateHandler(FractalHandler):
    @operation(
        "Reactivate a task group: rebuild its venv from its pip freeze (in the background)",
        response=TaskGroupActivityRead,
    )
    async def post(self, task_group_id: int) -> TaskGroupActivity:
        self.require_server_owner("reactivate task groups")
        return await task_group.start_reactivation(
            self.db_session, self.fractal.collector, self.user, task_group_id
        )


class TaskGroupDeleteHandler(FractalHandler):
    @operation(
        "Delete a task group no workflow uses: its tasks, venv and files (in the background)",
        response=TaskGroupActivityRead,
        status=202,
    )
    async def post(self, task_group_id: int) -> TaskGroupActivity:
        self.require_server_owner("delete task groups")
        return await task_group.start_deletion(
            self.db_session, self.fractal.collector, self.user, task_group_id
        )


class TaskGroupActivityListHandler(FractalHandler):
    @operation(
        "The caller's task-group activities (collections, deactivations...), newest first",
        query=ActivityListQuery,
        response=list[TaskGroupActivityRead],
    )
    async def get(self, query: ActivityListQuery) -> list[TaskGroupActivityRead]:
        return await task_group.list_activities(self.db_session, self.user, query)


class TaskGroupActivityHandler(FractalHandler):
    @operation("One task-group activity, with its log as it grows", response=TaskGroupActivityRead)
    async def get(self, task_group_activity_id: int) -> TaskGroupActivityRead:
        return await task_group.get_activity(
            self.db_session, self.fractal.collector, self.user, task_group_activity_id
        )


class AdminTaskGroupListHandler(FractalHandler):
    @operation(
        "Every task group, filtered and paged",
        query=AdminTaskGroupListQuery,
        response=TaskGroupPage,
        admin=True,
    )
    async def get(self, query: AdminTaskGroupListQuery) -> TaskGroupPage:
        return await task_group.admin_list_task_groups(self.db_session, query)


class AdminTaskGroupHandler(FractalHandler):
    @operation("One task group", response=TaskGroupReadSuperuser, admin=True)
    async def get(self, task_group_id: int) -> TaskGroupReadSuperuser:
        return await task_group.admin_read_task_group(self.db_session, task_group_id)

    @operation(
        "Share a task group with any user group, or with none",
        body=TaskGroupUpdate,
        response=TaskGroupReadSuperuser,
        admin=True,
    )
    async def patch(self, task_group_id: int, body: TaskGroupUpdate) -> TaskGroupReadSuperuser:
        result: TaskGroupReadSuperuser = await task_group.update_task_group(
            self.db_session, self.user, task_group_id, body, admin=True
        )
        return result


class AdminTaskGroupDeactivateHandler(FractalHandler):
    @operation("Deactivate any task group", response=TaskGroupActivityRead, admin=True)
    async def post(self, task_group_id: int) -> TaskGroupActivity:
        self.require_server_owner("deactivate task groups")
        return await task_group.start_deactivation(
            self.db_session, self.fractal.collector, self.user, task_group_id, admin=True
        )


class AdminTaskGroupReactivateHandler(FractalHandler):
    @operation("Reactivate any task group", response=TaskGroupActivityRead, admin=True)
    async def post(self, task_group_id: int) -> TaskGroupActivity:
        self.require_server_owner("reactivate task groups")
        return await task_group.start_reactivation(
            self.db_session, self.fractal.collector, self.user, task_group_id, admin=True
        )


class AdminTaskGroupDeleteHandler(FractalHandler):
    @operation(
        "Delete any task group no workflow uses",
        response=TaskGroupActivityRead,
        status=202,
        admin=True,
    )
    async def post(self, task_group_id: int) -> TaskGroupActivity:
        self.require_server_owner("delete task groups")
        return await task_group.start_deletion(
            self.db_session, self.fractal.collector, self.user, task_group_id, admin=True
        )


class AdminTaskGroupMakeCoreHandler(FractalHandler):
    @operation("Make every task of a task group core", admin=True)
    async def post(self, task_group_id: int) -> None:
        await task_group.make_core(self.db_session, task_group_id)


class AdminTaskGroupMakeNotCoreHandler(FractalHandler):
    @operation("Make every task of a task group not core", admin=True)
    async def post(self, task_group_id: int) -> None:
        await task_group.make_not_core(self.db_session, task_group_id)


class AdminTaskGroupActivityListHandler(FractalHandler):
    @operation(
        "Every task-group activity, filtered and paged",
        query=AdminActivityListQuery,
        response=TaskGroupActivityPage,
        admin=True,
    )
    async def get(self, query: AdminActivityListQuery) -> TaskGroupActivityPage:
        return await task_group.admin_list_activities(self.db_session, query)
