"""A server inside a SLURM allocation (what batchspawner does) whose allocation ends mid-job.

By default there (`job_process_placement = 'auto'`) the job process is a SLURM job of its
own: the job runs to its end, and the user's next server, started on another host (here:
another host name, in a UTS namespace of its own) with the same home folder and database,
reports it done. With the job process placed on the server (`'server'`), it dies with the
allocation while its task's SLURM job runs on: the next server follows the job by its
heartbeat, fails it with the reason once the heartbeat is silent, and cancels the SLURM job
that was left.
"""

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from fractal_jupyter.runner.files import HEARTBEAT_FILE, recorded_job_ids
from tests.support.cluster import ClusterInfo, user_server_for
from tests.support.jobs import processes_mentioning
from tests.test_restart import setup_job, wait_for_end, wait_until

SERVER_JOB = "fractal-server"
HEARTBEAT_TIMEOUT = 15.0


def slurm_state(cluster: ClusterInfo, slurm_id: str) -> str:
    listed = cluster.run_as_user(["squeue", "-h", "-t", "all", "-j", slurm_id, "-o", "%T"])
    return listed.stdout.strip()


def servers(cluster: ClusterInfo, root: Path, settings: dict[str, Any]) -> tuple[Any, Any]:
    """A server to start inside an allocation, and the user's next server, on another host."""
    in_allocation = user_server_for("slurm", cluster, root, settings)
    in_allocation.inside = [
        "srun",
        f"--job-name={SERVER_JOB}",
        "--ntasks=1",
        "--cpus-per-task=1",
        "--mem=1G",
        "--chdir=/tmp",
    ]
    elsewhere = user_server_for("slurm", cluster, root, settings)
    # Its own host name: to this server, the job's runner (`<node>:<uid>`) is another host's.
    elsewhere.outside = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', "login-b"]
    return in_allocation, elsewhere


def stop_servers(cluster: ClusterInfo, *servers: Any) -> None:
    """A test's end: its servers' SLURM jobs cancelled, the servers and their allocation gone."""
    for server in servers:
        server.cancel_slurm_jobs()
        if server.process is not None:
            server.stop()
    subprocess.run(
        cluster.as_user(["scancel", f"--name={SERVER_JOB}"]), capture_output=True, check=False
    )


def end_allocation(cluster: ClusterInfo, server: Any) -> None:
    cancelled = cluster.run_as_user(["scancel", f"--name={SERVER_JOB}"])
    assert cancelled.returncode == 0, cancelled.stderr
    assert server.process is not None
    server.process.wait(timeout=60)
    server.process = None


def test_a_job_process_on_slurm_outlives_its_servers_allocation(
    slurm_cluster: ClusterInfo,
) -> None:
    cluster = slurm_cluster
    root = cluster.user_dir("test_slurm_allocation-placed")
    in_allocation, elsewhere = servers(cluster, root, {"job_heartbeat_timeout": HEARTBEAT_TIMEOUT})
    try:
        in_allocation.start()
        made = setup_job(in_allocation.api, root, 3, columns=1)
        job = made["job"]
        folder = Path(job["working_dir"])
        name = f"fractal-job-process-{job['id']}"
        listed = ["squeue", "-h", "-t", "all", f"--name={name}", "-o", "%i %T"]
        # The job process is a SLURM job of its own (it has the node's second CPU, so the
        # task's SLURM jobs wait until the server's allocation ends).
        wait_until(lambda: cluster.run_as_user(listed).stdout.split()[1:] == ["RUNNING"], 60)
        process_job = cluster.run_as_user(listed).stdout.split()[0]
        wait_until(lambda: (folder / HEARTBEAT_FILE).exists(), timeout=30)

        end_allocation(cluster, in_allocation)
        assert slurm_state(cluster, process_job) == "RUNNING"

        elsewhere.start()
        ended = wait_for_end(elsewhere.api, made["path"], job["id"], timeout=180)
        assert ended["status"] == "done", ended["log"]
        assert 'END 2-th task (name="Measure intensity")' in ended["log"]
        wait_until(lambda: slurm_state(cluster, process_job) in ("COMPLETED", ""), timeout=30)
        images = elsewhere.api.call(
            "POST", f"{made['path']}dataset/{made['dataset']['id']}/images/query/", {}
        )
        assert images["total_count"] == 1, images
    finally:
        stop_servers(cluster, elsewhere, in_allocation)


@pytest.mark.parametrize("ending", ["node lost", "allocation ended"])
def test_a_job_whose_servers_allocation_ended_is_failed_by_the_next_server_elsewhere(
    slurm_cluster: ClusterInfo, ending: str
) -> None:
    cluster = slurm_cluster
    root = cluster.user_dir("test_slurm_allocation")
    settings = {"job_heartbeat_timeout": HEARTBEAT_TIMEOUT, "job_process_placement": "server"}
    in_allocation, elsewhere = servers(cluster, root, settings)
    try:
        in_allocation.start()
        made = setup_job(in_allocation.api, root, 600, columns=1)
        job = made["job"]
        folder = Path(job["working_dir"])
        wait_until(lambda: processes_mentioning(f"{folder}/1_misbehave") != [], timeout=120)
        node, pid = (folder / HEARTBEAT_FILE).read_text().split(" pid ")
        # The demo plate's SLURM job, then the sleeping task's.
        wait_until(lambda: len(recorded_job_ids(folder)) == 2, timeout=30)
        left_running = recorded_job_ids(folder)[-1]
        # It may wait a moment for the node's second CPU (the server's allocation holds one).
        wait_until(lambda: slurm_state(cluster, left_running) == "RUNNING", timeout=120)

        # The node is lost: the job process dies at once (and the allocation with the node),
        # the task's own SLURM job runs on. Or the allocation ends (walltime, the culler's
        # stop, scancel): SLURM sends SIGTERM first, and the job process has KillWait (5 s
        # here) to cancel its SLURM jobs and report.
        if ending == "node lost":
            os.kill(int(pid), signal.SIGKILL)
        end_allocation(cluster, in_allocation)
        wait_until(lambda: not os.path.exists(f"/proc/{int(pid)}"), timeout=30)
        if ending == "node lost":
            assert slurm_state(cluster, left_running) == "RUNNING"

        started = time.monotonic()
        elsewhere.start()
        ended = wait_for_end(elsewhere.api, made["path"], job["id"])

        assert time.monotonic() - started < HEARTBEAT_TIMEOUT + 30
        assert ended["status"] == "failed"
        log = ended["log"]
        silent = f"The job process (pid {int(pid)} on {node}) has given no sign of life"
        if ending == "node lost" or silent in log:
            assert silent in log and "the SLURM allocation it ran in ended" in log
            assert "Its SLURM jobs (" in log and f"{left_running}) were cancelled." in log
        else:  # it reported in time (the usual case)
            assert "The job process got SIGTERM without a stop of its user" in log, log
        wait_until(lambda: slurm_state(cluster, left_running) in ("CANCELLED", ""), timeout=30)
        # What the job did before is kept: its first task's step in the dataset's history.
        dataset = elsewhere.api.call("GET", f"{made['path']}dataset/{made['dataset']['id']}/")
        assert dataset["history"][0]["status"] == "done"
    finally:
        stop_servers(cluster, elsewhere, in_allocation)
