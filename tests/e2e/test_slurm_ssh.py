"""The `slurm_ssh` backend on the real cluster: sbatch, squeue, scancel over SSH, files by SFTP.

Every job test of tests/e2e/test_slurm.py runs here unchanged, with the `server` fixture
below in place of its own: the server's jobs reach the cluster through the sshd of
scripts/slurm-cluster.sh (127.0.0.1:2222, the user's key), and the job folder on the cluster
(`slurm_ssh_remote_dir`) is another folder than the server's, so every input goes up by SFTP
and every result comes back. The server runs as the cluster's user, as in test_slurm.py, so
that those tests can check that everything ran as that user.

Then the faults of the SSH connection itself, during a run: the sshd process serving the job's
connection is killed (the job connects again and ends well), and the login node becomes
unreachable (the job fails within `slurm_unreachable_timeout`, saying why; it never hangs).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fractal_jupyter.client import FractalClient
from fractal_jupyter.demo_tasks.manifest import demo_task_bodies
from tests.e2e.test_slurm import *  # noqa: F403 (the job tests, collected again here)
from tests.e2e.test_slurm import Run, sleeping_workflow, wait_until
from tests.support.cluster import ClusterInfo, UserServer
from tests.support.jobs import MISBEHAVE_TASK
from tests.support.sshd import client_ports, kill_connection
from tests.support.tcp_proxy import TcpProxy
from tests.test_functions import label_images, run_on_plate


def user_ssh_files(cluster: ClusterInfo, root: Path, port: int | None = None) -> dict[str, str]:
    """The key and known_hosts as the server's user holds them (the cluster's are root's).

    With `port`, the known host is the login node seen through a relay on that port."""
    folder = root / "ssh"
    folder.mkdir(mode=0o700)
    key = folder / "id_ed25519"
    shutil.copyfile(cluster.ssh_key, key)
    known = Path(cluster.known_hosts).read_text()
    if port is not None:
        known = known.replace(f"[127.0.0.1]:{cluster.ssh_port}", f"[127.0.0.1]:{port}")
    (folder / "known_hosts").write_text(known)
    for path in (folder, key, folder / "known_hosts"):
        os.chown(path, cluster.uid, cluster.gid)
    key.chmod(0o600)
    return {"slurm_ssh_key_path": str(key), "slurm_ssh_known_hosts": str(folder / "known_hosts")}


def ssh_server(
    cluster: ClusterInfo, name: str, port: int | None = None, **fractal: Any
) -> UserServer:
    root = cluster.user_dir(name)
    remote = cluster.user_dir(f"{name}-cluster-side")
    return UserServer(
        cluster,
        root,
        {
            "runner_backend": "slurm_ssh",
            "job_poll_interval": 0.1,
            "submit_rate_limit_seconds": 0.0,
            **cluster.slurm_settings(),
            **cluster.ssh_settings(remote),
            **user_ssh_files(cluster, root, port),
            **({"slurm_ssh_port": port} if port is not None else {}),
            **fractal,
        },
    )


@pytest.fixture(scope="module")
def server(slurm_cluster: ClusterInfo) -> Iterator[UserServer]:
    running = ssh_server(slurm_cluster, "test_slurm_ssh")
    running.start()
    yield running
    running.stop()


def job_process(run: Run) -> int:
    """The pid of the job process (its `job_started` event)."""

    def started() -> int | None:
        events = run.folder / "events.jsonl"
        if not events.exists():
            return None
        for line in events.read_text().splitlines():
            event = json.loads(line)
            if event["type"] == "job_started":
                return int(event["pid"])
        return None

    return int(wait_until(started, 30, "the job process"))


def test_the_cluster_side_folder_is_not_the_servers(server, tasks):
    run = Run(server, tasks, "ssh-files", sleeping_workflow(0))
    job = run.wait_end()
    assert job["status"] == "done", job["log"]
    remote = Path(server.fractal["slurm_ssh_remote_dir"]) / run.folder.name
    assert remote != run.folder
    # The cluster side got the batches and wrote the results; the server side got them back.
    task_folder = "1_misbehave"
    assert sorted(p.name for p in (remote / task_folder).glob("*.batch.pickle"))
    assert sorted(p.name for p in (run.folder / task_folder).glob("*.log")) == [
        f"1_par_{index:07d}.log" for index in range(4)
    ]
    log = (run.folder / task_folder / "1_par_0000002.log").read_text()
    assert "misbehaving (sleep) on /" in log


def test_a_dropped_ssh_connection_is_opened_again_and_the_job_ends_well(
    server, tasks, slurm_cluster
):
    run = Run(server, tasks, "ssh-drop", [*sleeping_workflow(5), ("Measure intensity", {})])
    run.running_slurm_jobs(2)
    pid = job_process(run)
    before = wait_until(lambda: client_ports(pid, slurm_cluster.ssh_port), 10, "its connection")
    killed = [kill_connection(port, slurm_cluster.ssh_port) for port in before]
    assert all(killed), f"no sshd served the job's connection(s) {before}"
    dropped_at = time.monotonic()
    # The next squeue poll opens a new connection (another local port) ...
    again = wait_until(
        lambda: set(client_ports(pid, slurm_cluster.ssh_port)) - set(before),
        20,
        "a new connection of the job process",
    )
    assert again and time.monotonic() - dropped_at < 20
    # ... and the job goes on to its end: results fetched, next task run.
    job = run.wait_end()
    assert job["status"] == "done", job["log"]
    page = server.api.call("POST", f"{run.path}dataset/{run.dataset['id']}/images/query/", {})
    assert page["total_count"] == 4
    assert all(image["attributes"]["level"] in ("bright", "dim") for image in page["images"])


@pytest.fixture
def unreachable(slurm_cluster: ClusterInfo) -> Iterator[tuple[UserServer, TcpProxy]]:
    """A server whose login node sits behind a relay the test can cut."""
    proxy = TcpProxy(slurm_cluster.ssh_host, slurm_cluster.ssh_port)
    running = ssh_server(
        slurm_cluster,
        "test_slurm_ssh_unreachable",
        port=proxy.port,
        slurm_unreachable_timeout=8.0,
    )
    running.start()
    try:
        yield running, proxy
    finally:
        running.stop()
        proxy.close()


def test_an_unreachable_login_node_fails_the_job_with_the_reason(unreachable, slurm_cluster):
    server, proxy = unreachable
    task_ids = {
        body["name"]: server.api.call("POST", "api/v2/task/", body)
        for body in [*demo_task_bodies(), MISBEHAVE_TASK]
    }
    run = Run(server, task_ids, "ssh-unreachable", sleeping_workflow(8))
    run.running_slurm_jobs(2)
    assert proxy.accepted >= 1
    proxy.close()  # connections cut, and no new one gets through
    cut_at = time.monotonic()
    job = run.wait_end(timeout=90)
    elapsed = time.monotonic() - cut_at
    assert job["status"] == "failed"
    log = job["log"]
    assert "lost contact with the cluster for 8 s" in log, log
    assert f"ssh {slurm_cluster.user}@127.0.0.1:{proxy.port}" in log, log
    assert "Connection refused" in log or "Unable to connect" in log, log
    # Bounded: the unreachable timeout plus one round of the transport's own retries.
    assert elapsed < 60, elapsed


def test_a_notebook_function_goes_to_the_cluster_with_its_job(server, tasks):
    """A function task's pickle is on the server's disk: it goes up with the job folder, and
    the cluster runs the copy."""
    functions_dir = server.root / "functions"
    with FractalClient(f"http://127.0.0.1:{server.port}/", server.token) as client:
        task = client.register_function(label_images, name="label", functions_dir=functions_dir)
        steps = [(task.id, {"args_parallel": {"label": "ssh"}})]
        plate = tasks["Create demo plate"]["id"]
        job, images = run_on_plate(client, str(server.root / "zarr-functions"), steps, plate)
    assert job.status == "done", job.log
    assert [image.attributes.get("label") for image in images] == ["ssh", "ssh"]
    (local,) = functions_dir.rglob("*.pkl")
    remote_job = Path(server.fractal["slurm_ssh_remote_dir"]) / Path(job.working_dir).name
    (copy,) = (remote_job / "functions").glob("*.pkl")
    assert copy.read_bytes() == local.read_bytes()
    (batch,) = (remote_job / "1_label").glob("*.batch.pickle")
    commands = {call.command for call in pickle.loads(batch.read_bytes())["calls"]}
    assert commands == {f"{sys.executable} -m fractal_jupyter.runner.function {copy}"}
