"""`jupyter fractal status|jobs|db upgrade|collect`, run as a user runs them: subprocesses.

One real server for the module, found by the commands from its runtime file (Jupyter's
folders are the module's own, so no other server is seen). Exit codes: 0 ok, 1 failure or
refused, 2 usage error, 3 no running server.

Each command and each exit code is checked in a subprocess; a start of `jupyter fractal`
costs seconds of CPU (jupyter_server's imports), so the variations of a command's output
run it in-process (`run_here`: the same entry point, `FractalJupyter.launch_instance`).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fractal_jupyter.app import FractalJupyter
from fractal_jupyter.cli.collect import CollectApp
from fractal_jupyter.cli.db import DbApp, DbUpgradeApp
from fractal_jupyter.cli.jobs import JobsApp
from fractal_jupyter.cli.status import StatusApp
from fractal_jupyter.db.engine import alembic_config
from fractal_jupyter.demo import DemoServer, free_port, server_command
from tests.support.jobs import MISBEHAVE
from tests.support.task_packages import build_task_wheel, mock_manifest
from tests.test_config import closed_port, jupyter_env

TOKEN = "cli-test-token"
COMMAND_TIMEOUT_SECONDS = 120
JOB_TIMEOUT_SECONDS = 60


@dataclass
class Server:
    root: Path
    env: dict[str, str]
    api: DemoServer
    project_id: int
    task_id: int


def run_cli(
    env: dict[str, str], cwd: Path, *args: str, timeout: float = COMMAND_TIMEOUT_SECONDS
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jupyter", "fractal", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("cli")
    env = jupyter_env(root)
    port = free_port(0)
    command = server_command(
        root,
        port,
        TOKEN,
        "--FractalJupyter.job_poll_interval=0.1",
        "--FractalJupyter.submit_rate_limit_seconds=0",
        # The commands are anonymous Jupyter callers: the OS user, an admin here.
        f"--FractalJupyter.admin_users={getpass.getuser()}",
    )
    log = (root / "server.log").open("ab")
    process = subprocess.Popen(
        command, cwd=root, env=env, stdout=log, stderr=log, start_new_session=True
    )
    api = DemoServer(f"http://127.0.0.1:{port}/", TOKEN)
    try:
        api.wait_alive(process)
        project = api.call("POST", "api/v2/project/", {"name": "cli"})
        task = api.call(
            "POST",
            "api/v2/task/",
            {
                "name": "Misbehave",
                "source": "test:cli-misbehave",
                "command_non_parallel": f"{sys.executable} {MISBEHAVE}",
            },
        )
        yield Server(root, env, api, project["id"], task["id"])
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()


def cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(server.env, server.root, *args)


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run_here(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """`run_here(env, cwd, *args)`: `jupyter fractal *args` in this process."""

    def run(env: dict[str, str], cwd: Path, *args: str) -> Finished:
        for name in [name for name in os.environ if name.startswith("JUPYTER")]:
            monkeypatch.delenv(name)
        for name, value in env.items():
            if name.startswith("JUPYTER"):
                monkeypatch.setenv(name, value)
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        returncode = 0
        try:
            FractalJupyter.launch_instance(list(args))
        except SystemExit as exit:
            returncode = int(exit.code or 0)
        finally:
            for app in (StatusApp, JobsApp, CollectApp, DbApp, DbUpgradeApp):
                app.clear_instance()
        out, err = capsys.readouterr()
        return Finished(returncode, out, err)

    yield run


def submit(server: Server, name: str, args: dict[str, Any]) -> dict[str, Any]:
    """A one-task job (the misbehaving task, non-parallel) on a dataset of its own."""
    project = f"api/v2/project/{server.project_id}/"
    dataset = server.api.call(
        "POST", project + "dataset/", {"name": name, "zarr_dir": str(server.root / name)}
    )
    workflow = server.api.call("POST", project + "workflow/", {"name": name})
    server.api.call(
        "POST",
        f"{project}workflow/{workflow['id']}/wftask/?task_id={server.task_id}",
        {"args_non_parallel": args},
    )
    job: dict[str, Any] = server.api.call(
        "POST",
        f"{project}job/submit/?workflow_id={workflow['id']}&dataset_id={dataset['id']}",
        {},
    )
    return job


def wait_for_end(server: Server, job: dict[str, Any]) -> dict[str, Any]:
    path = f"api/v2/project/{server.project_id}/job/{job['id']}/"
    deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
    while job["status"] == "submitted" and time.monotonic() < deadline:
        time.sleep(0.2)
        job = server.api.call("GET", path)
    return job


def test_no_running_server_is_exit_3_with_a_clear_message(tmp_path, run_here):
    env = jupyter_env(tmp_path)  # an empty runtime folder: no server
    finished = run_cli(env, tmp_path, "status")
    assert finished.returncode == 3, (finished.stdout, finished.stderr)
    assert finished.stderr.startswith("jupyter fractal status: No running Jupyter server found")
    assert "--url" in finished.stderr
    for args in (["jobs"], ["jobs", "1", "--follow"], ["collect", "some-package"]):
        ended = run_here(env, tmp_path, *args)
        assert ended.returncode == 3, (args, ended.stdout, ended.stderr)
        assert "No running Jupyter server found" in ended.stderr
    ended = run_here(env, tmp_path, "status", "--json")
    assert ended.returncode == 3
    assert json.loads(ended.stdout)["exit_code"] == 3
    # A server named on the command line that does not answer.
    url = f"http://127.0.0.1:{closed_port()}/"
    ended = run_here(env, tmp_path, "jobs", "--url", url, "--token", "x")
    assert ended.returncode == 3, ended.stderr
    assert f"Cannot reach the Fractal API at {url}fractal/" in ended.stderr


def test_help_and_usage_errors(tmp_path, run_here):
    env = jupyter_env(tmp_path)
    for command in (["status"], ["jobs"], ["collect"], ["db"], ["db", "upgrade"]):
        ended = run_here(env, tmp_path, *command, "--help")
        assert ended.returncode == 0, ended.stderr
        assert ended.stdout.startswith(f"usage: jupyter fractal {' '.join(command)}")
        assert "exit codes:\n  0  success\n  1  failure: " in ended.stdout
        assert ("  3  no running Jupyter server" in ended.stdout) == (command[0] != "db")

    finished = run_cli(env, tmp_path, "jobs", "--follow")
    assert finished.returncode == 2
    assert "error: --follow needs a JOB_ID" in finished.stderr
    usage_errors = {
        ("jobs", "seven"): "invalid int value: 'seven'",
        ("collect",): "the following arguments are required: package",
        ("collect", "pkg", "--pin", "numpy"): "write it as NAME=VERSION",
        ("status", "--bogus"): "unrecognized arguments: --bogus",
        ("db",): "the following arguments are required: action",
        ("db", "upgrade", "--bogus"): "unrecognized arguments: --bogus",
    }
    for args, message in usage_errors.items():
        ended = run_here(env, tmp_path, *args)
        assert ended.returncode == 2, (args, ended.stderr)
        assert message in ended.stderr, (args, ended.stderr)


@pytest.fixture
def fractal_config(tmp_path: Path) -> dict[str, Any]:
    """The in-process server (`jp_serverapp`, only in `test_status_of_a_server_without_fractal`)
    has a configuration it cannot apply: it answers 503 on every Fractal route."""
    return {"db_url": f"sqlite+aiosqlite:///{tmp_path}/fractal.db", "runner_backend": "slurmm"}


async def test_status_of_a_server_without_fractal(
    http_server, jp_http_port, jp_base_url, jp_serverapp, tmp_path
):
    """The in-process server's loop serves while the commands run (subprocesses: in this
    process the ServerApp singleton exists)."""
    url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}"
    token = jp_serverapp.identity_provider.token
    env = jupyter_env(tmp_path)

    async def command(name: str, *args: str) -> tuple[int | None, str]:
        process = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "jupyter", "fractal", name, "--token", token, *args],
            env=env,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT_SECONDS)
        return process.returncode, out.decode() + err.decode()

    async def status(*args: str) -> tuple[int | None, str]:
        return await command("status", *args)

    # Below `other/` the Jupyter server answers 404: no Fractal there (extension not loaded).
    (misconfigured, text), (elsewhere, json_text), (jobs, jobs_text) = await asyncio.gather(
        status("--url", url),
        status("--json", "--url", url + "other/"),
        command("jobs", "--url", url + "other/"),
    )
    assert misconfigured == 1, text
    lines = text.splitlines()
    assert lines[0] == f"Jupyter server:  {url} (found from arguments)"
    assert lines[1].startswith("Fractal:         NOT SERVING: Fractal is not serving: its conf")
    assert "FractalJupyter.runner_backend = 'slurmm'" in lines[1]
    assert elsewhere == 1, json_text
    found = json.loads(json_text)
    assert found["serving"] is False
    assert found["problem"] == (
        f"the Jupyter server at {url}other/ does not serve Fractal: the fractal_jupyter "
        "extension is not loaded (`jupyter server extension list` shows it)"
    )
    assert jobs == 1, jobs_text
    assert jobs_text.strip() == f"jupyter fractal jobs: {found['problem']}"


def test_status(server, run_here):
    finished = cli(server, "status")
    assert finished.returncode == 0, finished.stderr
    lines = finished.stdout.splitlines()
    assert lines[0] == f"Jupyter server:  {server.api.url} (found from runtime file)"
    assert lines[1].startswith("Fractal:         serving, fractal_jupyter ")
    assert lines[2] == f"User:            {getpass.getuser()} (administrator)"
    assert lines[3] == (
        f"Database:        reachable, sqlite+aiosqlite:///{server.root}/fractal/fractal.db"
    )
    assert lines[4] == "Runner backend:  local"

    ended = run_here(server.env, server.root, "status", "--json")
    assert ended.returncode == 0, ended.stderr
    status = json.loads(ended.stdout)
    assert status["serving"] is True
    assert status["user"] == {"username": getpass.getuser(), "is_admin": True}
    assert status["runner_backend"] == "local"
    assert status["database"]["reachable"] is True


def test_jobs_list_show_follow_and_unknown_id(server, run_here):
    failed = wait_for_end(server, submit(server, "fails", {"mode": "exit"}))
    assert failed["status"] == "failed"
    running = submit(server, "sleeps", {"mode": "sleep", "seconds": 5})
    follow = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "fractal", "jobs", str(running["id"]), "--follow"],
        env=server.env,
        cwd=server.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    status = json.loads(run_here(server.env, server.root, "status", "--json").stdout)
    assert running["id"] in [job["id"] for job in status["running_jobs"]]
    listing = run_here(server.env, server.root, "jobs")
    assert listing.returncode == 0, listing.stderr
    rows = [line.split() for line in listing.stdout.splitlines()]
    assert rows[0] == ["ID", "STATUS", "PROJECT", "WORKFLOW", "DATASET", "STARTED", "ENDED"]
    by_id = {row[0]: row for row in rows[1:]}
    assert by_id[str(failed["id"])][1:5] == ["failed", "cli", "fails", "fails"]
    assert by_id[str(running["id"])][1] == "submitted"
    assert by_id[str(running["id"])][-1] == "-"  # not ended

    out, err = follow.communicate(timeout=JOB_TIMEOUT_SECONDS)
    assert follow.returncode == 0, (out, err)
    assert f"Start of job {running['id']}: 1 task(s)" in out  # the job's log, as it grew
    assert f"End of job {running['id']}: done" in out
    assert out.splitlines()[-1].startswith(f"Job {running['id']} done at ")

    finished = cli(server, "jobs", str(failed["id"]), "--follow")
    assert finished.returncode == 1, finished.stderr
    assert "the image is corrupt" in finished.stdout
    assert finished.stdout.splitlines()[-1].startswith(f"Job {failed['id']} failed at ")

    ended = run_here(server.env, server.root, "jobs", str(failed["id"]), "--json")
    assert ended.returncode == 0, ended.stderr
    job = json.loads(ended.stdout)
    assert job["id"] == failed["id"] and job["status"] == "failed"
    assert "the image is corrupt" in job["log"]
    ended = run_here(server.env, server.root, "jobs", str(failed["id"]), "--follow", "--json")
    assert ended.returncode == 1  # the followed job failed; stdout: nothing but the job
    assert json.loads(ended.stdout) == job
    ended = run_here(server.env, server.root, "jobs", str(failed["id"]))
    assert ended.returncode == 0, ended.stderr
    lines = ended.stdout.splitlines()
    assert lines[1].split()[:2] == [str(failed["id"]), "failed"]
    assert lines[3] == "Log:" and "the image is corrupt" in ended.stdout

    ended = run_here(server.env, server.root, "jobs", "--json")
    assert ended.returncode == 0, ended.stderr
    jobs = {job["id"]: job for job in json.loads(ended.stdout)}
    assert jobs[running["id"]]["status"] == "done"
    assert jobs[failed["id"]]["status"] == "failed"

    unknown = (
        "jupyter fractal jobs: you have no job with id 9999 (`jupyter fractal jobs` lists yours)."
    )
    finished = cli(server, "jobs", "9999", "--follow")
    assert finished.returncode == 1, finished.stderr
    assert finished.stderr.strip() == unknown
    assert finished.stdout == ""
    ended = run_here(server.env, server.root, "jobs", "9999")
    assert (ended.returncode, ended.stderr.strip()) == (1, unknown)
    ended = run_here(server.env, server.root, "jobs", "9999", "--json")
    assert ended.returncode == 1
    assert json.loads(ended.stdout)["error"].startswith("you have no job with id 9999")


def test_collect_a_wheel_and_a_failing_one(server, tmp_path, run_here):
    good = build_task_wheel(tmp_path / "good", name="cli-tasks", manifest=mock_manifest())
    bad = build_task_wheel(tmp_path / "bad", name="cli-no-manifest", manifest=None)
    # The two collections run at once: each costs seconds (a venv, pip).
    command = [sys.executable, "-m", "jupyter", "fractal", "collect"]
    running = [
        subprocess.Popen(
            [*command, *args],
            env=server.env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in ([str(good.relative_to(tmp_path))], [str(bad), "--json"])
    ]
    (good_out, good_err), (bad_out, bad_err) = (
        process.communicate(timeout=COMMAND_TIMEOUT_SECONDS) for process in running
    )
    assert running[0].returncode == 0, (good_out, good_err)
    lines = good_out.splitlines()
    assert lines[0].startswith(f"Collecting {good} (task collection ")
    statuses = [line.split("] ", 1)[1] for line in lines if line.startswith("[")]
    assert statuses[-1] == "OK" and "installing" in statuses
    assert any(line.startswith("    ") and "END: collection OK" in line for line in lines)
    assert lines[-1] == (
        f"OK: {good}: 3 tasks collected: Create Mock Plate, Project Mock, Measure Mock"
    )

    assert running[1].returncode == 1, (bad_out, bad_err)
    state = json.loads(bad_out)  # --json: nothing but the final state on stdout
    assert state["data"]["status"] == "fail"
    assert "manifest" in state["data"]["info"].lower()

    # Bad input the server refuses at once: the same package again, a wheel with a version.
    again = run_here(server.env, server.root, "collect", str(good))
    assert again.returncode == 1, again.stderr
    assert "it was collected already" in again.stderr
    assert again.stderr.startswith("jupyter fractal collect: the server refused POST ")
    versioned = run_here(server.env, server.root, "collect", str(good), "--package-version", "1")
    assert versioned.returncode == 1
    assert "Cannot provide package version when package is a wheel file" in versioned.stderr


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def test_db_upgrade_on_sqlite_is_idempotent_and_refuses_sync_urls(tmp_path, run_here):
    env = jupyter_env(tmp_path)
    database = tmp_path / "shared" / "fractal.db"
    url = f"sqlite+aiosqlite:///{database}"
    head = head_revision()

    fresh = run_cli(env, tmp_path, "db", "upgrade", f"--FractalJupyter.db_url={url}")
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.strip() == f"Database {url}: upgraded from revision (empty) to {head}."
    assert database.exists()

    again = run_here(env, tmp_path, "db", "upgrade", "--db-url", url, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {
        "db_url": url,
        "revision_before": head,
        "revision_after": head,
        "head": head,
        "upgraded": False,
        "row_security_installed": False,
    }
    text = run_here(env, tmp_path, "db", "upgrade", "--db-url", url)
    assert text.stdout.strip() == f"Database {url}: already at the newest revision {head}; " + (
        "nothing to do."
    )

    # The default database, as the server finds it: <data_dir>/fractal.db.
    data_dir = tmp_path / "data"
    default = run_here(env, tmp_path, "db", "upgrade", f"--FractalJupyter.data_dir={data_dir}")
    assert default.returncode == 0, default.stderr
    assert f"sqlite+aiosqlite:///{data_dir}/fractal.db: upgraded" in default.stdout

    refused = run_here(env, tmp_path, "db", "upgrade", "--db-url", "postgresql://u:pw@host/f")
    assert refused.returncode == 1, refused.stdout
    assert refused.stderr.strip() == (
        "jupyter fractal db upgrade: FractalJupyter.db_url = 'postgresql://u:***@host/f' is "
        "not valid: it accepts an SQLAlchemy URL with an async driver: "
        "sqlite+aiosqlite:///<path of the file> or postgresql+asyncpg://user:password@host/dbname."
    )
    secured = run_here(env, tmp_path, "db", "upgrade", "--db-url", url, "--row-security")
    assert secured.returncode == 1, secured.stdout
    assert secured.stderr.strip() == (
        "jupyter fractal db upgrade: --row-security needs a PostgreSQL database; a SQLite "
        "file is one user's, protected by its file mode"
    )
    ended = run_here(env, tmp_path, "db", "upgrade", "--db-url", f"sqlite:///{tmp_path}/s.db")
    assert ended.returncode == 1
    assert "is not valid: it accepts an SQLAlchemy URL with an async driver" in ended.stderr
    assert not (tmp_path / "s.db").exists()

    unreachable = f"postgresql+asyncpg://u:secret@127.0.0.1:{closed_port()}/f"
    ended = run_here(env, tmp_path, "db", "upgrade", "--db-url", unreachable, "--json")
    assert ended.returncode == 1
    error = json.loads(ended.stdout)["error"]
    assert error.startswith("the database postgresql+asyncpg://u:***@127.0.0.1:")
    assert "could not be migrated: " in error and "secret" not in ended.stderr


def test_db_upgrade_refuses_a_database_of_a_newer_version(tmp_path, run_here):
    """Nothing to migrate to: it says which version to install and leaves the data alone."""
    import sqlite3

    env = jupyter_env(tmp_path)
    database = tmp_path / "fractal.db"
    url = f"sqlite+aiosqlite:///{database}"
    assert run_here(env, tmp_path, "db", "upgrade", "--db-url", url).returncode == 0
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999_newer'")
    refused = run_here(env, tmp_path, "db", "upgrade", "--db-url", url)
    assert refused.returncode == 1, refused.stdout
    assert refused.stderr.startswith(
        f"jupyter fractal db upgrade: the database {url} was migrated by a newer "
        f"fractal-jupyter than this one (which knows revisions up to {head_revision()}); "
        "nothing was done. Install that newer version here and on the servers."
    ), refused.stderr
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [
            ("9999_newer",)
        ]


async def _create_or_drop_database(admin_url: str, statement: str) -> None:
    import asyncpg  # type: ignore[import-untyped]
    from sqlalchemy.engine import make_url

    url = make_url(admin_url)
    connection = await asyncpg.connect(
        host=url.host,
        port=url.port,
        user=url.username,
        password=url.password,
        database=url.database,
    )
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.mark.skipif(
    not os.environ.get("FRACTAL_TEST_DB_URL", "").startswith("postgresql"),
    reason="needs FRACTAL_TEST_DB_URL (PostgreSQL)",
)
def test_db_upgrade_on_a_fresh_postgresql_database(tmp_path):
    from sqlalchemy.engine import make_url

    shared = os.environ["FRACTAL_TEST_DB_URL"]
    name = f"cli_upgrade_{os.getpid()}"
    url = make_url(shared).set(database=name).render_as_string(hide_password=False)
    shown = make_url(url).render_as_string(hide_password=True)
    asyncio.run(_create_or_drop_database(shared, f'CREATE DATABASE "{name}"'))
    try:
        env = jupyter_env(tmp_path)
        fresh = run_cli(env, tmp_path, "db", "upgrade", "--db-url", url)
        assert fresh.returncode == 0, fresh.stderr
        head = head_revision()
        assert fresh.stdout.strip() == (
            f"Database {shown}: upgraded from revision (empty) to {head}."
        )
        again = run_cli(env, tmp_path, "db", "upgrade", "--db-url", url, "--json")
        assert again.returncode == 0, again.stderr
        result = json.loads(again.stdout)
        assert (result["revision_before"], result["upgraded"]) == (head, False)
    finally:
        asyncio.run(_create_or_drop_database(shared, f'DROP DATABASE IF EXISTS "{name}"'))
