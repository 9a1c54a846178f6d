"""An idle server costs nothing: no wake-ups, no activity for the culler, little at start-up.

Speed and memory are measured in bench/idle.py; these tests check the behaviour.
"""

from __future__ import annotations

import asyncio
import functools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from fractal_jupyter.db.engine import alembic_config
from fractal_jupyter.db.probe import head_revision
from fractal_jupyter.file_watch import FileWatch, InotifyWatch, PollingWatch
from tests.conftest import TEST_DB_URL
from tests.support.databases import fresh_database_url
from tests.support.jobs import make_workflow, register_tasks, wait_for_job
from tests.support.server import ServerProcess

PLATE = {"rows": "A", "columns": 2, "fields": 1}
IDLE_SECONDS = 5.0


async def _setup(api: Any, tmp_path: Path) -> tuple[str, Any, Any]:
    """A project of alice (the default caller), a dataset and a workflow of about 2 s."""
    _, project = await api("POST", "api/v2/project/", {"name": "p"})
    project_path = f"api/v2/project/{project['id']}/"
    _, dataset = await api(
        "POST", project_path + "dataset/", {"name": "d", "zarr_dir": str(tmp_path / "zarr")}
    )
    tasks = await register_tasks(api)
    workflow = await make_workflow(
        api,
        project_path,
        "wf",
        [
            (tasks["Create demo plate"], {"args_non_parallel": PLATE}),
            (tasks["Misbehave"], {"args_parallel": {"mode": "sleep", "seconds": 1}}),
        ],
    )
    return project_path, dataset, workflow


def _submit_params(workflow: Any, dataset: Any) -> dict[str, str]:
    return {"workflow_id": str(workflow["id"]), "dataset_id": str(dataset["id"])}


async def _wait_until_quiet(statements: list[str], quiet: float = 0.5) -> None:
    """Until no statement was sent for `quiet` seconds (the watcher's first pass is over)."""
    seen = -1
    for _ in range(20):
        if seen == len(statements):
            return
        seen = len(statements)
        await asyncio.sleep(quiet)
    raise AssertionError(f"the server keeps querying: {statements[-3:]}")


async def test_an_idle_server_sends_no_query_and_follows_a_new_job_at_once(
    api: Any, statements: list[str], tmp_path: Path
) -> None:
    project_path, dataset, workflow = await _setup(api, tmp_path)
    await _wait_until_quiet(statements)
    before = len(statements)
    await asyncio.sleep(IDLE_SECONDS)
    assert statements[before:] == []

    status, job = await api(
        "POST", f"{project_path}job/submit/", {}, params=_submit_params(workflow, dataset)
    )
    assert status == 202, job
    # Wait for the end with quick looks; the job's last event must show within 1 s of its
    # writing (the watcher reacts to the event file, not to a clock).
    deadline = time.monotonic() + 60
    while True:
        _, job = await api("GET", f"{project_path}job/{job['id']}/")
        if job["status"] != "submitted":
            seen = time.time()
            break
        assert time.monotonic() < deadline, "the job did not end within 60 s"
        await asyncio.sleep(0.05)
    assert job["status"] == "done", job["log"]
    events = (Path(job["working_dir"]) / "events.jsonl").read_text().splitlines()
    last = json.loads(events[-1])
    assert last["type"] == "job_done"
    assert seen - last["time"] < 1.0


async def test_background_work_is_no_user_activity(api: Any, jp_fetch: Any, tmp_path: Path) -> None:
    """JupyterHub's idle culler reads `last_activity`: applying a job's events must not move it."""
    project_path, dataset, workflow = await _setup(api, tmp_path)
    status, job = await api(
        "POST", f"{project_path}job/submit/", {}, params=_submit_params(workflow, dataset)
    )
    assert status == 202, job

    async def last_activity() -> str:
        answer = await jp_fetch("api", "status", method="GET")
        value: str = json.loads(answer.body)["last_activity"]
        return value

    # While the job runs it counts as activity (issue 22: a culler must not stop a server
    # whose user's jobs run); once it ended, nothing the extension does moves it.
    job = await wait_for_job(api, project_path, job["id"], timeout=60)
    assert job["status"] == "done", job["log"]
    before = await last_activity()
    await asyncio.sleep(1.5)  # the watcher's last passes, the reaping of the job process
    assert await last_activity() == before


async def test_a_job_submitted_through_another_server_is_followed(
    api: Any, fractal_config: dict[str, Any], tmp_path: Path, in_thread: Any
) -> None:
    """Two servers of one user on one database and host: a job submitted through the second
    one, which then stops, is finished by the first one, which was idle (no polling)."""
    project_path, dataset, workflow = await _setup(api, tmp_path)
    other = ServerProcess(
        tmp_path / "other",
        f"--FractalJupyter.db_url={fractal_config['db_url']}",
        f"--FractalJupyter.working_dir={Path(fractal_config['data_dir']) / 'jobs'}",
        "--FractalJupyter.default_username=alice",
    )
    other.data_dir.mkdir()
    await in_thread(other.start)
    try:
        job = await in_thread(
            other.api.call,
            "POST",
            f"{project_path}job/submit/?workflow_id={workflow['id']}&dataset_id={dataset['id']}",
            {},
        )
    finally:
        await in_thread(other.stop)
    assert job["status"] == "submitted"
    job = await wait_for_job(api, project_path, job["id"], timeout=60)
    assert job["status"] == "done", job["log"]


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


