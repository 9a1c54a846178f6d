"""fractal_jupyter behind a real JupyterHub: two OS users, a shared PostgreSQL, SLURM.

scripts/jupyterhub-test.sh starts JupyterHub 6 (LocalProcessSpawner: each server runs as its
user's OS account) with fractal_jupyter in every single-user server, all servers on one
PostgreSQL database (scripts/postgres-test.sh) and on the `slurm` backend (the single-node
cluster of scripts/slurm-cluster.sh). Everything below goes through HTTP, the hub's proxy in
front; only the ownership checks (files, SLURM jobs) look at the machine itself.

Root only: the hub has to setuid to the users. Skipped, loudly, elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fractal_jupyter.cli.db import upgrade
from fractal_jupyter.runner.files import recorded_job_ids
from tests.support.cluster import ClusterInfo
from tests.support.hub import (
    JOB_TIMEOUT,
    Hub,
    Server,
    http,
    new_workspace,
    own_tasks,
    run_script,
    start_hub,
    stop_hub,
    until,
)

REPO = Path(__file__).resolve().parents[2]
PG_SCRIPT = REPO / "scripts" / "postgres-test.sh"
# Our own PostgreSQL port and data directory: the PostgreSQL suite may use the default one.
PG_PORT = "55439"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="*** JupyterHub end-to-end test needs root (the hub setuids to its OS users) ***",
)


# ---------------------------------------------------------------------------------------------
# The deployment: PostgreSQL, the cluster, the hub (once per module)


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    env = {"FRACTAL_TEST_PG_PORT": PG_PORT}
    url = run_script([str(PG_SCRIPT), "start"], env, "PostgreSQL (scripts/postgres-test.sh)")
    try:
        yield url
    finally:
        subprocess.run([str(PG_SCRIPT), "stop"], env={**os.environ, **env}, capture_output=True)


def slurm_server_config(cluster: ClusterInfo) -> dict[str, Any]:
    """The servers' SLURM settings: the test cluster's, with the servers' own Python (the
    hub's environment, which the users can run) on the node."""
    settings = cluster.slurm_settings()
    del settings["slurm_python"]
    return {"runner_backend": "slurm", "job_poll_interval": 0.2, **settings}


@pytest.fixture(scope="module")
def hub(pg_url: str, slurm_cluster: ClusterInfo) -> Iterator[Hub]:
    # The administrator's step: servers on a shared database do not migrate it
    # (migrate_on_start is False there) and answer 503 until it is current.
    asyncio.run(upgrade(pg_url))
    server_config = {"FractalJupyter": {"db_url": pg_url, **slurm_server_config(slurm_cluster)}}
    hub = start_hub({"FRACTAL_HUB_SERVER_CONFIG": json.dumps(server_config)})
    try:
        yield hub
    finally:
        # nothing of a failed run may stay queued on the cluster
        for user in hub.env["HUB_USERS"].split():
            subprocess.run(["scancel", "-u", user], capture_output=True)
        stop_hub()


