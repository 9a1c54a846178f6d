"""`admin/v2/...`: admins see every project, job and task, stop jobs and download their logs."""

from __future__ import annotations

from ..schemas.admin import (
    AdminJobQuery,
    AdminProjectQuery,
    AdminTaskQuery,
    JobUpdate,
    TaskIds,
    TaskInfo,
)
from ..schemas.job import JobRead
from ..schemas.project import ProjectRead
from ..schemas.query import ShowTmpLogsQuery
from ..services import admin, task_group
from .base import FractalHandler, operation
from .job import send_zip


class AdminProjectListHandler(FractalHandler):
    @operation(
        "Every project (by id, by member)",
        query=AdminProjectQuery,
        response=list[ProjectRead],
        admin=True,
    )
    async def get(self, query: AdminProjectQuery) -> list[ProjectRead]:
        return await admin.list_projects(self.db_session, query)


class AdminJobListHandler(FractalHandler):
    @operation(
        "Every job, filtered by user, project, dataset, workflow, status and time ranges",
        query=AdminJobQuery,
        response=list[JobRead],
        admin=True,
    )
    async def get(self, query: AdminJobQuery) -> list[JobRead]:
        return await admin.list_jobs(self.db_session, query)


class AdminJobHandler(FractalHandler):
    @operation("One job", query=ShowTmpLogsQuery, response=JobRead, admin=True)
    async def get(self, job_id: int, query: ShowTmpLogsQuery) -> JobRead:
        return await admin.get_job(self.db_session, job_id, query.show_tmp_logs)

    @operation(
        "Mark a job failed (a running one is also stopped)",
        body=JobUpdate,
        response=JobRead,
        admin=True,
    )
    async def patch(self, job_id: int, body: JobUpdate) -> JobRead:
        return await admin.mark_job_failed(self.db_session, job_id, body, self.fractal.launcher)


class AdminJobStopHandler(FractalHandler):
    @operation("Stop a running job", status=202, admin=True)
    async def get(self, job_id: int) -> None:
        await admin.stop_job(self.db_session, job_id, self.fractal.launcher)


class AdminJobDownloadHandler(FractalHandler):
    @operation("A job's folder as a zip archive", status=200, admin=True)
    async def get(self, job_id: int) -> None:
        send_zip(self, await admin.job_archive(self.db_session, job_id))


class AdminTaskListHandler(FractalHandler):
    @operation(
        "Tasks, with the workflows and projects that use them",
        query=AdminTaskQuery,
        response=list[TaskInfo],
        admin=True,
    )
    async def get(self, query: AdminTaskQuery) -> list[TaskInfo]:
        return await admin.query_tasks(self.db_session, query)


class AdminTaskMakeCoreHandler(FractalHandler):
    @operation("Make tasks core", body=TaskIds, admin=True)
    async def post(self, body: TaskIds) -> None:
        await task_group.make_tasks_core(self.db_session, body.root)


class AdminTaskMakeNotCoreHandler(FractalHandler):
    @operation("Make tasks not core", body=TaskIds, admin=True)
    async def post(self, body: TaskIds) -> None:
        await task_group.make_tasks_not_core(self.db_session, body.root)
