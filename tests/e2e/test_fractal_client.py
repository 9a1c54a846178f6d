"""The real `fractal` command-line client against a live `jupyter fractal` server.

fractal-client 2.2.1 (the one made for fractal-server 2.6.x) and 2.24.1 (the newest) are
installed from PyPI into their own venvs under <repo>/.tmp, kept across runs. Each runs as a
subprocess with FRACTAL_SERVER=http://127.0.0.1:<port>/fractal, logging in with the server's
user and its Jupyter token as password (2.2.1), or with the token file that
`jupyter fractal token --write` makes (2.24.1). docs/compatibility.md lists the results.
"""

from __future__ import annotations

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

import jwt
import pytest

from fractal_jupyter import __version__
from fractal_jupyter.demo import DemoServer, free_port, server_command
from tests.support.task_packages import build_task_wheel, mock_manifest

REPO = Path(__file__).resolve().parents[2]
CLIENTS = REPO / ".tmp"
MAKE_IMAGES = Path(__file__).resolve().parent / "tasks" / "make_images.py"
MISBEHAVE = REPO / "tests" / "tasks" / "misbehave.py"
USER = "e2e"
JUPYTER_TOKEN = "e2e-jupyter-token"
JOB_TIMEOUT = 120.0


def fractal_client(version: str) -> Path:
    """The `fractal` executable of fractal-client `version`, installed once in its own venv."""
    venv = CLIENTS / f"fractal-client-{version}"
    executable = venv / "bin" / "fractal"
    marker = venv / ".installed"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", f"fractal-client=={version}"],
            check=True,
            timeout=600,
        )
        marker.write_text(version)
    return executable


@dataclass
class LiveServer:
    url: str
    data_dir: Path
    api: DemoServer
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("fractal-client-server")
    port = free_port(0)
    command = server_command(
        data_dir,
        port,
        JUPYTER_TOKEN,
        f"--FractalJupyter.default_username={USER}",
        f"--FractalJupyter.admin_users={USER}",
        "--FractalJupyter.job_poll_interval=0.1",
        "--FractalJupyter.submit_rate_limit_seconds=0",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    log = (data_dir / "server.log").open("ab")
    process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True, env=env)
    api = DemoServer(f"http://127.0.0.1:{port}/", JUPYTER_TOKEN)
    try:
        api.wait_alive(process)
        yield LiveServer(f"http://127.0.0.1:{port}/fractal", data_dir / "fractal", api, process)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


class Client:
    """One client version run as the user would, in its own working and cache folders."""

    def __init__(self, version: str, server: LiveServer, home: Path) -> None:
        self.executable = fractal_client(version)
        self.home = home
        self.cache = home / "cache"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("FRACTAL_")},
            "HOME": str(home),
            "FRACTAL_SERVER": server.url,
            "FRACTAL_CACHE_PATH": str(self.cache),
            "FRACTAL_USER": USER,
            "FRACTAL_PASSWORD": JUPYTER_TOKEN,
        }

    def run(self, *args: str, rc: int = 0, **env: str) -> str:
        merged = {**self.env, **env}
        for name in [name for name, value in env.items() if value == ""]:
            del merged[name]
        done = subprocess.run(
            [str(self.executable), *args],
            cwd=self.home,
            env=merged,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == rc, (args, done.returncode, done.stdout, done.stderr)
        return done.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args))

    def batch(self, *args: str) -> list[int]:
        return [int(word) for word in self.run("--batch", *args).split()]

    def wait_for_job(self, project_id: int, job_id: int, status: str) -> None:
        deadline = time.monotonic() + JOB_TIMEOUT
        while (now := self.run("--batch", "job", "show", str(project_id), str(job_id)).strip()) != (
            status
        ):
            assert now == "submitted", f"job {job_id} is {now}, not {status}"
            assert time.monotonic() < deadline, f"job {job_id} still {now}"
            time.sleep(0.3)

    def write_json(self, name: str, content: Any) -> str:
        path = self.home / name
        path.write_text(json.dumps(content))
        return str(path)


def make_images_command() -> str:
    return f"{sys.executable} {MAKE_IMAGES}"


def misbehave_command() -> str:
    return f"{sys.executable} {MISBEHAVE}"


