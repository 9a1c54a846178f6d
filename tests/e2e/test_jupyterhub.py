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
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fractal_jupyter.cli.db import upgrade
from fractal_jupyter.runner.files import recorded_job_ids
from tests.support.cluster import ClusterInfo

REPO = Path(__file__).resolve().parents[2]
HUB_SCRIPT = REPO / "scripts" / "jupyterhub-test.sh"
PG_SCRIPT = REPO / "scripts" / "postgres-test.sh"
# Our own PostgreSQL port and data directory: the PostgreSQL suite may use the default one.
PG_PORT = "55439"
JOB_TIMEOUT = 240.0

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="*** JupyterHub end-to-end test needs root (the hub setuids to its OS users) ***",
)


# ---------------------------------------------------------------------------------------------
# HTTP


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect (to the hub's login page, say) is an answer of its own here."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


NO_REDIRECTS = urllib.request.build_opener(_NoRedirect)


def http(
    method: str, url: str, token: str | None = None, body: Any = None, timeout: float = 60
) -> tuple[int, Any]:
    """One request; (status, parsed JSON or text). Never raises for an HTTP status."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"token {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with NO_REDIRECTS.open(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    text = raw.decode(errors="replace")
    try:
        return status, json.loads(text) if text else None
    except ValueError:
        return status, text


def until(what: str, check: Any, timeout: float, interval: float = 0.25) -> Any:
    """Poll `check()` until it returns something truthy; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass
class Server:
    """A user's single-user server as seen through the hub, called with one token."""

    hub_url: str
    user: str
    token: str

    @property
    def url(self) -> str:
        return f"{self.hub_url}/user/{self.user}/"

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return http(method, f"{self.url}fractal/{path}", self.token, body)

    def ok(self, method: str, path: str, body: Any = None, status: int = 0) -> Any:
        code, answer = self.call(method, path, body)
        expected = status or {"POST": 201, "DELETE": 204}.get(method, 200)
        assert code == expected, f"{method} {path} as {self.token[:4]}..: {code} {answer}"
        return answer


@dataclass
class Hub:
    env: dict[str, str]
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.env["HUB_URL"]

    def api(self, method: str, path: str, body: Any = None, token: str = "") -> tuple[int, Any]:
        return http(method, f"{self.env['HUB_API_URL']}/{path}", token or self.service, body)

    @property
    def service(self) -> str:
        return self.env["HUB_SERVICE_TOKEN"]

    def login(self, user: str, password: str) -> str:
        """An API token for `user`, from their password (the hub's REST 'login')."""
        status, answer = self.api(
            "POST",
            f"users/{user}/tokens",
            {"auth": {"username": user, "password": password}, "expires_in": 3600},
            token="-",
        )
        assert status == 201, f"token for {user}: {status} {answer}"
        token: str = answer["token"]
        self.tokens[user] = token
        return token

    def server_state(self, user: str) -> dict[str, Any] | None:
        status, answer = self.api("GET", f"users/{user}")
        assert status == 200, answer
        servers: dict[str, Any] = answer.get("servers") or {}
        return servers.get("")

    def start_servers(self, *users: str) -> None:
        """Spawn the servers (all at once: the hub answers 202 at once), wait until ready."""
        for user in users:
            status, answer = self.api("POST", f"users/{user}/server")
            assert status in (201, 202), f"spawn {user}: {status} {answer}"
        for user in users:
            until(f"{user}'s server", lambda u=user: (self.server_state(u) or {}).get("ready"), 90)

    def stop_server(self, user: str) -> None:
        status, answer = self.api("DELETE", f"users/{user}/server")
        assert status in (202, 204), f"stop {user}: {status} {answer}"
        until(f"{user}'s server to stop", lambda: self.server_state(user) is None, 60)

    def server(self, user: str, as_user: str | None = None) -> Server:
        return Server(self.url, user, self.tokens[as_user or user])


# ---------------------------------------------------------------------------------------------
# The deployment: PostgreSQL, the cluster, the hub (once per module)


def _script(command: list[str], env: dict[str, str], what: str) -> str:
    done = subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, timeout=900
    )
    if done.returncode == 3:
        pytest.skip(f"*** JupyterHub end-to-end test: {what} cannot run here: {done.stderr} ***")
    assert done.returncode == 0, f"{what} failed ({done.returncode}):\n{done.stderr}"
    return done.stdout.strip()


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    env = {"FRACTAL_TEST_PG_PORT": PG_PORT}
    url = _script([str(PG_SCRIPT), "start"], env, "PostgreSQL (scripts/postgres-test.sh)")
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
    env = {"FRACTAL_HUB_SERVER_CONFIG": json.dumps(server_config)}
    # a hub left over by an interrupted run would keep servers with other settings
    subprocess.run([str(HUB_SCRIPT), "stop"], capture_output=True)
    env_file = _script([str(HUB_SCRIPT), "start"], env, "JupyterHub (scripts/jupyterhub-test.sh)")
    values = dict(
        line.split("=", 1) for line in Path(env_file).read_text().splitlines() if "=" in line
    )
    hub = Hub(values)
    try:
        for user in values["HUB_USERS"].split():
            hub.login(user, values["HUB_USER_PASSWORD"])
        hub.login(values["HUB_ADMIN"], values["HUB_ADMIN_PASSWORD"])
        yield hub
    finally:
        # nothing of a failed run may stay queued on the cluster
        for user in values["HUB_USERS"].split():
            subprocess.run(["scancel", "-u", user], capture_output=True)
        subprocess.run([str(HUB_SCRIPT), "stop"], capture_output=True)


