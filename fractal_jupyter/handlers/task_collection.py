from __future__ import annotations

from ..db.models import CollectionState, Task
from ..errors import Unprocessable
from ..schemas.query import TaskCreateQuery
from ..schemas.task import TaskRead
from ..schemas.task_collection import (
    CollectionStateQuery,
    CollectionStateRead,
    TaskCollectCustom,
    TaskCollectPip,
    TaskCollectPipForm,
)
from ..schemas.task_group import TaskGroupActivityRead
from ..services import task_collection, wheel_upload
from .base import FractalHandler, by_content_type, operation
from .limits import DEFAULT_MAX_WHEEL_UPLOAD_BYTES


class TaskCollectPipHandler(FractalHandler):
    def body_size_limit(self) -> tuple[str, int]:
        """A multipart form carries a wheel: `max_wheel_upload_bytes`."""
        content_type = self.request.headers.get("Content-Type", "")
        if content_type.split(";", 1)[0].strip().lower() == "multipart/form-data":
            name = "max_wheel_upload_bytes"
            limit: int = self.fractal.config.get(name, DEFAULT_MAX_WHEEL_UPLOAD_BYTES)
            return name, limit
        return super().body_size_limit()

    @operation(
        "Install a task package (PyPI name or local wheel) into its own venv and register "
        "its tasks, in the background",
        body=TaskCollectPip,
        query=TaskCreateQuery,
        response=CollectionStateRead,
        status=201,
    )
    async def _post_json(self, body: TaskCollectPip, query: TaskCreateQuery) -> CollectionState:
        self.require_server_owner("collect tasks")
        return await task_collection.start_pip_collection(
            self.db_session,
            self.fractal.collector,
            self.user,
            body,
            private=query.private,
            user_group_id=query.user_group_id,
        )

    @operation(
        "The same from a form (fractal-server 2.9+): a PyPI `package`, or a wheel uploaded as "
        "`file`; the answer is its `collect` activity (api/v2/task-group/activity/{id}/)",
        form=TaskCollectPipForm,
        query=TaskCreateQuery,
        response=TaskGroupActivityRead,
        status=202,
    )
    async def _post_form(
        self, form: TaskCollectPipForm, query: TaskCreateQuery
    ) -> TaskGroupActivityRead:
        self.require_server_owner("collect tasks")
        return await wheel_upload.start_form_collection(
            self.db_session,
            self.fractal.collector,
            self.user,
            form,
            self._uploaded_wheel(),
            private=query.private,
            user_group_id=query.user_group_id,
        )

    def _uploaded_wheel(self) -> wheel_upload.UploadedFile | None:
        parts = self.request.files.get("file")
        if not parts:
            return None
        if len(parts) > 1:
            raise Unprocessable("The form has several `file` parts; upload one wheel.")
        return wheel_upload.UploadedFile(parts[0].filename, parts[0].body)

    post = by_content_type(_post_json, _post_form)


class TaskCollectCustomHandler(FractalHandler):
    @operation(
        "Register the tasks of a package installed already (a Python interpreter and a manifest)",
        body=TaskCollectCustom,
        query=TaskCreateQuery,
        response=list[TaskRead],
        status=201,
    )
    async def post(self, body: TaskCollectCustom, query: TaskCreateQuery) -> list[Task]:
        self.require_server_owner("collect tasks")
        return await task_collection.collect_custom(
            self.db_session,
            self.user,
            body,
            private=query.private,
            user_group_id=query.user_group_id,
        )


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