def test_fractal_client_2_2_1(server: LiveServer, tmp_path: Path) -> None:
    client = Client("2.2.1", server, tmp_path)

    out = client.run("version")
    assert "version: 2.2.1" in out
    assert f"url: {server.url}" in out and f"version: {__version__}" in out

    me = client.json("user", "whoami")
    assert (me["username"], me["is_superuser"]) == (USER, True)
    # The client keeps the JWT it got and decodes it before every request.
    session = jwt.decode(
        (client.cache / "session").read_text(), options={"verify_signature": False}
    )
    assert session["sub"] == USER

    project = client.json("project", "new", "client project")
    pid = str(project["id"])
    assert project["name"] == "client project"
    assert "client project" in [p["name"] for p in client.json("project", "list")]
    assert client.json("project", "show", pid)["id"] == project["id"]
    assert client.json("project", "edit", pid, "--new-name", "renamed")["name"] == "renamed"

    zarr_dir = str(tmp_path / "zarr")
    dataset = client.json("project", "add-dataset", pid, "plate", zarr_dir)
    did = str(dataset["id"])
    assert (dataset["name"], dataset["zarr_dir"]) == ("plate", zarr_dir)
    assert client.json("dataset", "show", pid, did)["name"] == "plate"
    assert client.json("dataset", "edit", pid, did, "--new-name", "plate 2")["name"] == "plate 2"

    make = client.json(
        "task", "new", "Make images", "e2e:make_images",
        "--command-non-parallel", make_images_command(), "--version", "1.0",
    )  # fmt: skip
    assert (make["type"], make["owner"], make["version"]) == ("non_parallel", USER, "1.0")
    check = client.json(
        "task", "new", "Check", "e2e:check",
        "--command-parallel", misbehave_command(), "--version", "1.0",
    )  # fmt: skip
    assert check["type"] == "parallel"
    sleep = client.json(
        "task", "new", "Sleep", "e2e:sleep",
        "--command-non-parallel", misbehave_command(), "--version", "1.0",
    )  # fmt: skip
    listed = {(t["name"], t["version"]) for t in client.json("task", "list")}
    assert {("Make images", "1.0"), ("Check", "1.0"), ("Sleep", "1.0")} <= listed

    [wid] = client.batch("workflow", "new", "wf", pid)
    wid_ = str(wid)
    [make_wt] = client.batch(
        "workflow", "add-task", pid, wid_, "--task-name", "Make images",
        "--args-non-parallel", client.write_json("a1.json", {"count": 2}),
    )  # fmt: skip
    client.batch(
        "workflow", "add-task", pid, wid_, "--task-id", str(check["id"]),
        "--args-parallel", client.write_json("a2.json", {"mode": "sleep", "seconds": 0}),
    )  # fmt: skip
    edited = client.json(
        "workflow", "edit-task", pid, wid_, str(make_wt),
        "--args-non-parallel", client.write_json("a3.json", {"count": 3, "prefix": "img"}),
    )  # fmt: skip
    assert edited["args_non_parallel"] == {"count": 3, "prefix": "img"}
    shown = client.json("workflow", "show", pid, wid_)
    assert [(t["task"]["name"], t["order"]) for t in shown["task_list"]] == [
        ("Make images", 0),
        ("Check", 1),
    ]

    exported = tmp_path / "wf.json"
    assert "exported at" in client.run(
        "workflow", "export", pid, wid_, "--json-file", str(exported)
    )
    export = json.loads(exported.read_text())
    assert [t["task"]["source"] for t in export["task_list"]] == [
        "e2e:e2e:make_images",
        "e2e:e2e:check",
    ]
    export["name"] = "wf imported"
    imported_ids = client.batch(
        "workflow", "import", "--project-id", pid,
        "--json-file", client.write_json("wf2.json", export),
    )  # fmt: skip
    assert len(imported_ids) == 3  # the workflow and its two tasks
    imported = client.json("workflow", "show", pid, str(imported_ids[0]))
    assert imported["name"] == "wf imported"
    assert imported["task_list"][0]["args_non_parallel"] == {
        "count": 3,
        "prefix": "img",
    }

    [jid] = client.batch("job", "submit", pid, wid_, did)
    client.wait_for_job(project["id"], jid, "done")
    job = client.json("job", "show", pid, str(jid))
    assert "End of job" in job["log"] and job["status"] == "done"
    history = client.json("dataset", "show", pid, did)["history"]
    assert [h["status"] for h in history] == ["done", "done"]
    logs = tmp_path / "logs"
    assert "Logs downloaded" in client.run(
        "job", "download-logs", pid, str(jid), "--output", str(logs)
    )
    assert (logs / "workflow.log").exists()
    assert "made 3 images" in next((logs / "0_make_images").glob("*.log")).read_text()

    # A second, long job, stopped.
    [long_wid] = client.batch("workflow", "new", "long", pid)
    client.batch(
        "workflow", "add-task", pid, str(long_wid), "--task-id", str(sleep["id"]),
        "--args-non-parallel", client.write_json("s.json", {"mode": "sleep", "seconds": 300}),
    )  # fmt: skip
    [long_jid] = client.batch("job", "submit", pid, str(long_wid), did)
    time.sleep(1.0)
    assert client.run("--batch", "job", "show", pid, str(long_jid)).strip() == "submitted"
    assert "Correctly called the job-stopping endpoint" in client.run(
        "job", "stop", pid, str(long_jid)
    )
    client.wait_for_job(project["id"], long_jid, "failed")
    assert "stopped by the user" in client.json("job", "show", pid, str(long_jid))["log"]

    # Admin commands (USER is in FractalJupyter.admin_users).
    users = client.json("user", "list")
    assert USER in [u["username"] for u in users]
    me_id = str(next(u["id"] for u in users if u["username"] == USER))
    assert client.json("user", "show", me_id)["username"] == USER
    # slurm_user may only be the user's own account (jobs run as their server's account).
    edited_user = client.json("user", "edit", me_id, "--new-slurm-user", USER)
    assert edited_user["settings"]["slurm_user"] == USER
    group = client.json("group", "new", "client lab", "--viewer-paths", "/tmp/a")
    assert (group["name"], group["viewer_paths"]) == ("client lab", ["/tmp/a"])
    assert "client lab" in [g["name"] for g in client.json("group", "list")]

    client.run("project", "delete", pid)
    assert project["id"] not in [p["id"] for p in client.json("project", "list")]

    # A wrong password: the login is refused, whatever the client had cached.
    out = client.run(
        "user", "whoami", rc=1,
        FRACTAL_PASSWORD="wrong", FRACTAL_CACHE_PATH=str(tmp_path / "other-cache"),
    )  # fmt: skip
    assert "Status code: 401" in out and "Bad credentials" in out


