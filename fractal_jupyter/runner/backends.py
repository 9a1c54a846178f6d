"""The one place that turns a backend into working parts.

The job process gets its executor here (`open_executor`), and the server cancels here what a
dead job process left on the cluster (`cancel_left_cluster_jobs`). The SLURM modules (and
cloudpickle, paramiko) are imported only when a SLURM backend needs them, so a local job
process starts without them.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .files import JobSpec, recorded_job_ids
from .interface import JobExecutor, JobFailed
from .local import LocalExecutor
from .settings import Backend, SlurmSettings, cluster_job_dir
from .transport import LocalTransport, Transport

# How long scancel may take for a dead job's SLURM jobs.
CANCEL_TIMEOUT_SECONDS = 60.0

logger = logging.getLogger(__name__)


def make_transport(
    backend: Backend, settings: SlurmSettings, log: logging.Logger = logger
) -> Transport:
    """How a SLURM backend reaches the cluster: this host, or a login node over SSH."""
    if backend.over_ssh:
        if settings.ssh is None:
            raise JobFailed(f"the {backend} backend has no SSH settings")
        from .ssh import SSHSettings, SSHTransport  # paramiko only where it is used

        # The job's log, so that reconnections show where users look.
        return SSHTransport(SSHSettings.from_json(settings.ssh), log=log)
    return LocalTransport()


def open_executor(spec: JobSpec, job_dir: Path, log: logging.Logger = logger) -> JobExecutor:
    """The executor of a job process, for the backend and settings of its spec."""
    backend = Backend(spec.backend)
    if not backend.on_slurm:
        return LocalExecutor(
            job_dir,
            spec.max_workers,
            warm_start=spec.warm_start,
            keep_seconds=spec.warm_start_keep_seconds,
            planned_commands=[
                command
                for task in spec.tasks
                for command in (task.command_non_parallel, task.command_parallel)
                if command is not None
            ],
            log=log,
        )
    from .slurm import SlurmExecutor

    settings = SlurmSettings.from_dict(spec.slurm or {})
    executor = SlurmExecutor(
        job_dir,
        make_transport(backend, settings, log),
        settings,
        remote_job_dir=cluster_job_dir(backend, settings, job_dir),
        python=settings.remote_python if backend.over_ssh else settings.python,
        slurm_account=spec.slurm_account,
        worker_init=spec.worker_init,
        log=log,
    )
    try:
        executor.check_worker_version()
    except BaseException:
        executor.close()
        raise
    return executor


def cancel_left_cluster_jobs(job_dir: Path) -> str | None:
    """For a job process that died: scancel the SLURM jobs it recorded, with the job's own
    settings; a line for the job's log ("" when there was nothing to cancel). None when the
    job does not run on a cluster (its task processes are local ones then)."""
    try:
        spec = JobSpec.read(job_dir)
        backend = Backend(spec.backend)
    except (OSError, ValueError, TypeError):
        return None
    if not backend.on_slurm:
        return None
    ids = recorded_job_ids(job_dir)
    if not ids:
        return ""
    try:
        transport = make_transport(backend, SlurmSettings.from_dict(spec.slurm or {}))
        try:
            result = transport.run(["scancel", *ids], timeout=CANCEL_TIMEOUT_SECONDS)
        finally:
            transport.close()
    except Exception as error:  # the server must go on: say it in the job's log
        return f"Its SLURM jobs ({' '.join(ids)}) could not be cancelled: {error}"
    if result.returncode != 0 and "Invalid job id" not in result.stderr:
        return f"scancel of its SLURM jobs ({' '.join(ids)}) failed: {result.describe()}"
    return f"Its SLURM jobs ({' '.join(ids)}) were cancelled."
