"""Where jobs run and with what: the backend and the runner's settings.

`Backend` is the one place that knows the backends by name; the rest of the package asks it
what a backend implies (`on_slurm`, `over_ssh`) and never compares names. The server builds a
`RunnerSettings` from its configuration and writes the runner's part of it into each job spec;
the job process reads it back (`runner.backends` turns it into an executor).
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from .interface import JSON


class Backend(StrEnum):
    LOCAL = "local"  # task processes on the server's machine
    SLURM = "slurm"  # sbatch, squeue and scancel on this host, job folders shared with the nodes
    SLURM_SSH = "slurm_ssh"  # the same on a login node over SSH, files copied with SFTP

    @property
    def on_slurm(self) -> bool:
        """Calls run as SLURM jobs (and a dead job process leaves SLURM jobs to cancel)."""
        return self is not Backend.LOCAL

    @property
    def over_ssh(self) -> bool:
        """The cluster is reached over SSH: job folders are copied, its Python is its own."""
        return self is Backend.SLURM_SSH


@dataclass(frozen=True)
class SlurmSettings:
    """The `slurm_*` traits of the app, as the job process gets them through job.json."""

    partition: str = ""
    default_options: dict[str, Any] = field(default_factory=dict)
    gpu_options: dict[str, Any] = field(default_factory=dict)
    extra_lines: list[str] = field(default_factory=list)
    worker_init: str = ""
    batching: dict[str, Any] = field(default_factory=dict)
    poll_interval: float = 2.0
    unreachable_timeout: float = 120.0
    python: str = sys.executable
    # slurm_ssh: runner.ssh.SSHSettings.to_json(), the job folders and the Python on the cluster
    ssh: JSON | None = None
    remote_dir: str = ""
    remote_python: str = "python3"
    warm_start: bool = True  # the workers fork calls from warm starters (runner.warm)

    def to_dict(self) -> JSON:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: JSON) -> SlurmSettings:
        return cls(**data)


def cluster_job_dir(backend: Backend, slurm: SlurmSettings | None, job_dir: Path) -> str:
    """The job folder where the calls run: on the cluster's own disk over SSH (when a remote
    folder is set), else the server's own folder (shared with the nodes on `slurm`)."""
    if backend.over_ssh and slurm is not None and slurm.remote_dir:
        return f"{slurm.remote_dir.rstrip('/')}/{job_dir.name}"
    return str(job_dir)


@dataclass(frozen=True)
class RunnerSettings:
    working_dir: Path
    max_workers: int
    submit_rate_limit_seconds: float = 2.0
    backend: Backend = Backend.LOCAL
    slurm: SlurmSettings | None = None  # for the SLURM backends
    warm_start: bool = True  # the local backend's; SLURM's is in `slurm`
    warm_start_keep_seconds: float = 0.0  # the local backend's warm starters, after a job

    def job_dir_for_user(self, job_dir: Path) -> str:
        """The job folder as its user finds it (`working_dir_user`)."""
        return cluster_job_dir(self.backend, self.slurm, job_dir)

    def spec_fields(self) -> dict[str, Any]:
        """The runner's part of a job spec (`runner.files.JobSpec`)."""
        return {
            "max_workers": self.max_workers,
            "backend": self.backend.value,
            "slurm": self.slurm.to_dict() if self.slurm is not None else None,
            "warm_start": self.warm_start,
            "warm_start_keep_seconds": self.warm_start_keep_seconds,
        }