def test_loading_the_extension_imports_no_heavy_optional_module() -> None:
    """Tokens, migrations, widgets, arrays and SSH load when first used, not at start-up; the
    API (handlers, schemas, services, SQLAlchemy) with the first request (handlers/dispatch.py)."""
    heavy = [
        *("alembic", "jwt", "cryptography", "numpy", "numcodecs", "paramiko", "ipywidgets"),
        *("sqlalchemy", "pydantic", "fractal_jupyter.handlers.routes", "fractal_jupyter.state"),
    ]
    result = _run_python(
        "import sys, fractal_jupyter.app\n"
        f"print([name for name in {heavy!r} if name in sys.modules])"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.skipif(TEST_DB_URL is not None, reason="a SQLite file of its own")
def test_a_current_database_is_checked_not_migrated(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/fractal.db"
    code = (
        "import asyncio, sys\n"
        "from fractal_jupyter.db.engine import Database\n"
        "async def main():\n"
        f"    database = Database({url!r})\n"
        "    await database.upgrade()\n"
        "    await database.dispose()\n"
        "asyncio.run(main())\n"
        "print('alembic' in sys.modules)"
    )
    first = _run_python(code)
    assert (first.returncode, first.stdout.strip()) == (0, "True"), first.stderr
    second = _run_python(code)
    assert (second.returncode, second.stdout.strip()) == (0, "False"), second.stderr


def test_the_head_revision_is_alembic_s() -> None:
    from alembic.script import ScriptDirectory

    assert head_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()


@pytest.mark.parametrize("kind", ["inotify", "polling"])
async def test_a_file_watch_reports_writes_to_the_named_files_only(
    kind: str, tmp_path: Path
) -> None:
    changes: list[float] = []
    watch: FileWatch = (
        InotifyWatch(["events.jsonl"], lambda: changes.append(time.monotonic()))
        if kind == "inotify"
        else PollingWatch(["events.jsonl"], lambda: changes.append(time.monotonic()), 0.05, 0.2)
    )
    try:
        watch.set_folders([tmp_path], busy=True)
        await asyncio.sleep(0.3)
        (tmp_path / "workflow.log").write_text("not watched\n")
        await asyncio.sleep(0.3)
        assert changes == []
        with (tmp_path / "events.jsonl").open("a") as events:
            events.write('{"seq": 1}\n')
        for _ in range(20):
            if changes:
                break
            await asyncio.sleep(0.05)
        assert changes
    finally:
        watch.close()


def _loaded_sqlalchemy(pid: int) -> bool:
    """Whether the process mapped SQLAlchemy's compiled modules (it imported SQLAlchemy)."""
    return "/sqlalchemy/" in Path(f"/proc/{pid}/maps").read_text()


async def _job_status(url: str, job_id: int) -> str:
    """Read from the database itself: a request would load the idle server's API."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            status = await connection.scalar(text(f"SELECT status FROM job WHERE id = {job_id}"))
    finally:
        await engine.dispose()
    return str(status)


async def test_an_idle_start_loads_the_api_when_first_needed(
    tmp_path: Path, in_thread: Any
) -> None:
    """On a current database (SQLite, or PostgreSQL under FRACTAL_TEST_DB_URL) with nothing
    under way the server imports none of the API (handlers, SQLAlchemy) at start-up. A job
    submitted through another server of the same runner makes it load and follow that job;
    its requests are served as always."""
    from tests.test_restart import setup_job

    async with fresh_database_url(tmp_path) as url:
        options = (f"--FractalJupyter.db_url={url}",)
        first = ServerProcess(tmp_path, *options, "--FractalJupyter.migrate_on_start=True")
        await in_thread(first.start)
        assert await in_thread(first.api.call, "GET", "api/v2/project/") == []
        await in_thread(first.stop)
        idle = ServerProcess(tmp_path, *options)
        await in_thread(functools.partial(idle.start, fractal_request=False))
        other = ServerProcess(tmp_path, *options)
        try:
            assert idle.process is not None
            await asyncio.sleep(1.0)  # start-up is over
            assert not _loaded_sqlalchemy(idle.process.pid)
            await in_thread(other.start)
            made = await in_thread(setup_job, other.api, tmp_path, 0.1)
            await in_thread(other.stop)
            job_id = made["job"]["id"]
            deadline = time.monotonic() + 60
            while await _job_status(url, job_id) == "submitted":
                assert time.monotonic() < deadline, "the idle server did not follow the job"
                await asyncio.sleep(0.1)
            assert await _job_status(url, job_id) == "done"
            assert _loaded_sqlalchemy(idle.process.pid)
            job = await in_thread(idle.api.call, "GET", f"{made['path']}job/{job_id}/")
            assert (job["id"], job["status"]) == (job_id, "done")
        finally:
            for server in (other, idle):
                if server.process is not None:
                    await in_thread(server.stop)