@pytest.fixture(scope="module")
def world(hub: Hub) -> Iterator[dict[str, Any]]:
    """Both servers started through the hub, the tasks, and each user's workspace."""
    users = hub.env["HUB_USERS"].split()
    assert users[:2] == ["alice", "bob"], users
    hub.start_servers(*users)
    run = uuid.uuid4().hex[:8]
    tasks = {}
    spaces = {}
    for user in users:
        server = hub.server(user)
        tasks[user] = own_tasks(hub, server, user)
        spaces[user] = new_workspace(
            server,
            run,
            [
                (
                    tasks[user]["Create demo plate"],
                    {"args_non_parallel": {"rows": "A", "columns": 2, "fields": 1}},
                ),
                (tasks[user]["Measure intensity"], {}),
            ],
        )
    yield {"tasks": tasks, "spaces": spaces, "run": run}
    for space in spaces.values():
        shutil.rmtree(space.zarr_dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# The checks


def test_each_user_sees_only_their_own_things(hub: Hub, world: dict[str, Any]) -> None:
    alice, bob = world["spaces"]["alice"], world["spaces"]["bob"]
    # who the servers think the caller is: the hub user, not an anonymous id
    assert alice.server.ok("GET", "auth/current-user/")["email"].startswith("alice")
    assert bob.server.ok("GET", "auth/current-user/")["email"].startswith("bob")
    for mine, theirs in [(alice, bob), (bob, alice)]:
        server = mine.server
        projects = {p["id"] for p in server.ok("GET", "api/v2/project/")}
        assert mine.project["id"] in projects
        assert theirs.project["id"] not in projects
        datasets = {d["id"] for d in server.ok("GET", "api/v2/dataset/")}
        assert mine.dataset["id"] in datasets and theirs.dataset["id"] not in datasets
        workflows = {w["id"] for w in server.ok("GET", "api/v2/workflow/")}
        assert mine.workflow["id"] in workflows and theirs.workflow["id"] not in workflows
        other = theirs.project["id"]
        for path in [
            f"api/v2/project/{other}/",
            f"api/v2/project/{other}/dataset/{theirs.dataset['id']}/",
            f"api/v2/project/{other}/workflow/{theirs.workflow['id']}/",
        ]:
            status, answer = server.call("GET", path)
            assert status == 403, (path, status, answer)
            assert "project" in json.dumps(answer).lower()


def test_another_users_token_is_refused(hub: Hub, world: dict[str, Any]) -> None:
    alice = world["spaces"]["alice"]
    as_bob = hub.server("alice", as_user="bob")
    for path in ["api/v2/project/", f"api/v2/project/{alice.project['id']}/"]:
        status, answer = as_bob.call("GET", path)
        assert status in (401, 403), (status, answer)
        assert alice.project["name"] not in json.dumps(answer)
    status, answer = as_bob.call("POST", "api/v2/project/", {"name": "bob was here"})
    assert status in (401, 403), (status, answer)
    names = [p["name"] for p in alice.server.ok("GET", "api/v2/project/")]
    assert "bob was here" not in names
    # no token at all
    status, _ = http("GET", f"{alice.server.url}fractal/api/v2/project/")
    assert status in (401, 403)


def test_hub_admin_cannot_run_jobs_on_a_users_server(hub: Hub, world: dict[str, Any]) -> None:
    admin = hub.env["HUB_ADMIN"]
    as_admin = hub.server("alice", as_user=admin)
    # the admin's token reaches alice's server (access:servers), as the admin, not as alice
    assert as_admin.ok("GET", "auth/current-user/")["email"].startswith(admin)
    alice = world["spaces"]["alice"]
    assert alice.project["id"] not in {p["id"] for p in as_admin.ok("GET", "api/v2/project/")}
    project = as_admin.ok("POST", "api/v2/project/", {"name": "admin on alice's server"})
    pid = project["id"]
    dataset = as_admin.ok(
        "POST", f"api/v2/project/{pid}/dataset/", {"name": "d", "zarr_dir": "/tmp/admin-e2e"}
    )
    workflow = as_admin.ok("POST", f"api/v2/project/{pid}/workflow/", {"name": "w"})
    sleep = own_tasks(hub, as_admin, admin)["Sleep"]
    as_admin.ok(
        "POST",
        f"api/v2/project/{pid}/workflow/{workflow['id']}/wftask/?task_id={sleep['id']}",
        {"args_non_parallel": {"seconds": 0}},
    )
    status, answer = as_admin.call(
        "POST",
        f"api/v2/project/{pid}/job/submit/?workflow_id={workflow['id']}&dataset_id={dataset['id']}",
        {},
    )
    assert status == 403, (status, answer)
    assert "alice" in answer["detail"] and admin in answer["detail"], answer
    assert as_admin.ok("GET", f"api/v2/project/{pid}/job/") == []


# --- jobs ------------------------------------------------------------------------------------


def kernel_run(server: Server, code: str, timeout: float) -> str:
    """Run `code` in a new kernel of `server` (REST + the kernel websocket); its stdout."""
    return asyncio.run(_kernel_run(server, code, timeout))


async def _kernel_run(server: Server, code: str, timeout: float) -> str:
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    status, kernel = http("POST", f"{server.url}api/kernels", server.token, {"name": "python3"})
    assert status == 201, (status, kernel)
    session = uuid.uuid4().hex
    ws_url = server.url.replace("http://", "ws://") + f"api/kernels/{kernel['id']}/channels"
    request = HTTPRequest(
        f"{ws_url}?session_id={session}", headers={"Authorization": f"token {server.token}"}
    )
    connection = await websocket_connect(request)
    msg_id = uuid.uuid4().hex
    await connection.write_message(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "username": server.user,
                    "session": session,
                    "msg_type": "execute_request",
                    "version": "5.3",
                    "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                },
                "parent_header": {},
                "metadata": {},
                "content": {
                    "code": code,
                    "silent": False,
                    "store_history": False,
                    "user_expressions": {},
                    "allow_stdin": False,
                    "stop_on_error": True,
                },
                "channel": "shell",
                "buffers": [],
            }
        )
    )
    output: list[str] = []
    errors: list[str] = []
    replied = idle = False
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while not (replied and idle):
            left = deadline - asyncio.get_running_loop().time()
            raw = await asyncio.wait_for(connection.read_message(), max(left, 0.1))
            assert raw is not None, "the kernel websocket closed"
            message = json.loads(raw)
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "stream":
                output.append(content["text"])
            elif kind == "error":
                errors.append("\n".join(content["traceback"]))
            elif kind == "execute_reply":
                replied = True
            elif kind == "status" and content["execution_state"] == "idle":
                idle = True
    finally:
        connection.close()
        http("DELETE", f"{server.url}api/kernels/{kernel['id']}", server.token)
    assert not errors, "".join(output) + "\n".join(errors)
    return "".join(output)


