"""The `slurm` backend on a real cluster, with the Jupyter server (and so every job) as the user.

The server is a real `jupyter fractal` process run as the cluster's unprivileged user
(tests/support/cluster.py); these tests look at what SLURM itself says (squeue, scontrol) and
at the job folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fractal_jupyter.demo_tasks.manifest import demo_task_bodies
from fractal_jupyter.runner.files import recorded_job_ids
from tests.support.cluster import ClusterInfo, UserServer
from tests.support.jobs import MISBEHAVE_TASK, processes_mentioning

PLATE = {"rows": "AB", "columns": 2, "fields": 1}  # four images


@pytest.fixture(scope="module")
def server(slurm_cluster: ClusterInfo) -> Iterator[UserServer]:
    root = slurm_cluster.user_dir("test_slurm")
    running = UserServer(
        slurm_cluster,
        root,
        {
            "runner_backend": "slurm",
            "job_poll_interval": 0.1,
            "submit_rate_limit_seconds": 0.0,
            **slurm_cluster.slurm_settings(),
        },
    )
    running.start()
    yield running
    running.cancel_slurm_jobs()  # nothing of a failed test may stay queued on the cluster
    running.stop()


@pytest.fixture(scope="module")
def tasks(server: UserServer) -> dict[str, Any]:
    return {
        body["name"]: server.api.call("POST", "api/v2/task/", body)
        for body in [*demo_task_bodies(), MISBEHAVE_TASK]
    }


def wait_until(condition: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.1)


class Run:
    """A project, a dataset and a workflow on the server; then the job."""

    def __init__(
        self,
        server: UserServer,
        tasks: dict[str, Any],
        name: str,
        entries: list[tuple[str, dict[str, Any]]],
        body: dict[str, Any] | None = None,
    ) -> None:
        self.api = server.api
        zarr_dir = server.root / "zarr" / name
        project = self.api.call("POST", "api/v2/project/", {"name": name})
        self.path = f"api/v2/project/{project['id']}/"
        self.dataset = self.api.call(
            "POST", self.path + "dataset/", {"name": name, "zarr_dir": str(zarr_dir)}
        )
        workflow = self.api.call("POST", self.path + "workflow/", {"name": name})
        for task_name, wftask in entries:
            self.api.call(
                "POST",
                f"{self.path}workflow/{workflow['id']}/wftask/?task_id={tasks[task_name]['id']}",
                wftask,
            )
        self.job = self.api.call(
            "POST",
            f"{self.path}job/submit/?workflow_id={workflow['id']}&dataset_id={self.dataset['id']}",
            body or {},
        )
        self.folder = Path(self.job["working_dir"])

    def read(self) -> dict[str, Any]:
        return dict(self.api.call("GET", f"{self.path}job/{self.job['id']}/"))

    def wait_end(self, timeout: float = 90.0) -> dict[str, Any]:
        job = wait_until(
            lambda: (lambda job: job if job["status"] != "submitted" else None)(self.read()),
            timeout,
            f"the end of job {self.job['id']}",
        )
        return dict(job)

    def slurm_ids(self) -> list[str]:
        return recorded_job_ids(self.folder)

    def slurm_states(self) -> dict[str, str]:
        ids = self.slurm_ids()
        if not ids:
            return {}
        out = subprocess.run(
            ["squeue", "-h", "-t", "all", "-o", "%i %T %u", "-j", ",".join(ids)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        return {line.split()[0]: line.split()[1] for line in out.splitlines()}

    def running_slurm_jobs(self, count: int) -> list[str]:
        def running() -> list[str]:
            states = self.slurm_states()
            ids = [key for key, state in states.items() if state == "RUNNING"]
            return ids if len(ids) >= count else []

        return list(wait_until(running, 60, f"{count} running SLURM jobs"))


def sleeping_workflow(seconds: float) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("Create demo plate", {"args_non_parallel": PLATE}),
        (
            "Misbehave",
            {
                "args_parallel": {"mode": "sleep", "seconds": seconds},
                # two SLURM jobs of one CPU each, both running at once on the two-CPU node
                "meta_parallel": {"tasks_per_job": 2, "parallel_tasks_per_job": 1},
            },
        ),
    ]


def test_batches_account_worker_init_and_user(server, tasks, slurm_cluster):
    server.api.call("PATCH", "auth/current-user/settings/", {"slurm_accounts": ["lab42"]})
    run = Run(
        server,
        tasks,
        "batches",
        [
            ("Create demo plate", {"args_non_parallel": PLATE}),
            ("Measure intensity", {}),
        ],
        {"slurm_account": "lab42", "worker_init": "export FRACTAL_TEST_MARK=worker-init-ran"},
    )
    job = run.wait_end()
    assert job["status"] == "done", job["log"]
    # One SLURM job for the non-parallel task, two batches of two calls for the four images.
    assert len(run.slurm_ids()) == 3
    assert "4 calls in 2 SLURM jobs (2 per job, 2 at a time)" in job["log"]
    folder = run.folder / "1_measure_intensity"
    script = (folder / "1_batch_000001_slurm_submit.sbatch").read_text()
    assert "#SBATCH --account=lab42" in script
    assert "#SBATCH --ntasks=2" in script and "#SBATCH --mem=1000M" in script
    assert "export FRACTAL_TEST_MARK=worker-init-ran" in script
    assert script.index("#SBATCH --chdir") < script.index("export FRACTAL_TEST_MARK")
    assert sorted(path.name for path in folder.glob("*.log")) == [
        f"1_par_{index:07d}.log" for index in range(4)
    ]
    # Everything ran as the cluster's user: the job process, SLURM jobs, the files they wrote.
    owner = os.stat(folder / "1_par_0000000.metadiff.json").st_uid
    assert owner == slurm_cluster.uid
    shown = subprocess.run(
        ["scontrol", "show", "job", run.slurm_ids()[0]], capture_output=True, text=True
    ).stdout
    assert f"UserId={slurm_cluster.user}(" in shown and "Account=lab42" in shown


def test_memory_beyond_the_node_fails_cleanly(server, tasks, slurm_cluster):
    too_much = f"{slurm_cluster.node_memory_mb * 4}M"
    # One call that needs more memory than the node has: SLURM refuses it, and says why.
    run = Run(
        server,
        tasks,
        "memory",
        [
            (
                "Create demo plate",
                {"args_non_parallel": PLATE, "meta_non_parallel": {"mem": too_much}},
            )
        ],
    )
    job = run.wait_end()
    assert job["status"] == "failed"
    log = job["log"]
    assert "Task name: Create demo plate" in log and "SLURM refused the job" in log, log
    assert "Memory specification can not be satisfied" in log or (
        "Requested node configuration is not available" in log
    ), log
    dataset = server.api.call("GET", f"{run.path}dataset/{run.dataset['id']}/")
    assert [item["status"] for item in dataset["history"]] == ["failed"]
    assert run.slurm_ids() == []
    # Parallel calls beyond the batching limits are refused before anything is submitted.
    run = Run(
        server,
        tasks,
        "memory-parallel",
        [
            ("Create demo plate", {"args_non_parallel": PLATE}),
            ("Measure intensity", {"meta_parallel": {"mem": too_much}}),
        ],
    )
    job = run.wait_end()
    assert job["status"] == "failed"
    assert "MB per task is more than max_mem_per_job=" in job["log"], job["log"]
    assert len(run.slurm_ids()) == 1  # the first task's


def test_scancel_by_hand_fails_the_job_and_cancels_the_siblings(server, tasks, slurm_cluster):
    run = Run(server, tasks, "scancel", sleeping_workflow(120))
    victim, *_ = run.running_slurm_jobs(2)
    cancelled = slurm_cluster.run_as_user(["scancel", victim])
    assert cancelled.returncode == 0, cancelled.stderr
    job = run.wait_end(timeout=30)
    assert job["status"] == "failed"
    assert f"the SLURM job {victim} ended without the results of its calls" in job["log"]
    assert "state CANCELLED" in job["log"], job["log"]
    # SLURM's own words, without its noise, with the job (fractal-server's executor_error_log).
    latest = server.api.call(
        "GET",
        f"{run.path}latest-job/?workflow_id={job['workflow_id']}&dataset_id={run.dataset['id']}",
    )
    assert latest["id"] == job["id"]
    assert latest["executor_error_log"].startswith("Cancelled.\n"), latest["executor_error_log"]
    assert "slurmstepd" not in latest["executor_error_log"]
    # The siblings were cancelled too, and nothing of the job runs any more.
    states = run.slurm_states()
    assert len(states) == 3 and all(
        state in ("COMPLETED", "CANCELLED") for state in states.values()
    ), states
    assert list(states.values()).count("CANCELLED") == 2
    wait_until(lambda: processes_mentioning(str(run.folder)) == [], 10, "no task process")


def test_stop_cancels_every_slurm_job(server, tasks):
    run = Run(server, tasks, "stop", sleeping_workflow(120))
    run.running_slurm_jobs(2)
    server.api.call("GET", f"{run.path}job/{run.job['id']}/stop/")
    job = run.wait_end(timeout=30)
    assert job["status"] == "failed" and "stopped by the user" in job["log"], job["log"]
    states = run.slurm_states()
    assert list(states.values()).count("CANCELLED") == 2, states
    wait_until(lambda: processes_mentioning(str(run.folder)) == [], 10, "no process left")


def test_a_dead_job_process_has_its_slurm_jobs_cancelled_by_the_server(server, tasks):
    run = Run(server, tasks, "killed", sleeping_workflow(120))
    run.running_slurm_jobs(2)
    started = (run.folder / "events.jsonl").read_text().splitlines()[0]
    job_pid = json.loads(started)["pid"]
    os.kill(job_pid, signal.SIGKILL)
    job = run.wait_end(timeout=30)
    assert job["status"] == "failed"
    assert "ended without reporting the end of the job" in job["log"]
    assert "were cancelled" in job["log"], job["log"]
    wait_until(
        lambda: list(run.slurm_states().values()).count("CANCELLED") == 2,
        10,
        "the SLURM jobs cancelled",
    )


def test_server_restart_during_a_run(server, tasks):
    run = Run(
        server,
        tasks,
        "restart",
        [*sleeping_workflow(4), ("Measure intensity", {})],
    )
    run.running_slurm_jobs(2)
    server.stop()
    time.sleep(1)
    server.start()
    job = run.wait_end()
    assert job["status"] == "done", job["log"]
    page = server.api.call("POST", f"{run.path}dataset/{run.dataset['id']}/images/query/", {})
    assert page["total_count"] == 4
    assert all(image["attributes"]["level"] in ("bright", "dim") for image in page["images"])
