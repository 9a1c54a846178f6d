"""`python -m fractal_jupyter.demo`: a Jupyter server with fractal_jupyter, running a job.

Starts `jupyter fractal` on SQLite in ./demo-data, registers the demo task package, builds a
workflow (a converter that creates an OME-Zarr plate of synthetic nuclei with labels, a parallel
measurement that writes a feature table per image, a compound projection),
runs it as a job on a new dataset of the demo project, prints the job's status and where its
log is, and keeps the server running until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Protocol

from .demo_tasks.manifest import demo_task_bodies

JOB_TIMEOUT_SECONDS = 300
# Signals that end the demo: its server, in a session of its own, must end with it.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Stopped(Exception):
    """The demo got one of `STOP_SIGNALS`."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum: int, frame: Any) -> None:
    raise Stopped(signum)


class ApiCaller(Protocol):
    """`call(method, path below fractal/, body)` -> JSON: `DemoServer` or `FractalClient`."""

    def call(self, method: str, path: str, body: Any = None) -> Any: ...


class DemoServer:
    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token

    def call(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            f"{self.url}fractal/{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
        return json.loads(text) if text else None

    def wait_alive(self, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"The server exited with code {process.returncode}; see above.")
            try:
                self.call("GET", "api/alive/")
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.3)
        raise SystemExit(f"The server did not answer within {timeout:.0f} s.")


def ensure_demo_tasks(server: ApiCaller) -> dict[str, dict[str, Any]]:
    """The demo task package's tasks, created on first use (found again by source)."""
    known = {task["source"].split(":", 1)[1]: task for task in server.call("GET", "api/v2/task/")}
    tasks = {}
    for body in demo_task_bodies():
        task = known.get(body["source"])
        if task is None:
            task = server.call("POST", "api/v2/task/", body)
        tasks[body["name"]] = task
    return tasks


def ensure_workflow(
    server: ApiCaller, project_id: int, tasks: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Create demo plate -> Measure intensity -> Project image, created once."""
    path = f"api/v2/project/{project_id}/workflow/"
    workflow = next((w for w in server.call("GET", path) if w["name"] == "demo workflow"), None)
    if workflow is not None:
        return dict(workflow)
    workflow = server.call("POST", path, {"name": "demo workflow"})
    steps = [
        (
            "Create demo plate",
            {"args_non_parallel": {"rows": "ABCD", "columns": 6, "fields": 2, "pixels": True}},
        ),
        ("Measure intensity", {"args_parallel": {"threshold": 150}}),
        ("Project image", {}),
    ]
    for name, body in steps:
        server.call("POST", f"{path}{workflow['id']}/wftask/?task_id={tasks[name]['id']}", body)
    return dict(server.call("GET", f"{path}{workflow['id']}/"))


def run_demo(server: ApiCaller, zarr_root: Path) -> dict[str, Any]:
    """A new dataset in the demo project, and the demo workflow run on it as a job."""
    projects = server.call("GET", "api/v2/project/")
    project = next((p for p in projects if p["name"] == "demo"), None)
    if project is None:
        project = server.call("POST", "api/v2/project/", {"name": "demo"})
    project_path = f"api/v2/project/{project['id']}/"
    run = len(server.call("GET", project_path + "dataset/")) + 1
    dataset = server.call(
        "POST",
        project_path + "dataset/",
        {"name": f"demo plate {run}", "zarr_dir": str(zarr_root / f"run{run}")},
    )
    workflow = ensure_workflow(server, project["id"], ensure_demo_tasks(server))
    job = server.call(
        "POST",
        f"{project_path}job/submit/?workflow_id={workflow['id']}&dataset_id={dataset['id']}",
        {},
    )
    deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
    while job["status"] == "submitted" and time.monotonic() < deadline:
        time.sleep(0.5)
        job = server.call("GET", f"{project_path}job/{job['id']}/")
    return {"project": project, "dataset": dataset, "workflow": workflow, "job": job}


def free_port(preferred: int) -> int:
    """`preferred` when it is free, else any free port (0 asks for any)."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_command(data_dir: Path, port: int, token: str, *options: str) -> list[str]:
    """`jupyter fractal` serving `data_dir` on 127.0.0.1:`port`, its state in `data_dir`."""
    command = [
        sys.executable,
        "-m",
        "jupyter",
        "fractal",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={data_dir}",
        f"--FractalJupyter.data_dir={data_dir / 'fractal'}",
        *options,
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")
    return command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("demo-data"))
    parser.add_argument("--port", type=int, default=8899)
    parser.add_argument("--no-wait", action="store_true", help="stop after seeding")
    args = parser.parse_args(argv)

    data_dir = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port(args.port)
    token = secrets.token_hex(16)
    command = server_command(data_dir, port, token)
    # Without handlers, SIGTERM or SIGHUP (a closed terminal) would end this process at once,
    # leaving the server (in its own session, so that Ctrl-C reaches us first) running.
    previous = {signum: signal.signal(signum, _raise_stopped) for signum in STOP_SIGNALS}
    process = subprocess.Popen(command, start_new_session=True)
    server = DemoServer(f"http://127.0.0.1:{port}/", token)
    try:
        server.wait_alive(process)
        demo = run_demo(server, data_dir / "zarr")
        project_id, dataset_id, job = demo["project"]["id"], demo["dataset"]["id"], demo["job"]
        query = f"api/v2/project/{project_id}/dataset/{dataset_id}/images/query/"
        page = server.call("POST", query + "?page_size=1")
        bright = server.call(
            "POST", query + "?page_size=1", {"filters": {"attributes": {"level": "bright"}}}
        )
        status = server.call(
            "GET",
            f"api/v2/project/{project_id}/status/?dataset_id={dataset_id}"
            f"&workflow_id={demo['workflow']['id']}",
        )["status"]
        print(
            f"\nfractal_jupyter is running: {server.url}fractal/api/alive/\n"
            f"  JupyterLab (the Fractal sidebar): {server.url}lab?token={token}\n"
            f"  token:    {token}\n"
            f"  database: {data_dir / 'fractal' / 'fractal.db'}\n"
            f"  demo project {project_id}, dataset {dataset_id}, job {job['id']}: "
            f"{job['status']}\n"
            f"  workflow tasks: {', '.join(status.values())}\n"
            f"  images: {page['total_count']}, of which {bright['total_count']} bright\n"
            f"  job log: {job['working_dir']}/workflow.log\n\n"
            "Try:\n"
            f"  curl -H 'Authorization: token {token}' {server.url}fractal/api/v2/project/\n"
            f"  curl -X POST -H 'Authorization: token {token}' \\\n"
            f'       -d \'{{"filters": {{"attributes": {{"well": "C05"}}}}}}\' \\\n'
            f"       '{server.url}fractal/{query}'\n"
            f"  OpenAPI: {server.url}fractal/openapi.json\n",
            flush=True,
        )
        if args.no_wait:
            return 0
        print("Ctrl-C stops the server.", flush=True)
        process.wait()
        return process.returncode
    except KeyboardInterrupt:
        return 0
    except Stopped as stopped:
        return 128 + stopped.signum
    finally:
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    sys.exit(main())
