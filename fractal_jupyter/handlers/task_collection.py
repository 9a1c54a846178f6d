from __future__ import annotations

from ..db.models import CollectionState, Task
from ..schemas.task import TaskRead
from ..schemas.task_collection import (
    CollectionStateQuery,
    CollectionStateRead,
    TaskCollectCustom,
    TaskCollectPip,
)
from ..services import task_collection
from .base import FractalHandler, operation


class TaskCollectPipHandler(FractalHandler):
    @operation(
        "Install a task package (PyPI name or local wheel) into its own venv and register "
        "its tasks, in the background",
        body=TaskCollectPip,
        response=CollectionStateRead,
        status=201,
    )
    async def post(self, body: TaskCollectPip) -> CollectionState:
        self.require_server_owner("collect tasks")
        return await task_collection.start_pip_collection(
            self.db_session, self.fractal.collector, self.user, body
        )


class TaskCollectCustomHandler(FractalHandler):
    @operation(
        "Register the tasks of a package installed already (a Python interpreter and a manifest)",
        body=TaskCollectCustom,
        response=list[TaskRead],
        status=201,
    )
    async def post(self, body: TaskCollectCustom) -> list[Task]:
        self.require_server_owner("collect tasks")
        return await task_collection.collect_custom(self.db_session, self.user, body)


class CollectionStateHandler(FractalHandler):
    @operation(
        "A task collection's status (with `verbose`, its log as it grows)",
        query=CollectionStateQuery,
        response=CollectionStateRead,
    )
    async def get(self, state_id: int, query: CollectionStateQuery) -> CollectionStateRead:
        return await task_collection.read_collection_state(
            self.db_session, self.fractal.collector, state_id, query.verbose
        )