def marked(output: str) -> dict[str, Any]:
    """The JSON object the kernel code printed after `RESULT `."""
    for line in output.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
            return result
    raise AssertionError(f"no RESULT line in the kernel's output:\n{output}")


def slurm_users(job_dir: str) -> dict[str, str]:
    """{SLURM job id: user} of the SLURM jobs a Fractal job recorded in its folder."""
    ids = recorded_job_ids(Path(job_dir))
    if not ids:
        return {}
    listing = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%i|%u"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split("|", 1) for line in listing.split())


def active_slurm_jobs(user: str) -> list[str]:
    return subprocess.run(
        ["squeue", "-h", "-u", user, "-t", "PENDING,RUNNING,COMPLETING", "-o", "%i"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()


def owners(folder: Path) -> set[int]:
    """The uids owning `folder` and everything in it."""
    return {path.lstat().st_uid for path in [folder, *folder.rglob("*")]}


def test_jobs_run_on_slurm_as_their_owners(hub: Hub, world: dict[str, Any]) -> None:
    alice, bob = world["spaces"]["alice"], world["spaces"]["bob"]
    jobs = {"alice": alice.submit(), "bob": bob.submit()}
    # a kernel in alice's server: FractalClient() with no arguments finds her server
    code = f"""
import json
from fractal_jupyter.client import FractalClient
client = FractalClient()
projects = [p.id for p in client.list_projects()]
first = client.get_job({alice.project["id"]}, {jobs["alice"]["id"]}).status
job = client.wait_for_job({alice.project["id"]}, {jobs["alice"]["id"]}, timeout={JOB_TIMEOUT})
print("RESULT " + json.dumps({{"projects": projects, "first": first, "status": job.status,
    "user": client.get_current_user().email}}))
"""
    seen = marked(kernel_run(alice.server, code, JOB_TIMEOUT + 30))
    assert alice.project["id"] in seen["projects"]
    assert bob.project["id"] not in seen["projects"]
    assert seen["user"].startswith("alice")
    assert seen["status"] == "done", seen
    ended = {"alice": alice.job(jobs["alice"]["id"]), "bob": bob.wait(jobs["bob"]["id"])}
    for user, space in [("alice", alice), ("bob", bob)]:
        job = ended[user]
        assert job["status"] == "done", job["log"]
        uid = pwd.getpwnam(user).pw_uid
        # the job's files and the images it made belong to the user's OS account
        assert owners(Path(job["working_dir"])) == {uid}, job["working_dir"]
        assert owners(space.zarr_dir) == {uid}
        page = space.images()
        assert page["total_count"] == 2, page
        # ... and so do its SLURM jobs
        slurm = slurm_users(job["working_dir"])
        assert slurm, f"no SLURM job recorded in {job['working_dir']}"
        assert set(slurm.values()) == {user}, slurm
    # neither sees the other's jobs
    for mine, theirs, user in [(alice, bob, "bob"), (bob, alice, "alice")]:
        listed = {j["id"] for j in mine.server.ok("GET", "api/v2/job/")}
        assert ended[user]["id"] not in listed
        status, _ = mine.server.call(
            "GET", f"api/v2/project/{theirs.project['id']}/job/{ended[user]['id']}/"
        )
        assert status == 403


def test_job_outlives_its_server(hub: Hub, world: dict[str, Any]) -> None:
    """Alice's server is stopped through the hub while her job runs; the job still ends,
    and once her server is back it shows the job done, with the images it made."""
    alice = world["spaces"]["alice"]
    server, tasks = alice.server, world["tasks"]["alice"]
    workflow = alice.add_workflow(
        "slow",
        [
            (tasks["Sleep"], {"args_non_parallel": {"seconds": 6}}),
            (
                tasks["Create demo plate"],
                {"args_non_parallel": {"plate_name": "slow.zarr", "rows": "B", "columns": 1}},
            ),
        ],
    )
    job = alice.submit(workflow)
    folder = job["working_dir"]
    uid = pwd.getpwnam("alice").pw_uid
    until("the sleeping task on SLURM", lambda: active_slurm_jobs("alice"), 60)
    assert alice.job(job["id"])["status"] == "submitted"
    hub.stop_server("alice")
    status, _ = server.call("GET", "api/alive/")
    assert status != 200, "alice's server still answers after the hub stopped it"
    assert active_slurm_jobs("alice"), "alice's SLURM job did not outlive her server"

    def both_tasks_ran() -> bool:  # one SLURM job per task here
        return len(recorded_job_ids(Path(folder))) >= 2 and not active_slurm_jobs("alice")

    until("both tasks to run on SLURM", both_tasks_ran, JOB_TIMEOUT, 0.5)
    assert set(slurm_users(folder).values()) == {"alice"}
    hub.start_servers("alice")
    ended = alice.wait(job["id"])
    assert ended["status"] == "done", ended["log"]
    assert owners(Path(folder)) == {uid}
    page = alice.images({"plate": "slow.zarr"})
    assert page["total_count"] == 2, page  # fields: 2 by default


def test_servers_starting_together_migrate_once(pg_url: str) -> None:
    """A hub spawns many servers at once on one fresh PostgreSQL database: one migrates, the
    others wait for it (without the lock, concurrent CREATE TABLEs failed)."""
    from fractal_jupyter.db.engine import Database

    async def race() -> list[Any]:
        admin = Database(pg_url)
        name = f"race_{uuid.uuid4().hex[:8]}"
        async with admin.engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.exec_driver_sql(f"CREATE DATABASE {name}")
        servers = [Database(pg_url.rsplit("/", 1)[0] + f"/{name}") for _ in range(3)]
        try:
            return await asyncio.wait_for(
                asyncio.gather(*(server.upgrade() for server in servers), return_exceptions=True),
                120,
            )
        finally:
            for server in servers:
                await server.dispose()
            async with admin.engine.connect() as connection:
                await connection.execution_options(isolation_level="AUTOCOMMIT")
                await connection.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
            await admin.dispose()

    assert asyncio.run(race()) == [None, None, None]
