"""`python -m fractal_jupyter.demo`: a Jupyter server with fractal_jupyter and demo data.

Starts `jupyter fractal` on SQLite in ./demo-data, fills a demo project with a dataset of
generated images through the REST API, prints how to reach it, and keeps the server running
until Ctrl-C.
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
from typing import Any

PLATE_ROWS = "ABCDEFGH"
PLATE_COLUMNS = range(1, 13)
FIELDS_PER_WELL = 2


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


def plate_images(zarr_dir: Path) -> list[dict[str, Any]]:
    """One image per field of a 96-well plate, 3D, with well, row and column attributes."""
    return [
        {
            "zarr_url": f"{zarr_dir}/demo_plate.zarr/{row}/{column:02d}/{field}",
            "attributes": {
                "plate": "demo_plate.zarr",
                "well": f"{row}{column:02d}",
                "row": row,
                "column": column,
            },
            "types": {"is_3D": True},
        }
        for row in PLATE_ROWS
        for column in PLATE_COLUMNS
        for field in range(FIELDS_PER_WELL)
    ]


def seed(server: DemoServer, zarr_dir: Path) -> dict[str, Any]:
    """The demo project and dataset, created once; later runs reuse them."""
    projects = server.call("GET", "api/v2/project/")
    project = next((p for p in projects if p["name"] == "demo"), None)
    if project is None:
        project = server.call("POST", "api/v2/project/", {"name": "demo"})
        server.call(
            "POST",
            f"api/v2/project/{project['id']}/dataset/import/",
            {"name": "demo plate", "zarr_dir": str(zarr_dir), "images": plate_images(zarr_dir)},
        )
    datasets = server.call("GET", f"api/v2/project/{project['id']}/dataset/")
    return {"project": project, "dataset": datasets[0]}


def free_port(preferred: int) -> int:
    """`preferred` when it is free, else any free port (0 asks for any)."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")
    process = subprocess.Popen(command, start_new_session=True)
    server = DemoServer(f"http://127.0.0.1:{port}/", token)
    try:
        server.wait_alive(process)
        demo = seed(server, data_dir / "zarr")
        project_id, dataset_id = demo["project"]["id"], demo["dataset"]["id"]
        query = f"api/v2/project/{project_id}/dataset/{dataset_id}/images/query/"
        page = server.call(
            "POST", query + "?page_size=1", {"filters": {"attributes": {"row": "B"}}}
        )
        print(
            f"\nfractal_jupyter is running: {server.url}fractal/api/alive/\n"
            f"  token:    {token}\n"
            f"  database: {data_dir / 'fractal' / 'fractal.db'}\n"
            f"  demo project {project_id}, dataset {dataset_id}: "
            f"{page['total_count']} of 192 images are in row B\n\n"
            "Try:\n"
            f"  curl -H 'Authorization: token {token}' {server.url}fractal/api/v2/project/\n"
            f"  curl -X POST -H 'Authorization: token {token}' \\\n"
            f'       -d \'{{"filters": {{"attributes": {{"well": "C07"}}}}}}\' \\\n'
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
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
