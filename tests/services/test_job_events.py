"""Applying a job's events: what the executor said about a failure is kept on the job."""

from __future__ import annotations

import asyncio

from fractal_jupyter.db.engine import Database
from fractal_jupyter.db.models import Job
from fractal_jupyter.services.job_events import apply_event


def test_job_failed_keeps_the_executor_error_log(tmp_path):
    async def run() -> tuple[str, str | None, int]:
        database = Database(f"sqlite+aiosqlite:///{tmp_path}/events.db")
        await database.upgrade()
        async with database.session(write=True) as session:
            job = Job(
                user_email="a@x",
                owner="a",
                project_dump={},
                workflow_dump={},
                dataset_dump={},
                first_task_index=0,
                last_task_index=0,
            )
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
