from __future__ import annotations

from ..db.models import Task
from ..schemas.query import TaskCreateQuery, TaskListQuery
from ..schemas.task import TaskCreate, TaskRead, TaskUpdate
from ..services import task
from .base import FractalHandler, operation


class TaskListHandler(FractalHandler):
    @operation("Every task of the catalogue", query=TaskListQuery, response=list[TaskRead])
    async def get(self, query: TaskListQuery) -> list[TaskRead]:
        return await task.list_tasks(
            self.db_session, query.args_schema_parallel, query.args_schema_non_parallel
        )

    @operation(
        "Create a task owned by the caller, in a task group of its own",
        body=TaskCreate,
        query=TaskCreateQuery,
        response=TaskRead,
        status=201,
    )
    async def post(self, body: TaskCreate, query: TaskCreateQuery) -> Task:
        return await task.create_task(
            self.db_session,
            self.user,
            body,
            private=query.private,
            user_group_id=query.user_group_id,
        )


class TaskHandler(FractalHandler):
    @operation("One task", response=TaskRead)
    async def get(self, task_id: int) -> Task:
        return await task.get_task(self.db_session, task_id)

    @operation("Change a task (its owner or an admin)", body=TaskUpdate, response=TaskRead)
    async def patch(self, task_id: int, body: TaskUpdate) -> Task:
        return await task.update_task(self.db_session, self.user, task_id, body)

    @operation("Delete a task no workflow uses (its owner or an admin)", status=204)
    async def delete(self, task_id: int) -> None:
        await task.delete_task(self.db_session, self.user, task_id)
