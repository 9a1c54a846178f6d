"""Applying a job's events: what the executor said about a failure is kept on the job."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from fractal_jupyter.db.engine import Database
from fractal_jupyter.db.models import Dataset, HistoryRun, Job, Project
from fractal_jupyter.services.job_events import apply_event


def _new_job(**links: int | None) -> Job:
    """A one-task job with empty dumps, linked by `links` (project_id, dataset_id)."""
    return Job(
        user_email="a@x",
        owner="a",
        project_dump={},
        workflow_dump={},
        dataset_dump={},
        first_task_index=0,
        last_task_index=0,
        **links,
    )


def test_job_failed_keeps_the_executor_error_log(tmp_path):
    async def run() -> tuple[str, str | None, int]:
        database = Database(f"sqlite+aiosqlite:///{tmp_path}/events.db")
        await database.upgrade()
        async with database.session(write=True) as session:
            job = _new_job()
            session.add(job)
            await session.flush()
            event = {
                "seq": 3,
                "type": "job_failed",
                "message": "JOB ERROR: the SLURM job ended",
                "executor_error_log": "Out of memory.\nDetected 1 oom_kill event",
            }
            await apply_event(session, job, event)
        async with database.session() as session:
            stored = await session.get(Job, job.id)
            assert stored is not None
            result = (stored.status, stored.executor_error_log, stored.events_applied)
        await database.dispose()
        return result

    assert asyncio.run(run()) == ("failed", "Out of memory.\nDetected 1 oom_kill event", 3)


def test_units_of_a_workflow_task_deleted_during_the_job_are_skipped(tmp_path):
    """A job's events must apply whatever was deleted meanwhile: else the job never ends."""

    async def run() -> tuple[int, int]:
        database = Database(f"sqlite+aiosqlite:///{tmp_path}/events.db")
        await database.upgrade()
        async with database.session(write=True) as session:
            project = Project(name="p")
            session.add(project)
            await session.flush()
            dataset = Dataset(name="d", project_id=project.id, zarr_dir="/z")
            session.add(dataset)
            await session.flush()
            job = _new_job(project_id=project.id, dataset_id=dataset.id)
            session.add(job)
            await session.flush()
            units = [{"logfile": "/j/0.log", "zarr_urls": ["/z/a"]}]
            for seq, event in enumerate(
                [
                    {"type": "task_started", "workflow_task_id": 77, "calls": 1, "task": {"id": 5}},
                    {"type": "units_submitted", "workflow_task_id": 77, "units": units},
                    {
                        "type": "units_ended",
                        "workflow_task_id": 77,
                        "units": [{**units[0], "status": "done"}],
                    },
                    {"type": "task_failed", "workflow_task_id": 77, "history_item": {}},
                    {"type": "job_failed", "message": "JOB ERROR"},
                ],
                1,
            ):
                await apply_event(session, job, {**event, "seq": seq})
        async with database.session() as session:
            runs = await session.scalar(select(func.count()).select_from(HistoryRun))
            stored = await session.get(Job, job.id)
            assert stored is not None and stored.status == "failed"
        await database.dispose()
        return runs or 0, stored.events_applied

    assert asyncio.run(run()) == (0, 5)
