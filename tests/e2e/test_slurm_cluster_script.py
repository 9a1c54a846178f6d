"""The test cluster of scripts/slurm-cluster.sh starts fresh after its daemons died mid-job.

CI met this: the machine's cluster had been stopped while slurmctld still counted a job as
running. Started again from that saved state, slurmctld gave the dead job both CPUs for good,
and the warm-up job of `start` waited in the queue until it gave up.
"""

import os
import signal
import subprocess
import time

from tests.support.cluster import STATE, ClusterInfo, start_cluster


def job_state(cluster: ClusterInfo, slurm_id: str) -> str:
    listed = cluster.run_as_user(["squeue", "-h", "-t", "all", "-j", slurm_id, "-o", "%T"])
    return listed.stdout.strip()


def submit(cluster: ClusterInfo, name: str, command: str) -> str:
    submitted = cluster.run_as_user(
        ["sbatch", "--parsable", "-J", name, "-o", "/dev/null", "--wrap", command]
    )
    assert submitted.returncode == 0, submitted.stderr
    return submitted.stdout.strip()


def wait_for_state(cluster: ClusterInfo, slurm_id: str, state: str) -> None:
    deadline = time.monotonic() + 30
    while (now := job_state(cluster, slurm_id)) != state:
        assert time.monotonic() < deadline, f"job {slurm_id} is {now!r}, not {state}"
        time.sleep(0.1)


def kill_daemon(name: str) -> None:
    pid = int((STATE / "pids" / f"{name}.pid").read_text().strip())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}"):
        assert time.monotonic() < deadline, f"{name} ({pid}) outlived SIGKILL"
        time.sleep(0.05)


def test_a_cluster_killed_mid_job_starts_fresh_and_runs_jobs(slurm_cluster: ClusterInfo) -> None:
    slurm_id = submit(slurm_cluster, "left-running", "sleep 600")
    wait_for_state(slurm_cluster, slurm_id, "RUNNING")

    # The machine goes down: the daemons and the job's processes die without a word.
    kill_daemon("slurmctld")
    kill_daemon("slurmd")
    subprocess.run(["pkill", "-KILL", "-f", rf"^slurmstepd: \[{slurm_id}\."], check=False)
    subprocess.run(["pkill", "-KILL", "-u", slurm_cluster.user, "-x", "sleep"], check=False)

    started = start_cluster()

    assert started.returncode == 0, started.stderr
    assert "slurmctld started" in started.stderr
    assert "ready:" in started.stderr
    # The dead job is forgotten (its id may be given again), not left holding the node's CPUs.
    names = slurm_cluster.run_as_user(["squeue", "-h", "-t", "all", "-o", "%j"])
    assert "left-running" not in names.stdout.split()
    wait_for_state(slurm_cluster, submit(slurm_cluster, "after", "true"), "COMPLETED")
