"""Run history: runs of workflow tasks, their units of work, each image's latest status.

The job process reports units (task calls) as events; `apply_*` write them here inside the
transaction that applies the event, so each is written exactly once. The writes are bulk
statements (executemany), never an ORM object per unit or image: a task has up to 20,000 calls.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, bindparam, case, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.bulk import IDS_PER_STATEMENT, chunks
from ..db.models import (
    HistoryRun,
    HistoryUnit,
    Image,
    ImageStatus,
    ImageType,
    Job,
    Task,
    Workflow,
    WorkflowTask,
)
from ..errors import NotFound, Unprocessable
from ..runner.files import recorded_job_ids
from ..runner.settings import Backend
from ..schemas.filters import ImageFilterQuery
from ..schemas.history import (
    HistoryRunReadAggregated,
    HistoryUnitPage,
    HistoryUnitRead,
    ImageLogsRequest,
    JobWithTaskStatuses,
    TaskStatusImages,
)
from ..schemas.query import UnitLogQuery, UnitQuery
from . import image_status
from .access import get_dataset_for_member, get_workflow_for_member
from .images import check_pagination, matching_images
from .job import job_read
from .users import CurrentUser

_UNITS = cast(Table, HistoryUnit.__table__)
_SET_UNIT_STATUS = (
    update(_UNITS).where(_UNITS.c.id == bindparam("unit_id")).values(status=bindparam("new_status"))
)


async def _current_run_id(session: AsyncSession, job: Job, workflow_task_id: int) -> int | None:
    return await session.scalar(
        select(HistoryRun.id)
        .where(HistoryRun.job_id == job.id, HistoryRun.workflowtask_id == workflow_task_id)
        .order_by(HistoryRun.id.desc())
        .limit(1)
    )


async def apply_task_started(session: AsyncSession, job: Job, event: dict[str, Any]) -> None:
    """A run for the (job, workflow task); a compound task starts twice, one run."""
    if job.dataset_id is None:
        return
    workflow_task_id = event["workflow_task_id"]
    if await _current_run_id(session, job, workflow_task_id) is not None:
        return
    if await session.get(WorkflowTask, workflow_task_id) is None:
        # Deleted while the job ran: its history could not be asked for; none is kept.
        return
    workflowtask_dump = event.get("workflowtask") or {"id": workflow_task_id}
    task_dump = event.get("task") or {}
    task_id = task_dump.get("id")
    if task_id is not None and await session.get(Task, task_id) is None:
        task_id = None
    session.add(
        HistoryRun(
            job_id=job.id,
            dataset_id=job.dataset_id,
            workflowtask_id=workflow_task_id,
            task_id=task_id,
            workflowtask_dump=workflowtask_dump,
            task_dump=task_dump,
            status="submitted",
        )
    )
    await session.flush()


async def _image_ids(
    session: AsyncSession, dataset_id: int, zarr_urls: Iterable[str]
) -> dict[str, int]:
    """The dataset's image ids by zarr_url (urls of no image of the dataset are left out)."""
    found: dict[str, int] = {}
    connection = await session.connection()
    for chunk in chunks(list(dict.fromkeys(zarr_urls)), IDS_PER_STATEMENT):
        rows = await connection.execute(
            select(Image.zarr_url, Image.id).where(
                Image.dataset_id == dataset_id, Image.zarr_url.in_(chunk)
            )
        )
        found.update((zarr_url, image_id) for zarr_url, image_id in rows)
    return found


async def _set_image_statuses(
    session: AsyncSession,
    dataset_id: int,
    workflow_task_id: int,
    units: Sequence[tuple[int, str, Sequence[str]]],
) -> None:
    """Each image of the units gets the unit's status (later units win): (id, status, urls)."""
    ids = await _image_ids(session, dataset_id, (url for _, _, urls in units for url in urls))
    rows: dict[int, tuple[str, int]] = {}
    for unit_id, status, urls in units:
        for url in urls:
            image_id = ids.get(url)
            if image_id is not None:
                rows[image_id] = (status, unit_id)
    await image_status.set_statuses(session, dataset_id, workflow_task_id, rows)


async def _unit_ids(session: AsyncSession, run_id: int, logfiles: Sequence[str]) -> dict[str, int]:
    """The run's units by log file (which names a call)."""
    found: dict[str, int] = {}
    connection = await session.connection()
    for chunk in chunks(logfiles, IDS_PER_STATEMENT):
        rows = await connection.execute(
            select(HistoryUnit.logfile, HistoryUnit.id).where(
                HistoryUnit.history_run_id == run_id, HistoryUnit.logfile.in_(chunk)
            )
        )
        found.update((logfile, unit_id) for logfile, unit_id in rows if logfile is not None)
    return found


