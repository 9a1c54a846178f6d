"""The server side of the job protocol: apply a job's events to the database, once each.

Jobs run in detached processes that write `events.jsonl`; the server polls the submitted jobs,
applies the new events (image deltas, filters, history, progress, the final status) and
notices a job process that died without saying so.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.engine import Database
from ..db.models import Dataset, Job, utc_now
from ..runner.backends import cancel_left_cluster_jobs
from ..runner.call import log_tail
from ..runner.files import EVENTS_FILE, PROCESS_LOG, SPEC_FILE, read_events
from ..runner.heartbeat import silent_for
from ..runner.launcher import JobLauncher
from ..runner.placement import slurm_id_of
from ..schemas.images import SingleImage
from . import history
from .images import apply_image_changes
from .job import never_started, read_workflow_log


def _set_progress(job: Job, workflow_task_id: int, **values: Any) -> None:
    progress = dict(job.progress)
    progress[str(workflow_task_id)] = {**progress.get(str(workflow_task_id), {}), **values}
    job.progress = progress


def _append_history(dataset: Dataset | None, item: dict[str, Any]) -> None:
    if dataset is not None:
        dataset.history = [*dataset.history, item]


async def _finish(session: AsyncSession, job: Job, status: str, message: str | None = None) -> None:
    await history.close_job_history(session, job)
    job.status = status
    job.end_timestamp = utc_now()
    log = read_workflow_log(Path(job.working_dir)) if job.working_dir else ""
    if message and message not in log:
        log = f"{log}\n{message}".lstrip("\n")
    job.log = log


async def apply_event(session: AsyncSession, job: Job, event: dict[str, Any]) -> None:
    dataset = await session.get(Dataset, job.dataset_id) if job.dataset_id else None
    kind = event["type"]
    if kind == "task_started":
        _set_progress(job, event["workflow_task_id"], status="submitted", calls=event["calls"])
        await history.apply_task_started(session, job, event)
    elif kind == "units_submitted":
        await history.apply_units_submitted(session, job, event)
    elif kind == "units_ended":
        await history.apply_units_ended(session, job, event)
    elif kind == "calls_done":
        _set_progress(job, event["workflow_task_id"], calls_done=event["calls_done"])
    elif kind == "task_done":
        if dataset is not None:
            upserted = [SingleImage.model_validate(image) for image in event["images_upserted"]]
            await apply_image_changes(session, dataset, upserted, event["images_removed"])
            dataset.filters = event["filters"]
            await history.apply_task_done(
                session,
                job,
                event["workflow_task_id"],
                [image.zarr_url for image in upserted],
            )
        _append_history(dataset, event["history_item"])
        calls = job.progress.get(str(event["workflow_task_id"]), {}).get("calls")
        _set_progress(job, event["workflow_task_id"], status="done", calls_done=calls)
    elif kind == "task_failed":
        _append_history(dataset, event["history_item"])
        _set_progress(job, event["workflow_task_id"], status="failed")
        await history.apply_task_failed(session, job, event["workflow_task_id"])
    elif kind == "job_done":
        await _finish(session, job, "done")
    elif kind == "job_failed":
        job.executor_error_log = event.get("executor_error_log")
        await _finish(session, job, "failed", event["message"])
    job.events_applied = event["seq"]


async def sync_job(database: Database, job_id: int, launcher: JobLauncher) -> None:
    """Apply what a submitted job reported since last time; fail it if its process is gone."""
    async with database.session(write=True) as session:
        # The row lock keeps two servers from applying the same events (PostgreSQL).
        job = await session.scalar(select(Job).where(Job.id == job_id).with_for_update())
        if job is None or job.status != "submitted" or not job.working_dir:
            return
        if job.pid is None:  # committed, its process not started (yet, or ever)
            reason = never_started(job)
            if reason is not None:
                await _finish(session, job, "failed", reason)
            return
        job_dir = Path(job.working_dir)
        here = job.runner == launcher.runner
        placed = slurm_id_of(job.runner)
        # Liveness first: events written before the process ended are then surely on disk.
        if placed is not None:
            death = await asyncio.to_thread(launcher.placed_jobs.death, placed, job_dir)
        elif not here:
            death = silence(job, job_dir, launcher.heartbeat_timeout)
        elif launcher.is_alive(job.pid):
            death = None
        else:
            death = (
                f"The job process (pid {job.pid}) ended without reporting the end of the job: "
                "it was killed or crashed."
            )
        for event in read_events(job_dir, after=job.events_applied):
            await apply_event(session, job, event)
        if job.status == "submitted" and death is not None:
            cancelled = await asyncio.to_thread(cancel_left_cluster_jobs, job_dir)
            if cancelled is None and here:
                # Local task processes. Not on a cluster: there scancel ends them, and on a
                # node shared with the server their processes must not be mistaken for ours.
                launcher.kill_leftover_tasks(job_dir)
            tail = log_tail(job_dir / PROCESS_LOG)
            await _finish(
                session,
                job,
                "failed",
                f"JOB ERROR in Fractal job {job.id}:\n{death}"
                + (f"\n{cancelled}" if cancelled else "")
                + (f"\nIts output ends with:\n{tail}" if tail.strip() else ""),
            )


def silence(job: Job, job_dir: Path, timeout: float) -> str | None:
    """Why a job process of another host is taken for dead (None while it seems alive): it
    stopped beating, or never did. A job process of a version without heartbeats (it wrote
    events but no heartbeat) is left alone, and so is a job whose folder this host does not
    see (not on a shared filesystem)."""
    if not (job_dir / SPEC_FILE).is_file():
        return None
    silent = silent_for(job_dir)
    if silent is None:
        silent = (utc_now() - job.start_timestamp).total_seconds()
        if (job_dir / EVENTS_FILE).exists():
            return None
    if silent < timeout:
        return None
    process = f"pid {job.pid} on {job.runner.rsplit(':', 1)[0]}"
    return (
        f"The job process ({process}) has given no sign of life for {silent:.0f} s and did not "
        "report the end of the job: it was killed, or its host or the SLURM allocation it ran "
        "in ended."
    )


async def sync_submitted_jobs(database: Database, launcher: JobLauncher) -> dict[int, Path]:
    """One pass over every submitted job; the folders of those still running afterwards."""
    mine = select(Job.id, Job.working_dir).where(
        Job.status == "submitted", Job.runner.like(launcher.user_runners)
    )
    async with database.session() as session:
        job_ids = (await session.scalars(mine)).all()
    for job_id in job_ids:
        await sync_job(database, job_id, launcher)
    async with database.session() as session:
        rows = (await session.execute(mine)).all()
    return {job_id: Path(folder) for job_id, folder in rows if folder}
