"""A job whose process runs on another host is followed by any server of the same user.

With batchspawner the next server of a user usually starts on another node than the one
whose allocation ran the job process. That server sees the job folder (a shared filesystem),
not the process: it follows the job by its events and its heartbeat, fails it when the
heartbeat stops, and stops it through a request file. Here the job's runner is set to another
host's after it started, which is what such a server finds in the database.
"""

import asyncio
import contextlib
import os
import signal
import socket
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from fractal_jupyter.db.models import Job, utc_now
from fractal_jupyter.db.probe import nothing_under_way, postgres_nothing_under_way
from fractal_jupyter.runner.files import EVENTS_FILE, HEARTBEAT_FILE, SPEC_FILE, STOP_REQUEST_FILE
from fractal_jupyter.runner.heartbeat import HEARTBEAT_SECONDS, HEARTBEAT_TIMEOUT_SECONDS
from fractal_jupyter.runner.launcher import this_runner
from fractal_jupyter.services.job_events import silence
from tests.conftest import TEST_DB_URL, fractal_state_of
from tests.support.jobs import (
    make_workflow,
    processes_left,
    processes_mentioning,
    project_with_tasks,
    wait_for_job,
    wait_for_processes,
)

ELSEWHERE = f"node-b:{os.getuid()}"
ANOTHER_USER = f"node-b:{os.getuid() + 1}"


@pytest.fixture
def running_job(api: Any, jp_asyncio_loop: Any, jp_serverapp: Any, tmp_path: Path) -> Any:
    """A job whose task sleeps, its runner then set to `runner`; (project path, job)."""

    async def start(runner: str) -> tuple[str, dict[str, Any]]:
        project_path, dataset, tasks = await project_with_tasks(api, tmp_path / "zarr")
        workflow = await make_workflow(
            api,
            project_path,
            "wf",
            [
                (tasks["Create demo plate"], {"args_non_parallel": {"rows": "A", "columns": 1}}),
                (tasks["Misbehave"], {"args_parallel": {"mode": "sleep", "seconds": 60}}),
            ],
        )
        status, job = await api(
            "POST",
            project_path + "job/submit/",
            {},
            params={"workflow_id": str(workflow["id"]), "dataset_id": str(dataset["id"])},
        )
        assert status == 202, job
        await wait_for_processes(api, project_path, job["id"], f"{job['working_dir']}/1_misbehave")
        await set_runner(jp_serverapp, job["id"], runner)
        return project_path, job

    return start


async def set_runner(serverapp: Any, job_id: int, runner: str) -> int:
    """Make the job another runner's; its pid."""
    async with fractal_state_of(serverapp).database.session(write=True) as session:
        row = await session.get(Job, job_id)
        assert row is not None and row.pid is not None
        row.runner = runner
        return row.pid


def kill_job(job: dict[str, Any], pid: int) -> None:
    """The job process and its task processes die at once, as in an allocation that ends."""
    # The job process first: it would report the end of a task process it saw die.
    os.kill(pid, signal.SIGKILL)
    for process in processes_mentioning(job["working_dir"]):
        with contextlib.suppress(ProcessLookupError):
            os.kill(process, signal.SIGKILL)