async def apply_units_submitted(session: AsyncSession, job: Job, event: dict[str, Any]) -> None:
    workflow_task_id = event["workflow_task_id"]
    run_id = await _current_run_id(session, job, workflow_task_id)
    if run_id is None or job.dataset_id is None:
        return
    units: list[dict[str, Any]] = event["units"]
    connection = await session.connection()
    await connection.execute(
        insert(_UNITS),
        [
            {
                "history_run_id": run_id,
                "logfile": unit["logfile"],
                "status": "submitted",
                "zarr_urls": unit["zarr_urls"],
                "has_warnings": False,
            }
            for unit in units
        ],
    )
    stored = await _unit_ids(session, run_id, [unit["logfile"] for unit in units])
    run = await session.get(HistoryRun, run_id)
    if run is not None and run.num_available_images is None:
        run.num_available_images = len({url for unit in units for url in unit["zarr_urls"]})
    await _set_image_statuses(
        session,
        job.dataset_id,
        workflow_task_id,
        [(stored[unit["logfile"]], "submitted", unit["zarr_urls"]) for unit in units],
    )


async def apply_units_ended(session: AsyncSession, job: Job, event: dict[str, Any]) -> None:
    workflow_task_id = event["workflow_task_id"]
    run_id = await _current_run_id(session, job, workflow_task_id)
    if run_id is None or job.dataset_id is None:
        return
    ended: list[dict[str, Any]] = event["units"]
    stored = await _unit_ids(session, run_id, [unit["logfile"] for unit in ended])
    known = [(stored[unit["logfile"]], unit) for unit in ended if unit["logfile"] in stored]
    if not known:
        return
    connection = await session.connection()
    await connection.execute(
        _SET_UNIT_STATUS,
        [{"unit_id": unit_id, "new_status": unit["status"]} for unit_id, unit in known],
    )
    await _set_image_statuses(
        session,
        job.dataset_id,
        workflow_task_id,
        [(unit_id, unit["status"], unit["zarr_urls"]) for unit_id, unit in known],
    )


async def apply_task_done(
    session: AsyncSession, job: Job, workflow_task_id: int, upserted_urls: Sequence[str]
) -> None:
    """The run is done; images the task created (no status yet) are done with the unit that
    names them or their origin (else the run's first unit)."""
    run_id = await _current_run_id(session, job, workflow_task_id)
    if run_id is None or job.dataset_id is None:
        return
    await session.execute(update(HistoryRun).where(HistoryRun.id == run_id).values(status="done"))
    new_images: list[tuple[int, str, str | None]] = []
    for chunk in chunks(list(upserted_urls), IDS_PER_STATEMENT):
        with_status = select(ImageStatus.image_id).where(
            ImageStatus.image_id == Image.id, ImageStatus.workflowtask_id == workflow_task_id
        )
        rows = await session.execute(
            select(Image.id, Image.zarr_url, Image.origin).where(
                Image.dataset_id == job.dataset_id,
                Image.zarr_url.in_(chunk),
                ~with_status.exists(),
            )
        )
        new_images += [(image_id, url, origin) for image_id, url, origin in rows]
    if not new_images:
        return
    unit_rows = await session.execute(
        select(HistoryUnit.id, HistoryUnit.zarr_urls)
        .where(HistoryUnit.history_run_id == run_id)
        .order_by(HistoryUnit.id)
    )
    unit_of_url: dict[str, int] = {}
    first_unit: int | None = None
    for unit_id, zarr_urls in unit_rows:
        first_unit = unit_id if first_unit is None else first_unit
        unit_of_url.update((url, unit_id) for url in zarr_urls)
    units: list[tuple[int, str, Sequence[str]]] = []
    for _image_id, url, origin in new_images:
        unit_id = unit_of_url.get(url) or (unit_of_url.get(origin) if origin else None)
        unit_id = unit_id or first_unit
        if unit_id is not None:
            units.append((unit_id, "done", [url]))
    await _set_image_statuses(session, job.dataset_id, workflow_task_id, units)


async def apply_task_failed(session: AsyncSession, job: Job, workflow_task_id: int) -> None:
    run_id = await _current_run_id(session, job, workflow_task_id)
    if run_id is not None:
        await session.execute(
            update(HistoryRun).where(HistoryRun.id == run_id).values(status="failed")
        )