def wait_for_collection(client: Client, activity_id: int) -> dict[str, Any]:
    """The collection's ended activity, as `task check-collection` shows it."""
    deadline = time.monotonic() + JOB_TIMEOUT
    while True:
        activity: dict[str, Any] = client.json(
            "task", "check-collection", "--include-logs", str(activity_id)
        )
        if activity["status"] in ("OK", "failed") or time.monotonic() > deadline:
            return activity
        time.sleep(0.3)


def test_fractal_client_2_24_1(server: LiveServer, tmp_path: Path) -> None:
    client = Client("2.24.1", server, tmp_path)

    out = client.run("version")
    assert "version: 2.24.1" in out and f"version: {__version__}" in out
    # Logging in with user and password (the Jupyter token).
    assert client.json("user", "whoami")["username"] == USER

    # Then the token-file mode, with the file `jupyter fractal token --write` makes.
    subprocess.run(
        [
            sys.executable, "-m", "jupyter", "fractal", "token", "--write",
            f"--FractalJupyter.data_dir={server.data_dir}",
            f"--FractalJupyter.default_username={USER}",
        ],
        env={**client.env, "FRACTAL_USER": "", "FRACTAL_PASSWORD": ""},
        check=True,
        capture_output=True,
        timeout=120,
    )  # fmt: skip
    client.env.pop("FRACTAL_USER")
    client.env.pop("FRACTAL_PASSWORD")
    assert "Valid token for" in client.run("auth", "check-token")
    assert client.json("user", "whoami")["username"] == USER

    [pid_] = client.batch("project", "new", "p24")
    pid = str(pid_)
    assert "p24" in [p["name"] for p in client.json("project", "list")]
    assert client.json("project", "show", pid)["name"] == "p24"
    assert client.json("project", "edit", pid, "--new-name", "p24b")["name"] == "p24b"
    # 2.24's add-dataset sends project_dir/zarr_subfolder (2.18+) instead of 2.6.4's zarr_dir.
    dataset = client.json("project", "add-dataset", pid, "ds", "--project-dir", str(tmp_path))
    did = str(dataset["id"])
    assert dataset["zarr_dir"] == f"{tmp_path}/fractal/{pid}_p24b/{did}_ds"
    other = client.json(
        "project", "add-dataset", pid, "ds b", "--project-dir", str(tmp_path),
        "--zarr-subfolder", "plates/b",
    )  # fmt: skip
    assert (other["name"], other["zarr_dir"]) == ("ds b", f"{tmp_path}/plates/b")
    assert client.json("dataset", "show", pid, did)["name"] == "ds"
    assert client.json("dataset", "edit", pid, did, "--new-name", "ds2")["name"] == "ds2"

    # 2.24's task new sends no source (2.7+): one is made of the name and version.
    make = client.json(
        "task", "new", "Make 24", "--version", "1.0",
        "--command-non-parallel", make_images_command(),
    )  # fmt: skip
    assert (make["name"], make["type"], make["version"], make["owner"]) == (
        "Make 24", "non_parallel", "1.0", USER,
    )  # fmt: skip
    assert make["source"] == f"{USER}:make_24:1.0"
    sleep = client.json(
        "task", "new", "Sleep 24", "--version", "1.0", "--task-type", "non_parallel",
        "--command-non-parallel", misbehave_command(),
    )  # fmt: skip
    tasks = {"Make 24": make, "Sleep 24": sleep}
    names = {t["name"] for t in client.json("task", "list")}
    assert {"Make 24", "Sleep 24"} <= names

    # A wheel file: uploaded (a multipart form), collected in the background.
    wheel = build_task_wheel(tmp_path / "wheels", manifest=mock_manifest())
    activity = client.json("task", "collect", str(wheel))
    assert {k: activity[k] for k in ("pkg_name", "version", "status", "action")} == {
        "pkg_name": "fractal-tasks-mock",
        "version": "0.1.0",
        "status": "pending",
        "action": "collect",
    }
    ended = wait_for_collection(client, activity["id"])
    assert ended["status"] == "OK" and ended["taskgroupv2_id"], ended["log"]
    assert "fractal-tasks-mock" in ended["log"]
    collected = [t for t in client.json("task", "list") if t["version"] == "0.1.0"]
    assert len(collected) == len(mock_manifest()["task_list"])

    [wid_] = client.batch("workflow", "new", "w24", pid)
    wid = str(wid_)
    # 2.24's add-task sends a list body with the task_id in it; the answer is a list.
    added = client.json(
        "workflow", "add-task", pid, wid, "--task-id", str(make["id"]),
        "--args-non-parallel", client.write_json("a.json", {"count": 2}),
    )  # fmt: skip
    assert [(t["task_id"], t["order"], t["args_non_parallel"]) for t in added] == [
        (make["id"], 0, {"count": 2})
    ]
    [by_name] = client.batch("workflow", "add-task", pid, wid, "--task-name", "Sleep 24")
    shown = client.json("workflow", "show", pid, wid)
    assert [(t["id"], t["task"]["name"]) for t in shown["task_list"]] == [
        (added[0]["id"], "Make 24"),
        (by_name, "Sleep 24"),
    ]
    assert client.json("workflow", "edit", pid, wid, "--new-name", "w24b")["name"] == "w24b"
    assert "w24b" in [w["name"] for w in client.json("workflow", "list", pid)]
    # A workflow comes in through import: a task by package, version and name (2.7+), one
    # by source (2.6.4).
    definition = {
        "name": "imported 24",
        "task_list": [
            {
                "task": {"pkg_name": "make-24", "version": "1.0", "name": "Make 24"},
                "args_non_parallel": {"count": 2},
            },
            {"task": {"source": tasks["Sleep 24"]["source"]}, "args_non_parallel": {"mode": "x"}},
        ],
    }
    ids = client.batch(
        "workflow", "import", "--project-id", pid,
        "--json-file", client.write_json("w.json", definition),
    )  # fmt: skip
    imported = str(ids[0])
    shown = client.json("workflow", "show", pid, imported)
    assert [t["task"]["name"] for t in shown["task_list"]] == ["Make 24", "Sleep 24"]
    client.run("workflow", "rm-task", pid, imported, str(ids[2]))
    assert len(client.json("workflow", "show", pid, imported)["task_list"]) == 1
    exported = tmp_path / "export.json"
    client.run("workflow", "export", pid, imported, "--json-file", str(exported))
    export = json.loads(exported.read_text())
    assert export["name"] == "imported 24"
    assert export["task_list"][0]["task"] == {
        "source": make["source"], "pkg_name": "make-24", "version": "1.0", "name": "Make 24",
    }  # fmt: skip

    [jid] = client.batch("job", "submit", pid, imported, did)
    client.wait_for_job(int(pid), jid, "done")
    assert [j["id"] for j in client.json("job", "list", pid)] == [jid]
    logs = tmp_path / "logs"
    client.run("job", "download-logs", pid, str(jid), "--output", str(logs))
    assert (logs / "workflow.log").exists()

    sleeper = {
        "name": "long 24",
        "task_list": [
            {
                "task": {"source": tasks["Sleep 24"]["source"]},
                "args_non_parallel": {"mode": "sleep", "seconds": 300},
            }
        ],
    }
    [long_wid, _] = client.batch(
        "workflow", "import", "--project-id", pid,
        "--json-file", client.write_json("long.json", sleeper),
    )  # fmt: skip
    [long_jid] = client.batch("job", "submit", pid, str(long_wid), did)
    time.sleep(1.0)
    client.run("job", "stop", pid, str(long_jid))
    client.wait_for_job(int(pid), long_jid, "failed")

    users = client.json("user", "list")
    me_id = str(next(u["id"] for u in users if u["username"] == USER))
    assert client.json("user", "show", me_id)["username"] == USER
    assert client.json("user", "edit", me_id, "--make-verified")["is_verified"] is True
    group = client.json("group", "new", "lab 24")
    assert group["name"] == "lab 24"
    assert "lab 24" in [g["name"] for g in client.json("group", "list")]
    assert client.json("group", "get", str(group["id"]))["name"] == "lab 24"

    client.run("project", "delete", pid)
    assert pid_ not in [p["id"] for p in client.json("project", "list")]
