"""A job process as a SLURM job of its own, out of the server's reach.

A server that runs inside a SLURM allocation (batchspawner) takes its children with it when
the allocation ends: walltime, the idle culler's stop, `scancel`. On the `slurm` backend the
job process can run elsewhere instead: `sbatch` starts it as a one-CPU job on the cluster,
whose own end is the only end it has. Its runner is then `slurm-job-<id>:<uid>` (not a host:
any server of the user follows it), its heartbeat says it runs, and SLURM says whether it
still waits or has ended without reporting.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

from .files import PROCESS_LOG, STOP_REQUEST_FILE
from .heartbeat import HEARTBEAT_SECONDS, silent_for
from .settings import SlurmSettings
from .slurm_queue import COMMAND_TIMEOUT, ENDED_STATES
from .transport import LocalTransport, Transport, TransportError

RUNNER_PREFIX = "slurm-job-"
JOB_NAME = "fractal-job-process"
# What the job process asks for: it runs the runner's threads and holds the image list.
CPUS = 1
MEMORY = "2G"
# How long an answer of squeue about a job process is believed (one squeue per job and pass
# of the watcher would be a load on the controller that serves everyone).
STATE_SECONDS = 10.0


def runner_of(slurm_id: int, uid: int) -> str:
    return f"{RUNNER_PREFIX}{slurm_id}:{uid}"


def slurm_id_of(runner: str) -> int | None:
    """The SLURM job id of a job process placed on SLURM; None for one on a host."""
    host = runner.rsplit(":", 1)[0]
    if not host.startswith(RUNNER_PREFIX):
        return None
    number = host.removeprefix(RUNNER_PREFIX)
    return int(number) if number.isdigit() else None


@dataclass(frozen=True)
class SlurmPlacement:
    """Places job processes on SLURM (this host's sbatch, `slurm` backend)."""

    settings: SlurmSettings
    python: str
    transport: Transport = field(default_factory=LocalTransport)

    def submit(self, job_dir: Path, job_id: int, account: str | None) -> int:
        """sbatch the job process of `job_dir`: its SLURM job id."""
        command = shlex.join([self.python, "-m", "fractal_jupyter.runner.job", str(job_dir)])
        argv = [
            "sbatch",
            "--parsable",
            f"--job-name={JOB_NAME}-{job_id}",
            "--ntasks=1",
            f"--cpus-per-task={CPUS}",
            f"--mem={MEMORY}",
            f"--chdir={job_dir}",
            f"--output={job_dir / PROCESS_LOG}",
            "--open-mode=append",
        ]
        if self.settings.partition:
            argv.append(f"--partition={self.settings.partition}")
        if account:
            argv.append(f"--account={account}")
        argv.append(f"--wrap=exec {command}")
        result = self.transport.run(argv, timeout=COMMAND_TIMEOUT)
        answer = result.stdout.strip().split(";")[0]
        if result.returncode != 0 or not answer.isdigit():
            raise OSError(f"sbatch of the job process failed ({result.describe()})")
        return int(answer)

    def state(self, slurm_id: int) -> str:
        """squeue's state of the job, "" when it no longer knows it."""
        result = self.transport.run(
            ["squeue", "--noheader", "--states=all", "--format=%T", f"--jobs={slurm_id}"],
            timeout=COMMAND_TIMEOUT,
        )
        if result.returncode != 0:
            if "Invalid job id" in result.stderr:
                return ""
            raise TransportError(f"squeue {result.describe()}")
        return result.stdout.strip()

    def cancel_if_pending(self, slurm_id: int) -> None:
        """A stop before the job process started: it will not start."""
        self.transport.run(["scancel", "--state=PENDING", str(slurm_id)], timeout=COMMAND_TIMEOUT)

    def cancel(self, slurm_id: int) -> None:
        self.transport.run(["scancel", str(slurm_id)], timeout=COMMAND_TIMEOUT)


class PlacedJobWatch:
    """Whether job processes placed on SLURM still run, from their heartbeats and, while
    those are not fresh (waiting in the queue, or gone), from squeue at most every
    STATE_SECONDS per job. Where squeue cannot answer (SLURM's controller is down, or this
    host has no SLURM commands), a heartbeat silent for `heartbeat_timeout` is a death."""

    def __init__(self, placement: SlurmPlacement, heartbeat_timeout: float) -> None:
        self.placement = placement
        self.heartbeat_timeout = heartbeat_timeout
        self._states: dict[int, tuple[float, str]] = {}

    def death(self, slurm_id: int, job_dir: Path) -> str | None:
        """Why the job process is gone without reporting; None while it may still report."""
        silent = silent_for(job_dir)
        if silent is not None and silent < 3 * HEARTBEAT_SECONDS:
            return None
        now = time.monotonic()
        known = self._states.get(slurm_id)
        if known is None or now - known[0] >= STATE_SECONDS:
            try:
                known = (now, self.placement.state(slurm_id))
            except (TransportError, OSError) as error:
                if silent is None or silent < self.heartbeat_timeout:
                    return None  # ask again at the next pass
                return (
                    f"The job process (SLURM job {slurm_id}) has given no sign of life for "
                    f"{silent:.0f} s and did not report the end of the job; SLURM could not "
                    f"be asked about it ({error})."
                )
            self._states[slurm_id] = known
        state = known[1]
        if state and state not in ENDED_STATES:
            return None  # pending, running, completing...
        self._states.pop(slurm_id, None)
        if silent is None and (job_dir / STOP_REQUEST_FILE).exists():
            return (
                f"The job was stopped before its process started (SLURM job {slurm_id} was "
                "still waiting in the queue)."
            )
        ended = f"ended ({state})" if state else "is no longer known to SLURM"
        return (
            f"The job process (SLURM job {slurm_id}) {ended} without reporting the end of the "
            "job: it was cancelled, ran out of time or memory, or its node failed."
        )