async def close_job_history(session: AsyncSession, job: Job) -> None:
    """At a job's end nothing of it runs: its units and runs still `submitted` (calls never
    run, or cut short by the failure or a stop) become `failed`, and so do their images."""
    runs = select(HistoryRun.id).where(HistoryRun.job_id == job.id)
    open_units = select(HistoryUnit.id).where(
        HistoryUnit.history_run_id.in_(runs), HistoryUnit.status == "submitted"
    )
    to_fail = (ImageStatus.latest_history_unit_id.in_(open_units), ImageStatus.status != "failed")
    counted = await session.execute(
        select(
            ImageStatus.dataset_id, ImageStatus.workflowtask_id, ImageStatus.status, func.count()
        )
        .where(*to_fail)
        .group_by(ImageStatus.dataset_id, ImageStatus.workflowtask_id, ImageStatus.status)
    )
    deltas: image_status.Deltas = Counter()
    for dataset_id, workflow_task_id, status, count in counted:
        deltas[(dataset_id, workflow_task_id, status)] -= count
        deltas[(dataset_id, workflow_task_id, "failed")] += count
    await session.execute(
        update(ImageStatus)
        .where(*to_fail)
        .values(status="failed")
        .execution_options(synchronize_session=False)
    )
    await image_status.change_summary(session, deltas)
    await session.execute(
        update(HistoryUnit)
        .where(HistoryUnit.history_run_id.in_(runs), HistoryUnit.status == "submitted")
        .values(status="failed")
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        update(HistoryRun)
        .where(HistoryRun.job_id == job.id, HistoryRun.status == "submitted")
        .values(status="failed")
        .execution_options(synchronize_session=False)
    )


# --- reading ----------------------------------------------------------------------------------


async def _check_dataset_and_workflow_task(
    session: AsyncSession, user: CurrentUser, project_id: int, dataset_id: int, wftask_id: int
) -> WorkflowTask:
    await get_dataset_for_member(session, project_id, dataset_id, user)
    workflow_task = await session.get(WorkflowTask, wftask_id)
    workflow = await session.get(Workflow, workflow_task.workflow_id) if workflow_task else None
    if workflow_task is None or workflow is None or workflow.project_id != project_id:
        raise NotFound(f"Workflow task {wftask_id} is not in project {project_id}.")
    return workflow_task


async def list_runs(
    session: AsyncSession, user: CurrentUser, project_id: int, dataset_id: int, wftask_id: int
) -> list[HistoryRunReadAggregated]:
    """The runs of a workflow task on a dataset, oldest first, with their units counted."""
    await _check_dataset_and_workflow_task(session, user, project_id, dataset_id, wftask_id)
    runs = (
        await session.scalars(
            select(HistoryRun)
            .where(HistoryRun.dataset_id == dataset_id, HistoryRun.workflowtask_id == wftask_id)
            .order_by(HistoryRun.id)
        )
    ).all()
    counts: dict[tuple[int, str], int] = {}
    warned: dict[int, int] = {}
    if runs:
        rows = await session.execute(
            select(
                HistoryUnit.history_run_id,
                HistoryUnit.status,
                func.count(),
                func.sum(case((HistoryUnit.has_warnings, 1), else_=0)),
            )
            .where(HistoryUnit.history_run_id.in_([run.id for run in runs]))
            .group_by(HistoryUnit.history_run_id, HistoryUnit.status)
        )
        for run_id, status, count, with_warnings in rows:
            counts[(run_id, status)] = count
            warned[run_id] = warned.get(run_id, 0) + (with_warnings or 0)
    return [
        HistoryRunReadAggregated(
            id=run.id,
            timestamp_started=run.timestamp_started.isoformat(),
            workflowtask_dump=run.workflowtask_dump,
            num_submitted_units=counts.get((run.id, "submitted"), 0),
            num_done_units=counts.get((run.id, "done"), 0),
            num_failed_units=counts.get((run.id, "failed"), 0),
            num_units_with_warnings=warned.get(run.id, 0),
            args_schema_parallel=run.task_dump.get("args_schema_parallel"),
            args_schema_non_parallel=run.task_dump.get("args_schema_non_parallel"),
            version=run.task_dump.get("version"),
        )
        for run in runs
    ]