@dataclass
class Workspace:
    """One user's project, dataset and workflow, made through their own server."""

    server: Server
    project: dict[str, Any]
    dataset: dict[str, Any]
    workflow: dict[str, Any]
    zarr_dir: Path

    def submit(self, workflow: dict[str, Any] | None = None) -> dict[str, Any]:
        workflow = workflow or self.workflow
        path = (
            f"api/v2/project/{self.project['id']}/job/submit/"
            f"?workflow_id={workflow['id']}&dataset_id={self.dataset['id']}"
        )
        job: dict[str, Any] = self.server.ok("POST", path, {}, status=202)
        return job

    def job(self, job_id: int) -> dict[str, Any]:
        job: dict[str, Any] = self.server.ok(
            "GET", f"api/v2/project/{self.project['id']}/job/{job_id}/"
        )
        return job

    def wait(self, job_id: int) -> dict[str, Any]:
        def ended() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if job["status"] != "submitted" else None

        job: dict[str, Any] = until(f"job {job_id}", ended, JOB_TIMEOUT, 0.5)
        return job


def hub_python_tasks(hub: Hub) -> list[dict[str, Any]]:
    """The demo tasks and a sleeping task, with commands the hub users can run."""
    python = f"{hub.env['HUB_VENV']}/bin/python"
    listing = subprocess.run(
        [
            python,
            "-c",
            "import json; from fractal_jupyter.demo_tasks.manifest import demo_task_bodies; "
            "print(json.dumps(demo_task_bodies()))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    bodies: list[dict[str, Any]] = json.loads(listing.stdout)
    folder = Path(hub.env["HUB_DIR"]) / "tasks"
    folder.mkdir(mode=0o755, exist_ok=True)
    script = folder / "sleep_task.py"
    shutil.copyfile(Path(__file__).parent / "hub" / "sleep_task.py", script)
    script.chmod(0o644)
    bodies.append(
        {
            "name": "Sleep",
            "source": "e2e:sleep",
            "command_non_parallel": f"{python} {script}",
            "args_schema_non_parallel": {
                "type": "object",
                "properties": {
                    "zarr_urls": {"type": "array"},
                    "zarr_dir": {"type": "string"},
                    "seconds": {"type": "number"},
                },
                "required": ["zarr_urls", "zarr_dir"],
            },
        }
    )
    return bodies


def own_tasks(hub: Hub, server: Server, user: str) -> dict[str, dict[str, Any]]:
    """`user`'s own copies of the hub tasks (a job runs only its user's tasks, owner-less
    ones and administrators'), created on first use: the database outlives a run."""
    known = {
        task["source"].split(":", 1)[-1]: task
        for task in server.ok("GET", "api/v2/task/")
        if task["owner"] == user
    }
    return {
        body["name"]: known.get(body["source"]) or server.ok("POST", "api/v2/task/", body)
        for body in hub_python_tasks(hub)
    }


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
        project = server.ok("POST", "api/v2/project/", {"name": f"{user}'s project {run}"})
        pid = project["id"]
        zarr_dir = Path(pwd.getpwnam(user).pw_dir) / f"fractal-e2e-{run}"
        dataset = server.ok(
            "POST",
            f"api/v2/project/{pid}/dataset/",
            {"name": f"{user}'s plate", "zarr_dir": str(zarr_dir)},
        )
        workflow = server.ok("POST", f"api/v2/project/{pid}/workflow/", {"name": f"{user}'s wf"})
        for name, args in [
            ("Create demo plate", {"args_non_parallel": {"rows": "A", "columns": 2, "fields": 1}}),
            ("Measure intensity", {}),
        ]:
            server.ok(
                "POST",
                f"api/v2/project/{pid}/workflow/{workflow['id']}/wftask/"
                f"?task_id={tasks[user][name]['id']}",
                args,
            )
        spaces[user] = Workspace(server, project, dataset, workflow, zarr_dir)
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
        page = space.server.ok(
            "POST",
            f"api/v2/project/{space.project['id']}/dataset/{space.dataset['id']}/images/query/",
            {},
            status=200,
        )
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
    server, pid = alice.server, alice.project["id"]
    workflow = server.ok("POST", f"api/v2/project/{pid}/workflow/", {"name": "slow"})
    for name, args in [
        ("Sleep", {"args_non_parallel": {"seconds": 6}}),
        (
            "Create demo plate",
            {"args_non_parallel": {"plate_name": "slow.zarr", "rows": "B", "columns": 1}},
        ),
    ]:
        server.ok(
            "POST",
            f"api/v2/project/{pid}/workflow/{workflow['id']}/wftask/"
            f"?task_id={world['tasks']['alice'][name]['id']}",
            args,
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
    page = server.ok(
        "POST",
        f"api/v2/project/{pid}/dataset/{alice.dataset['id']}/images/query/",
        {"filters": {"attributes": {"plate": "slow.zarr"}}},
        status=200,
    )
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
