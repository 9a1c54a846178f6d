from __future__ import annotations

import functools

from ..db.models import Job
from ..schemas.job import JobCreate, JobProgressRead, JobRead, StatusRead
from ..schemas.query import LogQuery, ShowTmpLogsQuery, StatusQuery, SubmitQuery
from ..services import job
from .base import FractalHandler, operation


class JobSubmitHandler(FractalHandler):
    @operation(
        "Run a slice of a workflow on a dataset",
        query=SubmitQuery,
        body=JobCreate,
        response=JobRead,
        status=202,
    )
    async def post(self, project_id: int, query: SubmitQuery, body: JobCreate) -> Job:
        self.require_server_owner("submit jobs")
        submitted = await job.submit_job(
            self.db_session,
            self.user,
            project_id,
            query.workflow_id,
            query.dataset_id,
            body,
            self.fractal.runner,
            self.fractal.launcher,
            self.fractal.admin_users,
        )
        self.after_commit = functools.partial(self._start, submitted.id)
        return submitted

    async def _start(self, job_id: int) -> None:
        """The job row is committed: its process starts now (never before), then the answer
        goes out, so a server stopped after answering leaves no job without its process."""
        state = self.fractal
        await job.start_job_process(
            state.database, job_id, state.launcher, warm=state.runner.warm_start
        )
        self.fractal.job_submitted()


class UserJobListHandler(FractalHandler):
    @operation("The jobs of all the caller's projects", query=LogQuery, response=list[JobRead])
    async def get(self, query: LogQuery) -> list[JobRead]:
        return await job.list_user_jobs(self.db_session, self.user, query.log)


class ProjectJobListHandler(FractalHandler):
    @operation("A project's jobs", query=LogQuery, response=list[JobRead])
    async def get(self, project_id: int, query: LogQuery) -> list[JobRead]:
        return await job.list_project_jobs(self.db_session, self.user, project_id, query.log)


class JobHandler(FractalHandler):
    @operation(
        "One job (with `show_tmp_logs`, the live log of a running job)",
        query=ShowTmpLogsQuery,
        response=JobRead,
    )
    async def get(self, project_id: int, job_id: int, query: ShowTmpLogsQuery) -> JobRead:
        return await job.get_job(
            self.db_session, self.user, project_id, job_id, query.show_tmp_logs
        )


class JobStopHandler(FractalHandler):
    @operation("Stop a running job (its task processes are ended; the job fails)", status=202)
    async def get(self, project_id: int, job_id: int) -> None:
        await job.stop_job(self.db_session, self.user, project_id, job_id, self.fractal.launcher)


class JobDownloadHandler(FractalHandler):
    @operation("The job folder as a zip archive", status=200)
    async def get(self, project_id: int, job_id: int) -> None:
        send_zip(self, await job.job_archive(self.db_session, self.user, project_id, job_id))


def send_zip(handler: FractalHandler, archive: job.FolderArchive) -> None:
    """Answer with a zip archive, as fractal-server 2.6.4 sends job folders.

    The archive is written in a worker thread and streamed as it grows: a large folder
    neither holds the event loop nor sits whole in memory.
    """
    handler.set_header("Content-Type", "application/x-zip-compressed")
    handler.set_header("Content-Disposition", f'attachment; filename="{archive.filename}"')
    handler.raw_stream = functools.partial(job.write_folder_zip, archive.folder)


class StatusHandler(FractalHandler):
    @operation("Status of each workflow task on a dataset", query=StatusQuery, response=StatusRead)
    async def get(self, project_id: int, query: StatusQuery) -> StatusRead:
        return await job.workflow_status(
            self.db_session, self.user, project_id, query.dataset_id, query.workflow_id
        )


class JobProgressHandler(FractalHandler):
    @operation(
        "A job's progress per workflow task: status and calls (not in fractal-server 2.6.4)",
        response=JobProgressRead,
    )
    async def get(self, project_id: int, job_id: int) -> JobProgressRead:
        return await job.job_progress(self.db_session, self.user, project_id, job_id)