async def _get_run(
    session: AsyncSession,
    user: CurrentUser,
    project_id: int,
    run_id: int,
    dataset_id: int,
    wftask_id: int,
) -> HistoryRun:
    await _check_dataset_and_workflow_task(session, user, project_id, dataset_id, wftask_id)
    run = await session.get(HistoryRun, run_id)
    if run is None or run.dataset_id != dataset_id or run.workflowtask_id != wftask_id:
        raise NotFound(
            f"No history run {run_id} of workflow task {wftask_id} on dataset {dataset_id}."
        )
    return run


async def list_units(
    session: AsyncSession,
    user: CurrentUser,
    project_id: int,
    run_id: int,
    query: UnitQuery,
) -> HistoryUnitPage:
    check_pagination(query.page, query.page_size)
    await _get_run(session, user, project_id, run_id, query.dataset_id, query.workflowtask_id)
    where = [HistoryUnit.history_run_id == run_id]
    if query.unit_status is not None:
        where.append(HistoryUnit.status == query.unit_status)
    total = await session.scalar(select(func.count()).select_from(HistoryUnit).where(*where)) or 0
    page_size = query.page_size if query.page_size is not None else max(total, 1)
    page = max(1, min(query.page, -(-total // page_size)))
    units = await session.scalars(
        select(HistoryUnit)
        .where(*where)
        .order_by(HistoryUnit.id)
        .offset((page - 1) * page_size)
        .limit(page_size)
    )
    return HistoryUnitPage(
        current_page=page,
        page_size=page_size if query.page_size is not None else total,
        total_count=total,
        items=[HistoryUnitRead.model_validate(unit) for unit in units],
    )


def read_log(logfile: str | None) -> str:
    """A unit's log, or a sentence saying why there is none."""
    if not logfile:
        return "No log file is recorded for this unit."
    try:
        return Path(logfile).read_text(errors="replace")
    except FileNotFoundError:
        return f"The log file {logfile} is gone."
    except OSError as error:
        return f"The log file {logfile} cannot be read: {error.strerror}."


async def unit_log(
    session: AsyncSession, user: CurrentUser, project_id: int, query: UnitLogQuery
) -> str:
    await _get_run(
        session,
        user,
        project_id,
        query.history_run_id,
        query.dataset_id,
        query.workflowtask_id,
    )
    unit = await session.get(HistoryUnit, query.history_unit_id)
    if unit is None or unit.history_run_id != query.history_run_id:
        raise NotFound(
            f"No history unit {query.history_unit_id} in history run {query.history_run_id}."
        )
    return read_log(unit.logfile)


async def image_log(
    session: AsyncSession, user: CurrentUser, project_id: int, request: ImageLogsRequest
) -> str:
    """The log of the unit that last ran the workflow task on the image."""
    await _check_dataset_and_workflow_task(
        session, user, project_id, request.dataset_id, request.workflowtask_id
    )
    image_id = await session.scalar(
        select(Image.id).where(
            Image.dataset_id == request.dataset_id, Image.zarr_url == request.zarr_url
        )
    )
    if image_id is None:
        raise NotFound(
            f"No image with zarr_url '{request.zarr_url}' in dataset {request.dataset_id}."
        )
    logfile = await session.scalar(
        select(HistoryUnit.logfile)
        .join(ImageStatus, ImageStatus.latest_history_unit_id == HistoryUnit.id)
        .where(
            ImageStatus.image_id == image_id,
            ImageStatus.workflowtask_id == request.workflowtask_id,
        )
    )
    if logfile is None:
        return (
            f"No logs: workflow task {request.workflowtask_id} has not run on {request.zarr_url}."
        )
    return read_log(logfile)


async def latest_job(
    session: AsyncSession, user: CurrentUser, project_id: int, workflow_id: int, dataset_id: int
) -> JobWithTaskStatuses:
    """The newest job of the workflow on the dataset, with each workflow task's latest run
    status and its images counted by status."""
    await get_dataset_for_member(session, project_id, dataset_id, user)
    workflow = await get_workflow_for_member(session, project_id, workflow_id, user)
    job = await session.scalar(
        select(Job)
        .where(Job.workflow_id == workflow_id, Job.dataset_id == dataset_id)
        .order_by(Job.id.desc())
        .limit(1)
    )
    if job is None:
        raise NotFound(f"No job of workflow {workflow_id} on dataset {dataset_id}.")
    wftask_ids = [workflow_task.id for workflow_task in workflow.task_list]
    image_counts: dict[tuple[int, str], int] = {}
    rows = await session.execute(
        select(ImageStatus.workflowtask_id, ImageStatus.status, func.count())
        .where(ImageStatus.dataset_id == dataset_id, ImageStatus.workflowtask_id.in_(wftask_ids))
        .group_by(ImageStatus.workflowtask_id, ImageStatus.status)
    )
    for wftask_id, status, count in rows:
        image_counts[(wftask_id, status)] = count
    latest_runs = {
        run.workflowtask_id: run
        for run in await session.scalars(
            select(HistoryRun)
            .where(HistoryRun.dataset_id == dataset_id, HistoryRun.workflowtask_id.in_(wftask_ids))
            .order_by(HistoryRun.id)
        )
    }
    statuses: dict[str, TaskStatusImages | None] = {}
    for wftask_id in wftask_ids:
        run = latest_runs.get(wftask_id)
        statuses[str(wftask_id)] = (
            None
            if run is None
            else TaskStatusImages(
                status=run.status,
                num_submitted_images=image_counts.get((wftask_id, "submitted"), 0),
                num_done_images=image_counts.get((wftask_id, "done"), 0),
                num_failed_images=image_counts.get((wftask_id, "failed"), 0),
                num_available_images=run.num_available_images,
            )
        )
    return JobWithTaskStatuses(
        **job_read(job).model_dump(),
        attribute_filters=job.attribute_filters,
        type_filters=job.type_filters,
        executor_error_log=job.executor_error_log,
        task_statuses=statuses,
    )


async def _workflow_task_of_workflow(
    session: AsyncSession, user: CurrentUser, project_id: int, workflow_id: int, wftask_id: int
) -> tuple[WorkflowTask, Workflow]:
    workflow = await get_workflow_for_member(session, project_id, workflow_id, user)
    for workflow_task in workflow.task_list:
        if workflow_task.id == wftask_id:
            return workflow_task, workflow
    raise Unprocessable(f"Workflow task {wftask_id} is not a task of workflow {workflow_id}.")


async def non_processed_images(
    session: AsyncSession,
    user: CurrentUser,
    project_id: int,
    dataset_id: int,
    workflow_id: int,
    wftask_id: int,
    query: ImageFilterQuery,
) -> list[str]:
    """The images matching the filters that the workflow task's predecessor has not done
    (fractal-server 2.14.1+); none for the first task."""
    await get_dataset_for_member(session, project_id, dataset_id, user)
    workflow_task, workflow = await _workflow_task_of_workflow(
        session, user, project_id, workflow_id, wftask_id
    )
    position = workflow.task_list.index(workflow_task)
    if position == 0:
        return []
    previous = workflow.task_list[position - 1]
    matching = matching_images(dataset_id, wftask_id, query)
    done_before = select(ImageStatus.image_id).where(
        ImageStatus.image_id == Image.id,
        ImageStatus.workflowtask_id == previous.id,
        ImageStatus.status == "done",
    )
    urls = await session.scalars(
        select(Image.zarr_url)
        .where(Image.id.in_(matching.ids), ~done_before.exists())
        .order_by(Image.id),
        matching.parameters,
    )
    return list(urls)


async def verify_unique_types(
    session: AsyncSession,
    user: CurrentUser,
    project_id: int,
    dataset_id: int,
    wftask_id: int,
    query: ImageFilterQuery | None,
) -> list[str]:
    """Type keys that are true on some of the matching images and not on others."""
    await _check_dataset_and_workflow_task(session, user, project_id, dataset_id, wftask_id)
    matching = matching_images(dataset_id, wftask_id, query or ImageFilterQuery())
    total = await session.scalar(matching.count(), matching.parameters) or 0
    rows = await session.execute(
        select(ImageType.key, func.count())
        .where(ImageType.image_id.in_(matching.ids), ImageType.value.is_(True))
        .group_by(ImageType.key)
        .order_by(ImageType.key),
        matching.parameters,
    )
    return [key for key, true_count in rows if 0 < true_count < total]


async def squeue(
    session: AsyncSession, user: CurrentUser, backend: Backend
) -> list[dict[str, Any]]:
    """The SLURM job ids that the caller's running Fractal jobs submitted (2.26 answers with
    `squeue`'s text; we list, per Fractal job, the ids it recorded). None on a backend
    without a cluster."""
    if not backend.on_slurm:
        return []
    jobs = await session.execute(
        select(Job.id, Job.working_dir).where(Job.status == "submitted", Job.owner == user.username)
    )
    return [
        {"job_id": job_id, "slurm_job_ids": recorded_job_ids(Path(working_dir))}
        for job_id, working_dir in jobs
        if working_dir
    ]
