"""Cancelling on a busy controller: a scancel or squeue that fails is tried again until SLURM
says the job ended, so that a stopped job's last word still means that nothing of it runs.

On the real cluster, with a transport that runs the SLURM commands as the cluster's user and
fails the first scancel and the first squeue after it the way a busy slurmctld does.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from fractal_jupyter.runner.slurm import SlurmExecutor, SlurmJob, SlurmSettings
from fractal_jupyter.runner.transport import CommandResult, LocalTransport
from tests.support.cluster import ClusterInfo
from tests.support.jobs import processes_mentioning

BUSY = "slurm_load_jobs error: Socket timed out on send/recv operation"


class BusyControllerTransport(LocalTransport):
    """The cluster's user's commands; the first scancel and the first squeue after it fail."""

    def __init__(self, cluster: ClusterInfo) -> None:
        self.cluster = cluster
        self.failures = {"scancel": 1, "squeue": 0}
        self.calls: list[str] = []

    def run(self, argv: list[str], *, timeout: float | None = None) -> CommandResult:
        program = argv[0]
        self.calls.append(program)
        if program == "scancel" and self.failures["scancel"]:
            self.failures = {"scancel": 0, "squeue": 1}
            return CommandResult(1, "", f"scancel: error: {BUSY}")
        if program == "squeue" and self.failures["squeue"]:
            self.failures["squeue"] = 0
            return CommandResult(1, "", BUSY)
        return super().run(self.cluster.as_user(argv), timeout=timeout)


def test_a_failed_scancel_is_tried_again_until_the_job_ended(
    slurm_cluster: ClusterInfo, caplog: pytest.LogCaptureFixture
):
    folder = slurm_cluster.user_dir("test_slurm_cancel")
    marker = str(folder / "sleeping")
    submitted = slurm_cluster.run_as_user(
        [
            "sbatch",
            "--parsable",
            f"--partition={slurm_cluster.partition}",
            "--mem=100M",
            f"--output={folder / 'out.txt'}",
            f"--wrap=exec python3 -c 'import time; time.sleep(120)' {marker}",
        ]
    )
    assert submitted.returncode == 0, submitted.stderr
    slurm_id = submitted.stdout.strip().split(";")[0]
    try:
        deadline = time.monotonic() + 60
        while not processes_mentioning(marker):
            assert time.monotonic() < deadline, "the SLURM job did not start within 60 s"
            time.sleep(0.2)
        transport = BusyControllerTransport(slurm_cluster)
        executor = SlurmExecutor(
            Path(folder),
            transport,
            SlurmSettings(partition=slurm_cluster.partition, unreachable_timeout=5.0),
            log=logging.getLogger("test_slurm_cancel"),
        )
        executor.active[slurm_id] = SlurmJob(slurm_id, "job", str(folder), [])
        with caplog.at_level(logging.INFO, logger="test_slurm_cancel"):
            executor.cancel_all()
        assert executor.active == {}
        assert transport.calls.count("scancel") == 2, transport.calls
        assert f"scancel exit code 1: scancel: error: {BUSY}" in caplog.text
        assert f"Polling SLURM after scancel failed: squeue exit code 1: {BUSY}" in caplog.text
        assert "not seen to end" not in caplog.text
        state = slurm_cluster.run_as_user(
            ["squeue", "--noheader", "--states=all", "--format=%T", f"--jobs={slurm_id}"]
        )
        assert state.stdout.strip() in ("CANCELLED", ""), state
        # The sleeping python (its argv names the marker) is the batch step: it got its SIGTERM
        # before SLURM said CANCELLED, and may take a few ms more to be gone.
        deadline = time.monotonic() + 5
        while processes_mentioning(marker):
            assert time.monotonic() < deadline, "the batch step outlived its job by 5 s"
            time.sleep(0.05)
    finally:  # nothing of this test may stay queued, whatever failed
        slurm_cluster.run_as_user(["scancel", slurm_id])
