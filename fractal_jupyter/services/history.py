"""Run history: runs of workflow tasks, their units of work, each image's latest status.

The job process reports units (task calls) as events; `apply_*` write them here inside the
transaction that applies the event, so each is written exactly once. The writes are bulk
statements (executemany), never an ORM object per unit or image: a task has up to 20,000 calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import HistoryRun, HistoryUnit, Image, ImageStatus, Job
from .images import IDS_PER_STATEMENT, chunks, dialect_insert

IMAGE_STATUS_KEY = "__wftask_dataset_image_status__"
UNIT_STATUSES = ("submitted", "done", "failed")


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
    workflowtask_dump = event.get("workflowtask") or {"id": workflow_task_id}
    task_dump = event.get("task") or {}
    session.add(
        HistoryRun(
            job_id=job.id,
            dataset_id=job.dataset_id,
            workflowtask_id=workflow_task_id,
            task_id=task_dump.get("id"),
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
    for chunk in chunks(list(dict.fromkeys(zarr_urls)), IDS_PER_STATEMENT):
        rows = await session.execute(
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
    rows: dict[int, dict[str, Any]] = {}
    for unit_id, status, urls in units:
        for url in urls:
            image_id = ids.get(url)
            if image_id is not None:
                rows[image_id] = {
                    "image_id": image_id,
                    "workflowtask_id": workflow_task_id,
                    "dataset_id": dataset_id,
                    "status": status,
                    "latest_history_unit_id": unit_id,
                }
    if not rows:
        return
    upsert = dialect_insert(session)(ImageStatus)
    statement = upsert.on_conflict_do_update(
        index_elements=["image_id", "workflowtask_id"],
        set_={
            "status": upsert.excluded.status,
            "latest_history_unit_id": upsert.excluded.latest_history_unit_id,
        },
    )
    # Sorted: concurrent writers lock rows in one order.
    ordered = [rows[image_id] for image_id in sorted(rows)]
    for chunk in chunks(ordered, IDS_PER_STATEMENT):
        await session.execute(statement, list(chunk))


async def _units_by_logfile(
    session: AsyncSession, run_id: int, logfiles: Sequence[str]
) -> dict[str, tuple[int, list[str]]]:
    found: dict[str, tuple[int, list[str]]] = {}
    for chunk in chunks(logfiles, IDS_PER_STATEMENT):
        rows = await session.execute(
            select(HistoryUnit.logfile, HistoryUnit.id, HistoryUnit.zarr_urls).where(
                HistoryUnit.history_run_id == run_id, HistoryUnit.logfile.in_(chunk)
            )
        )
        for logfile, unit_id, zarr_urls in rows:
            if logfile is not None:
                found[logfile] = (unit_id, zarr_urls)
    return found


async def apply_units_submitted(session: AsyncSession, job: Job, event: dict[str, Any]) -> None:
    workflow_task_id = event["workflow_task_id"]
    run_id = await _current_run_id(session, job, workflow_task_id)
    if run_id is None or job.dataset_id is None:
        return
    units: list[dict[str, Any]] = event["units"]
    await session.execute(
        insert(HistoryUnit),
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
    stored = await _units_by_logfile(session, run_id, [unit["logfile"] for unit in units])
    run = await session.get(HistoryRun, run_id)
    if run is not None and run.num_available_images is None:
        run.num_available_images = len({url for unit in units for url in unit["zarr_urls"]})
    await _set_image_statuses(
        session,
        job.dataset_id,
        workflow_task_id,
        [(stored[unit["logfile"]][0], "submitted", unit["zarr_urls"]) for unit in units],
    )


async def apply_units_ended(session: AsyncSession, job: Job, event: dict[str, Any]) -> None:
    workflow_task_id = event["workflow_task_id"]
    run_id = await _current_run_id(session, job, workflow_task_id)
    if run_id is None or job.dataset_id is None:
        return
    ended: list[dict[str, Any]] = event["units"]
    stored = await _units_by_logfile(session, run_id, [unit["logfile"] for unit in ended])
    known = [unit for unit in ended if unit["logfile"] in stored]
    if not known:
        return
    # ORM bulk UPDATE by primary key: one executemany.
    await session.execute(
        update(HistoryUnit),
        [{"id": stored[unit["logfile"]][0], "status": unit["status"]} for unit in known],
    )
    await _set_image_statuses(
        session,
        job.dataset_id,
        workflow_task_id,
        [
            (stored[unit["logfile"]][0], unit["status"], stored[unit["logfile"]][1])
            for unit in known
        ],
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
    await session.execute(
        update(ImageStatus)
        .where(ImageStatus.latest_history_unit_id.in_(open_units))
        .values(status="failed")
    )
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
