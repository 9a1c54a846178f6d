"""Jobs: submission (with fractal-server 2.6.4's checks and ours), reading, stop, status."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import time
import zipfile
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer
from sqlalchemy.orm.attributes import set_committed_value

from ..db.engine import Database
from ..db.models import (
    Dataset,
    HistoryRun,
    HistoryUnit,
    Image,
    Job,
    Project,
    Workflow,
    WorkflowTask,
    utc_now,
)
from ..errors import FractalError, NotFound, Unprocessable
from ..runner.files import WORKFLOW_LOG, JobSpec
from ..runner.heartbeat import request_stop
from ..runner.interface import WorkflowTaskSpec
from ..runner.launcher import JobLauncher
from ..runner.settings import Backend, RunnerSettings
from ..schemas.filters import IMAGE_STATUS_KEY, ImageFilterQuery
from ..schemas.job import JobCreate, JobProgressRead, JobRead, StatusRead, TaskProgressRead
from .access import (
    get_dataset_for_member,
    get_project_for_member,
    get_workflow_for_member,
    member_project_ids,
)
from .images import list_all_images, matching_images
from .task_group import mark_used
from .task_trust import require_runnable_tasks
from .user_settings import slurm_account_for_job
from .users import CurrentUser, email_for
from .workflowtask import check_arguments

# How long a committed submission may wait for its process before it counts as never started.
START_GRACE = timedelta(seconds=60)


class TooManyRequests(FractalError):
    status_code = 429


def _timestamp(value: Any) -> str:
    return str(value.isoformat())


def project_dump(project: Project) -> dict[str, Any]:
    return {
        "id": project.id,
        "name": project.name,
        "timestamp_created": _timestamp(project.timestamp_created),
    }


def workflow_dump(workflow: Workflow) -> dict[str, Any]:
    return {
        "id": workflow.id,
        "name": workflow.name,
        "project_id": workflow.project_id,
        "timestamp_created": _timestamp(workflow.timestamp_created),
    }


def dataset_dump(dataset: Dataset) -> dict[str, Any]:
    return {
        "id": dataset.id,
        "name": dataset.name,
        "project_id": dataset.project_id,
        "timestamp_created": _timestamp(dataset.timestamp_created),
        "zarr_dir": dataset.zarr_dir,
        "filters": dataset.filters,
    }


def workflow_task_dump(workflow_task: WorkflowTask) -> dict[str, Any]:
    task = workflow_task.task
    return {
        "id": workflow_task.id,
        "workflow_id": workflow_task.workflow_id,
        "order": workflow_task.order,
        "input_filters": workflow_task.input_filters,
        "task_id": task.id,
        "task": {
            "id": task.id,
            "name": task.name,
            "type": task.type,
            "command_non_parallel": task.command_non_parallel,
            "command_parallel": task.command_parallel,
            "source": task.source,
            "owner": task.owner,
            "version": task.version,
            "input_types": task.input_types,
            "output_types": task.output_types,
        },
    }


def workflow_task_spec(workflow_task: WorkflowTask) -> WorkflowTaskSpec:
    task = workflow_task.task
    return WorkflowTaskSpec(
        id=workflow_task.id,
        order=workflow_task.order,
        task_id=task.id,
        task_name=task.name,
        task_type=task.type,
        command_non_parallel=task.command_non_parallel,
        command_parallel=task.command_parallel,
        args_non_parallel=workflow_task.args_non_parallel,
        args_parallel=workflow_task.args_parallel,
        meta_non_parallel=workflow_task.meta_non_parallel,
        meta_parallel=workflow_task.meta_parallel,
        input_filters=workflow_task.input_filters,
        input_types=task.input_types,
        output_types=task.output_types,
        dump=workflow_task_dump(workflow_task),
        run_dumps=history_run_dumps(workflow_task),
    )


def history_run_dumps(workflow_task: WorkflowTask) -> dict[str, Any]:
    """The workflow task (arguments and meta included) and its task, frozen for the run
    history (fractal-server 2.26's `HistoryRun.workflowtask_dump` and task fields)."""
    task = workflow_task.task
    return {
        "workflowtask": {
            "id": workflow_task.id,
            "workflow_id": workflow_task.workflow_id,
            "order": workflow_task.order,
            "task_type": workflow_task.task_type,
            "task_id": task.id,
            "meta_non_parallel": workflow_task.meta_non_parallel,
            "meta_parallel": workflow_task.meta_parallel,
            "args_non_parallel": workflow_task.args_non_parallel,
            "args_parallel": workflow_task.args_parallel,
            "input_filters": workflow_task.input_filters,
        },
        "task": {
            "id": task.id,
            "name": task.name,
            "type": task.type,
            "source": task.source,
            "version": task.version,
            "command_non_parallel": task.command_non_parallel,
            "command_parallel": task.command_parallel,
            "args_schema_non_parallel": task.args_schema_non_parallel,
            "args_schema_parallel": task.args_schema_parallel,
            "input_types": task.input_types,
            "output_types": task.output_types,
        },
    }


def _task_range(workflow: Workflow, data: JobCreate) -> tuple[int, int]:
    count = len(workflow.task_list)
    first = 0 if data.first_task_index is None else data.first_task_index
    last = count - 1 if data.last_task_index is None else data.last_task_index
    if last > count - 1:
        raise Unprocessable(
            f"last_task_index={last} is larger than the index of the workflow's last task "
            f"({count - 1})"
        )
    if first > last:
        raise Unprocessable(f"first_task_index={first} is larger than last_task_index={last}")
    return first, last


async def _submitted_jobs(session: AsyncSession, **where: int) -> Sequence[Job]:
    statement = select(Job).where(Job.status == "submitted")
    for column, value in where.items():
        statement = statement.where(getattr(Job, column) == value)
    return (await session.scalars(statement.order_by(Job.id))).all()


async def check_no_submitted_job(session: AsyncSession, what: str, **where: int) -> None:
    """Deleting a project, dataset or workflow that a running job uses is refused."""
    jobs = await _submitted_jobs(session, **where)
    if jobs:
        ids = ", ".join(str(job.id) for job in jobs)
        raise Unprocessable(f"Cannot delete {what} because it is linked to active job(s) {ids}.")


async def submit_job(
    session: AsyncSession,
    user: CurrentUser,
    project_id: int,
    workflow_id: int,
    dataset_id: int,
    data: JobCreate,
    settings: RunnerSettings,
    launcher: JobLauncher,
    admin_users: Collection[str],
) -> Job:
    project = await get_project_for_member(session, project_id, user)
    dataset = await get_dataset_for_member(session, project_id, dataset_id, user)
    workflow = await get_workflow_for_member(session, project_id, workflow_id, user)
    if not workflow.task_list:
        raise Unprocessable(f"Workflow {workflow_id} has empty task list")
    first, last = _task_range(workflow, data)
    if await _submitted_jobs(session, dataset_id=dataset_id):
        raise Unprocessable(f"Dataset {dataset_id} is already in use in submitted job(s).")
    recent = await session.scalar(
        select(Job.id).where(
            Job.project_id == project_id,
            Job.workflow_id == workflow_id,
            Job.dataset_id == dataset_id,
            Job.start_timestamp > utc_now() - timedelta(seconds=settings.submit_rate_limit_seconds),
        )
    )
    if recent is not None:
        raise TooManyRequests(
            f"The endpoint 'POST /api/v2/project/{project_id}/job/submit/' was called too "
            f"often for workflow {workflow_id} and dataset {dataset_id}: wait "
            f"{settings.submit_rate_limit_seconds:g} seconds."
        )
    selected = workflow.task_list[first : last + 1]
    await require_runnable_tasks(
        session,
        user,
        (workflow_task.task for workflow_task in selected),
        admin_users,
        action="Cannot submit the job",
    )
    await mark_used(session, (workflow_task.task for workflow_task in selected))
    problems = []
    for workflow_task in selected:
        problems += check_arguments(
            workflow_task.task,
            workflow_task.args_non_parallel,
            workflow_task.args_parallel,
            location=["workflow_task", workflow_task.order],
            require_all=True,
        )
    if problems:
        raise Unprocessable(problems)
    slurm_account = await slurm_account_for_job(session, user.id, data.slurm_account)

    job = Job(
        project_id=project_id,
        workflow_id=workflow_id,
        dataset_id=dataset_id,
        user_email=email_for(user.username),
        owner=user.username,
        slurm_account=slurm_account,
        worker_init=data.worker_init,
        project_dump=project_dump(project),
        workflow_dump=workflow_dump(workflow),
        dataset_dump=dataset_dump(dataset),
        first_task_index=first,
        last_task_index=last,
        backend=settings.backend.value,
        runner=launcher.runner,
        progress={},
        attribute_filters=data.attribute_filters,
        type_filters=data.type_filters,
    )
    session.add(job)
    await session.flush()
    stamp = job.start_timestamp.strftime("%Y%m%d_%H%M%S")
    job_dir = settings.working_dir / (
        f"proj_v2_{project_id:07d}_wf_{workflow_id:07d}_job_{job.id:07d}_{stamp}"
    )
    job_dir.mkdir(parents=True, exist_ok=False)
    job.working_dir = str(job_dir)
    job.working_dir_user = settings.job_dir_for_user(job_dir)
    JobSpec(
        job_id=job.id,
        zarr_dir=dataset.zarr_dir,
        images=await list_all_images(session, dataset),
        filters=dataset.filters,
        tasks=[workflow_task_spec(workflow_task) for workflow_task in selected],
        slurm_account=slurm_account,
        worker_init=data.worker_init,
        **settings.spec_fields(),
        **await job_filters_spec(session, dataset.id, selected[0].id, data),
    ).write(job_dir)
    # The process starts once this row is committed (`start_job_process`): a failed commit
    # must not leave a job running that no row knows.
    return job


async def job_filters_spec(
    session: AsyncSession, dataset_id: int, first_wftask_id: int, data: JobCreate
) -> dict[str, Any]:
    """The job's filters for its spec. The image status pseudo-attribute is resolved here,
    for the first task (the images it selects are the first task's only candidates); the
    other filters are the job process's, at every task."""
    attributes = {
        key: values for key, values in data.attribute_filters.items() if key != IMAGE_STATUS_KEY
    }
    spec: dict[str, Any] = {"attribute_filters": attributes, "type_filters": data.type_filters}
    if IMAGE_STATUS_KEY in data.attribute_filters:
        query = ImageFilterQuery(
            attribute_filters=data.attribute_filters, type_filters=data.type_filters
        )
        matching = matching_images(dataset_id, first_wftask_id, query)
        urls = await session.scalars(
            select(Image.zarr_url).where(Image.id.in_(matching.ids)), matching.parameters
        )
        spec["first_task_zarr_urls"] = list(urls)
    return spec


async def start_job_process(
    database: Database, job_id: int, launcher: JobLauncher, *, warm: bool = True
) -> None:
    """Start the process of a committed submission and record its pid.

    A start that fails fails the job with the reason. A pid that cannot be recorded (the
    database went away, or the job was failed meanwhile as never started) stops the process.
    """
    async with database.session() as session:
        job = await session.get(Job, job_id)
        if job is None or job.status != "submitted" or job.pid is not None:
            return
        job_dir = Path(job.working_dir or "")
        on_slurm = launcher.places_on_slurm(Backend(job.backend))
        account = job.slurm_account
    pid: int | None = None
    runner = launcher.runner
    problem = ""
    try:
        if on_slurm:
            pid, runner = await asyncio.to_thread(launcher.start_on_slurm, job_dir, job_id, account)
        else:
            pid = launcher.start(job_dir, warm=warm)
    except OSError as error:
        problem = f"JOB ERROR in Fractal job {job_id}:\nThe job process could not start: {error}"
    try:
        async with database.session(write=True) as session:
            job = await session.scalar(select(Job).where(Job.id == job_id).with_for_update())
            if job is None or job.status != "submitted" or job.pid is not None:
                launcher.abandon(pid, runner)
            elif pid is None:
                job.status = "failed"
                job.end_timestamp = utc_now()
                job.log = problem
            else:
                job.pid = pid
                job.runner = runner
    except BaseException:
        launcher.abandon(pid, runner)
        raise


def never_started(job: Job) -> str | None:
    """Why a submitted job without a process is failed, once it waited `START_GRACE` (the
    server stopped between committing it and starting its process); None while it may still
    start.

    Such a job is failed, not started late: its images are those of the submission, and a
    job that starts by itself at some later server start would surprise its user.
    """
    if job.pid is not None or utc_now() - job.start_timestamp < START_GRACE:
        return None
    return (
        f"JOB ERROR in Fractal job {job.id}:\nThe job process never started: the server "
        "stopped between recording the submission and starting it. Nothing ran; submit "
        "the job again."
    )


def job_read(job: Job, *, log: bool = True, live_log: bool = False) -> JobRead:
    model = JobRead.model_validate(job)
    if live_log and job.status == "submitted" and job.working_dir:
        model = model.model_copy(update={"log": read_workflow_log(Path(job.working_dir))})
    if not log:
        model = model.model_copy(update={"log": None})
    return model


def read_workflow_log(job_dir: Path) -> str:
    try:
        return (job_dir / WORKFLOW_LOG).read_text(errors="replace")
    except FileNotFoundError:
        return ""


async def list_user_jobs(session: AsyncSession, user: CurrentUser, log: bool) -> list[JobRead]:
    return await _read_jobs(session, Job.project_id.in_(member_project_ids(user)), log)


async def list_project_jobs(
    session: AsyncSession, user: CurrentUser, project_id: int, log: bool
) -> list[JobRead]:
    await get_project_for_member(session, project_id, user)
    return await _read_jobs(session, Job.project_id == project_id, log)


async def _read_jobs(session: AsyncSession, where: ColumnElement[bool], log: bool) -> list[JobRead]:
    """The jobs that match, oldest first; without `log`, their logs are not even read (a
    long job's log can be megabytes, and the job list asks for hundreds of jobs)."""
    query = select(Job).where(where).order_by(Job.id)
    if log:
        return [job_read(job) for job in await session.scalars(query)]
    jobs = (await session.scalars(query.options(defer(Job.log)))).all()
    for job in jobs:
        set_committed_value(job, "log", None)  # what job_read would drop; not a change
    return [job_read(job, log=False) for job in jobs]


async def list_workflow_jobs(
    session: AsyncSession, user: CurrentUser, project_id: int, workflow_id: int
) -> list[JobRead]:
    await get_workflow_for_member(session, project_id, workflow_id, user)
    jobs = await session.scalars(select(Job).where(Job.workflow_id == workflow_id).order_by(Job.id))
    return [job_read(job) for job in jobs]


async def get_job_for_member(
    session: AsyncSession, project_id: int, job_id: int, user: CurrentUser
) -> Job:
    await get_project_for_member(session, project_id, user)
    job = await session.get(Job, job_id)
    if job is None:
        raise NotFound("Job not found")
    if job.project_id != project_id:
        raise Unprocessable(f"Invalid project_id={project_id} for job_id={job_id}")
    return job


async def get_job(
    session: AsyncSession, user: CurrentUser, project_id: int, job_id: int, show_tmp_logs: bool
) -> JobRead:
    job = await get_job_for_member(session, project_id, job_id, user)
    return job_read(job, live_log=show_tmp_logs)


async def stop_job(
    session: AsyncSession,
    user: CurrentUser,
    project_id: int,
    job_id: int,
    launcher: JobLauncher,
) -> None:
    """Ask the job process to stop; it ends its task processes and reports the job failed."""
    job = await get_job_for_member(session, project_id, job_id, user)
    stop_job_process(job, launcher)


def stop_job_process(job: Job, launcher: JobLauncher) -> None:
    """The stop of a job already looked up (by a member, or by an admin)."""
    if job.status != "submitted":
        raise Unprocessable(f"Job {job.id} is not running (its status is '{job.status}').")
    if job.pid is None:
        raise Unprocessable(
            f"Job {job.id} is starting (its process has not started yet): stop it again in a "
            "moment."
        )
    here = job.runner == launcher.runner
    # The request in the job folder tells the job process that its user stopped it; one on
    # another host reads it at its next heartbeat, one here gets a SIGTERM at once as well.
    try:
        if job.working_dir:
            request_stop(Path(job.working_dir))
    except OSError as error:
        if not here:
            raise Unprocessable(
                f"Job {job.id} runs on {job.runner.rsplit(':', 1)[0]}, and the request to stop "
                f"it could not be written to its folder: {error}"
            ) from error
    if here:
        launcher.stop(job.pid)
    else:
        launcher.stop_placed(job.runner)


# Bytes of a job file read at a time into its archive.
ARCHIVE_READ_BYTES = 1024 * 1024


class Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class FolderArchive:
    """A job folder to send as a zip archive named `filename` (see `write_folder_zip`)."""

    filename: str
    folder: Path


def _archived_files(folder: Path) -> Iterator[tuple[Path, str]]:
    """The regular files under `folder` and their names in the archive, in name order.

    Symbolic links are left out, whether to files or folders, inside the folder or not: a
    link to a file outside would put that file's content in the archive.
    """
    for root, folders, files in os.walk(folder):  # linked folders are not entered
        folders.sort()
        for name in sorted(files):
            path = Path(root, name)
            yield path, path.relative_to(folder).as_posix()


def write_folder_zip(folder: Path, output: Writable) -> None:
    """Write a zip archive of `folder`'s regular files to `output` (need not be seekable).

    Each file is opened without following a link (O_NOFOLLOW), so a file replaced by a link
    meanwhile is skipped too; files that vanish or cannot be read are skipped.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK  # O_NONBLOCK: a FIFO never blocks
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, name in _archived_files(folder):
            try:
                descriptor = os.open(path, flags)
            except OSError:
                continue
            with open(descriptor, "rb") as source:
                status = os.fstat(source.fileno())
                if not stat.S_ISREG(status.st_mode):
                    continue
                modified = time.localtime(status.st_mtime)[:6]
                info = zipfile.ZipInfo(name, max(modified, (1980, 1, 1, 0, 0, 0)))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = (status.st_mode & 0xFFFF) << 16
                info.file_size = status.st_size
                with archive.open(info, "w") as target:
                    shutil.copyfileobj(source, target, ARCHIVE_READ_BYTES)


async def job_archive(
    session: AsyncSession, user: CurrentUser, project_id: int, job_id: int
) -> FolderArchive:
    job = await get_job_for_member(session, project_id, job_id, user)
    return job_folder_archive(job)


def job_folder_archive(job: Job) -> FolderArchive:
    """The job's folder to send as a zip archive (for a member, or for an admin)."""
    if not job.working_dir or not Path(job.working_dir).is_dir():
        raise NotFound(f"The folder of job {job.id} is gone.")
    folder = Path(job.working_dir)
    return FolderArchive(f"{folder.name}_archive.zip", folder)


async def workflow_status(
    session: AsyncSession, user: CurrentUser, project_id: int, dataset_id: int, workflow_id: int
) -> StatusRead:
    """Per workflow task: submitted / done / failed, as fractal-server 2.6.4 computes it."""
    dataset = await get_dataset_for_member(session, project_id, dataset_id, user)
    workflow = await get_workflow_for_member(session, project_id, workflow_id, user)
    running = await _submitted_jobs(session, dataset_id=dataset_id, workflow_id=workflow_id)
    if len(running) > 1:
        raise Unprocessable(
            f"Expected one submitted job for dataset {dataset_id} and workflow {workflow_id}, "
            f"found {len(running)}."
        )
    status: dict[str, str] = {}
    for item in dataset.history:
        status[str(item["workflowtask"]["id"])] = item["status"]
    last_valid: int | None = None
    if running:
        job = running[0]
        for workflow_task in workflow.task_list[job.first_task_index : job.last_task_index + 1]:
            status[str(workflow_task.id)] = "submitted"
        if job.last_task_index < len(workflow.task_list):
            last_valid = workflow.task_list[job.last_task_index].id
        for workflow_task_id, progress in job.progress.items():
            if progress.get("status") in ("done", "failed"):
                status[workflow_task_id] = progress["status"]
    elif dataset.history:
        last_valid = dataset.history[-1]["workflowtask"]["id"]
    result: dict[str, Any] = {}
    for workflow_task in workflow.task_list:
        key = str(workflow_task.id)
        if key in status:
            result[key] = status[key]
            if status[key] == "failed":
                break
        if workflow_task.id == last_valid:
            break
    return StatusRead(status=result)


async def _image_counts(session: AsyncSession, job_id: int) -> dict[int, Counter[str]]:
    """Per workflow task of the job, its input images by status: each image has the status
    of the job's last unit (task call) that names it, so a compound task's init call counts
    until the image's own call reports."""
    rows = await session.execute(
        select(HistoryRun.workflowtask_id, HistoryUnit.status, HistoryUnit.zarr_urls)
        .join(HistoryUnit, HistoryUnit.history_run_id == HistoryRun.id)
        .where(HistoryRun.job_id == job_id)
        .order_by(HistoryUnit.id)
    )
    latest: dict[int, dict[str, str]] = {}
    for workflow_task_id, status, zarr_urls in rows:
        if workflow_task_id is not None:
            latest.setdefault(workflow_task_id, {}).update(dict.fromkeys(zarr_urls, status))
    return {task_id: Counter(statuses.values()) for task_id, statuses in latest.items()}


async def job_progress(
    session: AsyncSession, user: CurrentUser, project_id: int, job_id: int
) -> JobProgressRead:
    """Per workflow task of the job's slice: pending / submitted / done / failed, and calls.

    The job process reports a task's calls when it starts and the task when it ends, so
    `calls_done` is 0 until then, `calls_total` afterwards.
    """
    job = await get_job_for_member(session, project_id, job_id, user)
    progress: dict[str, dict[str, Any]] = job.progress
    workflow = await session.get(Workflow, job.workflow_id) if job.workflow_id else None
    tasks: list[tuple[int, int | None, str, str | None]] = []
    if workflow is not None:
        selected = workflow.task_list[job.first_task_index : job.last_task_index + 1]
        tasks = [(wt.id, wt.order, wt.task.name, wt.task_type) for wt in selected]
    known = {task[0] for task in tasks}
    tasks += [
        (int(key), None, f"workflow task {key}", None) for key in progress if int(key) not in known
    ]
    image_counts = await _image_counts(session, job.id)
    items = []
    for workflow_task_id, order, name, task_type in tasks:
        entry = progress.get(str(workflow_task_id), {})
        status = entry.get("status", "pending")
        total = entry.get("calls")
        images = image_counts.get(workflow_task_id, Counter())
        items.append(
            TaskProgressRead(
                workflow_task_id=workflow_task_id,
                order=order,
                task_name=name,
                task_type=task_type,
                status=status,
                calls_total=total,
                calls_done=entry.get("calls_done", total if status == "done" else 0) or 0,
                images_submitted=images["submitted"],
                images_done=images["done"],
                images_failed=images["failed"],
            )
        )
    return JobProgressRead(job_id=job.id, status=job.status, tasks=items)