async def stays_submitted(api: Any, project_path: str, job_id: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, job = await api("GET", f"{project_path}job/{job_id}/")
        assert (status, job["status"]) == (200, "submitted"), job["log"][-800:]
        await asyncio.sleep(0.1)


async def test_a_job_of_another_host_is_followed_and_stopped_through_its_folder(
    api: Any, running_job: Any, jp_serverapp: Any
) -> None:
    project_path, job = await running_job(ELSEWHERE)
    folder = Path(job["working_dir"])
    host, pid = (folder / HEARTBEAT_FILE).read_text().split(" pid ")
    assert (host, int(pid)) == (
        socket.gethostname(),
        await set_runner(jp_serverapp, job["id"], ELSEWHERE),
    )

    status, body = await api("GET", f"{project_path}job/{job['id']}/stop/")

    assert status == 202, body
    assert "asked at" in (folder / STOP_REQUEST_FILE).read_text()
    # The job process reads the request at its next heartbeat, stops its task and reports.
    ended = await wait_for_job(api, project_path, job["id"], timeout=HEARTBEAT_SECONDS + 20)
    assert ended["status"] == "failed"
    assert "Stop requested through the job folder (stop-requested)" in ended["log"]
    assert "The job was stopped by the user." in ended["log"]
    assert await processes_left(job["working_dir"]) == {}


async def test_a_job_of_another_host_that_went_silent_is_failed_and_another_users_is_not(
    api: Any, running_job: Any, jp_serverapp: Any
) -> None:
    project_path, job = await running_job(ELSEWHERE)
    kill_job(job, await set_runner(jp_serverapp, job["id"], ELSEWHERE))
    # Its heartbeat is recent: from another host, a dead pid here says nothing.
    await stays_submitted(api, project_path, job["id"], 1.0)

    # A job of another user (uid), silent: not this server's to judge.
    await set_runner(jp_serverapp, job["id"], ANOTHER_USER)
    await stays_submitted(api, project_path, job["id"], 0.5)  # a pass under way ends
    heartbeat = Path(job["working_dir"]) / HEARTBEAT_FILE
    silent_since = time.time() - HEARTBEAT_TIMEOUT_SECONDS - 15
    os.utime(heartbeat, (silent_since, silent_since))
    await stays_submitted(api, project_path, job["id"], 1.0)

    await set_runner(jp_serverapp, job["id"], ELSEWHERE)
    # With no job of its user left to follow the server stopped polling: the next pass comes
    # with a start or a submission (the doorbell), as for a server started after the death.
    fractal_state_of(jp_serverapp).job_submitted()
    ended = await wait_for_job(api, project_path, job["id"], timeout=10)
    assert ended["status"] == "failed"
    assert ended["end_timestamp"] is not None
    assert (
        "The job process (pid " in ended["log"] and " on node-b) has given no sign" in ended["log"]
    )
    silent = int(ended["log"].split("no sign of life for ")[1].split(" s")[0])
    assert HEARTBEAT_TIMEOUT_SECONDS + 15 <= silent < HEARTBEAT_TIMEOUT_SECONDS + 60
    # What the job reported before it died is kept: its first task ended well.
    _, dataset = await api("GET", f"{project_path}dataset/{job['dataset_id']}/")
    assert dataset["history"][0]["status"] == "done"


def a_job(folder: Path, submitted_ago: float) -> Job:
    return Job(
        id=1,
        runner=ELSEWHERE,
        pid=4321,
        working_dir=str(folder),
        start_timestamp=utc_now() - timedelta(seconds=submitted_ago),
    )


def test_the_silence_of_a_job_process_on_another_host(tmp_path: Path) -> None:
    folder = tmp_path / "job"
    long_ago = HEARTBEAT_TIMEOUT_SECONDS + 30
    # A folder this host does not see: nothing can be told.
    assert silence(a_job(folder, long_ago), folder, HEARTBEAT_TIMEOUT_SECONDS) is None
    folder.mkdir()
    (folder / SPEC_FILE).write_text("{}")
    # Never beat: it may still be starting...
    assert silence(a_job(folder, 5), folder, HEARTBEAT_TIMEOUT_SECONDS) is None
    # ... or never got going.
    reason = silence(a_job(folder, long_ago), folder, HEARTBEAT_TIMEOUT_SECONDS)
    assert reason is not None and "(pid 4321 on node-b) has given no sign of life for" in reason
    # Events but no heartbeat: a job process of a version before heartbeats, left alone.
    (folder / EVENTS_FILE).write_text("")
    assert silence(a_job(folder, long_ago), folder, HEARTBEAT_TIMEOUT_SECONDS) is None
    (folder / HEARTBEAT_FILE).write_text("node-b pid 4321\n")
    assert silence(a_job(folder, long_ago), folder, HEARTBEAT_TIMEOUT_SECONDS) is None
    beat = time.time() - HEARTBEAT_TIMEOUT_SECONDS - 1
    os.utime(folder / HEARTBEAT_FILE, (beat, beat))
    assert silence(a_job(folder, long_ago), folder, HEARTBEAT_TIMEOUT_SECONDS) is not None


async def test_a_submitted_job_of_the_user_on_another_host_is_work_under_way(
    api: Any, running_job: Any, jp_serverapp: Any, fractal_config: dict[str, Any]
) -> None:
    """A server that starts while its user's job runs elsewhere loads the API at once, to
    follow that job (the start-up probe, on SQLite or PostgreSQL)."""

    async def nothing_to_follow() -> bool:
        url = fractal_config["db_url"]
        if TEST_DB_URL is None:
            return nothing_under_way(url, this_runner())
        return await postgres_nothing_under_way(url, this_runner(), 10.0, "test")

    project_path, job = await running_job(ELSEWHERE)
    assert not await nothing_to_follow()
    await set_runner(jp_serverapp, job["id"], ANOTHER_USER)
    assert await nothing_to_follow()
    await set_runner(jp_serverapp, job["id"], this_runner())
    await api("GET", f"{project_path}job/{job['id']}/stop/")
    await wait_for_job(api, project_path, job["id"], timeout=20)
