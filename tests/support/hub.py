"""The test JupyterHub of scripts/jupyterhub-test.sh, driven over HTTP (tests/e2e/test_jupyterhub.py
and test_hub_restart.py).

`start_hub(env)` starts the hub (the script's settings in `env`) and logs its users in;
`Hub` is its REST API (the test driver's service token), `Server` a user's server behind the
hub's proxy, `Workspace` a user's project, dataset and workflow made through that server, and
`own_tasks` the demo tasks and a sleeping task, registered by the user.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
HUB_SCRIPT = REPO / "scripts" / "jupyterhub-test.sh"
SLEEP_TASK = REPO / "tests" / "e2e" / "hub" / "sleep_task.py"
JOB_TIMEOUT = 240.0


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
# The hub's process (scripts/jupyterhub-test.sh)


def run_script(command: list[str], env: dict[str, str], what: str) -> str:
    """Run one of the scripts/ helpers; its stdout. Exit code 3 (cannot run here) skips."""
    done = subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, timeout=900
    )
    if done.returncode == 3:
        pytest.skip(f"*** JupyterHub end-to-end test: {what} cannot run here: {done.stderr} ***")
    assert done.returncode == 0, f"{what} failed ({done.returncode}):\n{done.stderr}"
    return done.stdout.strip()


def hub_script(command: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """`scripts/jupyterhub-test.sh start|restart` with the settings `env`: the values of the
    env file it writes."""
    env_file = run_script(
        [str(HUB_SCRIPT), command], env or {}, "JupyterHub (scripts/jupyterhub-test.sh)"
    )
    return dict(
        line.split("=", 1) for line in Path(env_file).read_text().splitlines() if "=" in line
    )


def start_hub(env: dict[str, str]) -> Hub:
    """A fresh hub with the settings `env`, its users and admin logged in."""
    # a hub left over by an interrupted run would keep servers with other settings
    stop_hub()
    values = hub_script("start", env)
    hub = Hub(values)
    try:
        for user in values["HUB_USERS"].split():
            hub.login(user, values["HUB_USER_PASSWORD"])
        hub.login(values["HUB_ADMIN"], values["HUB_ADMIN_PASSWORD"])
    except BaseException:
        stop_hub()
        raise
    return hub


def stop_hub() -> None:
    subprocess.run([str(HUB_SCRIPT), "stop"], capture_output=True)


# ---------------------------------------------------------------------------------------------
# A user's things, made through their server


@dataclass
class Workspace:
    """One user's project, dataset and workflow, made through their own server."""

    server: Server
    project: dict[str, Any]
    dataset: dict[str, Any]
    workflow: dict[str, Any]
    zarr_dir: Path

    def add_workflow(
        self, name: str, steps: list[tuple[dict[str, Any], dict[str, Any]]]
    ) -> dict[str, Any]:
        """A new workflow of the project: (task, workflow task body) in order."""
        pid = self.project["id"]
        workflow: dict[str, Any] = self.server.ok(
            "POST", f"api/v2/project/{pid}/workflow/", {"name": name}
        )
        for task, body in steps:
            self.server.ok(
                "POST",
                f"api/v2/project/{pid}/workflow/{workflow['id']}/wftask/?task_id={task['id']}",
                body,
            )
        return workflow

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

    def images(self, attributes: dict[str, Any] | None = None) -> dict[str, Any]:
        """The dataset's images page (with these attribute filters)."""
        body = {"filters": {"attributes": attributes}} if attributes else {}
        page: dict[str, Any] = self.server.ok(
            "POST",
            f"api/v2/project/{self.project['id']}/dataset/{self.dataset['id']}/images/query/",
            body,
            status=200,
        )
        return page


def new_workspace(
    server: Server, run: str, steps: list[tuple[dict[str, Any], dict[str, Any]]] | None = None
) -> Workspace:
    """A project named after the user and `run`, a dataset writing into the user's home, and
    a workflow of `steps` (task, workflow task body; none: an empty workflow)."""
    user = server.user
    project = server.ok("POST", "api/v2/project/", {"name": f"{user}'s project {run}"})
    zarr_dir = Path(pwd.getpwnam(user).pw_dir) / f"fractal-e2e-{run}"
    dataset = server.ok(
        "POST",
        f"api/v2/project/{project['id']}/dataset/",
        {"name": f"{user}'s plate", "zarr_dir": str(zarr_dir)},
    )
    space = Workspace(server, project, dataset, {}, zarr_dir)
    space.workflow = space.add_workflow(f"{user}'s wf", steps or [])
    return space


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
    script = tasks_folder(hub) / "sleep_task.py"
    shutil.copyfile(SLEEP_TASK, script)
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
                    "until_file": {"type": "string"},
                },
                "required": ["zarr_urls", "zarr_dir"],
            },
        }
    )
    return bodies


def tasks_folder(hub: Hub) -> Path:
    """A folder of the hub's that every hub user can read: the sleeping task's script, the
    files it waits for."""
    folder = Path(hub.env["HUB_DIR"]) / "tasks"
    folder.mkdir(mode=0o755, exist_ok=True)
    return folder


def own_tasks(hub: Hub, server: Server, user: str) -> dict[str, dict[str, Any]]:
    """`user`'s own copies of the hub tasks (a job runs only its user's tasks, owner-less
    ones and administrators'), created on first use: the database outlives a run. A copy
    made by an earlier checkout gets this checkout's commands: the earlier one may be gone."""
    known = {
        task["source"].split(":", 1)[-1]: task
        for task in server.ok("GET", "api/v2/task/")
        if task["owner"] == user
    }
    tasks = {}
    for body in hub_python_tasks(hub):
        task = known.get(body["source"])
        if task is None:
            task = server.ok("POST", "api/v2/task/", body)
        else:
            commands = {
                key: body[key]
                for key in ("command_non_parallel", "command_parallel")
                if body.get(key) and body[key] != task[key]
            }
            if commands:
                task = server.ok("PATCH", f"api/v2/task/{task['id']}/", commands)
        tasks[body["name"]] = task
    return tasks
