"""The SLURM backends check the cluster's fractal_jupyter before they submit anything: a
remote worker of another version (an install prefix upgraded in place) fails the job at its
start, saying which versions and what to do.

The cluster's Python is faked by a wrapper script on this host (the `slurm` backend's
LocalTransport runs the probe as it would run sbatch); the SSH backend runs the same probe
through its transport.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from pathlib import Path

import pytest

from fractal_jupyter import __version__
from fractal_jupyter.runner import job
from fractal_jupyter.runner.files import JobSpec, read_events
from fractal_jupyter.runner.interface import JobFailed, WorkflowTaskSpec
from fractal_jupyter.runner.slurm import SlurmExecutor, SlurmSettings
from fractal_jupyter.runner.transport import CommandResult, LocalTransport


def fake_python(folder: Path, version: str | None, *options: str) -> str:
    """A 'python' of an install prefix whose fractal_jupyter is `version` (None: none)."""
    folder.mkdir(parents=True)
    site = folder / "site"
    if version is not None:
        package = site / "fractal_jupyter"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(f"__version__ = {version!r}\n")
    python = folder / "python"
    arguments = " ".join(options)
    python.write_text(
        f'#!/bin/sh\nPYTHONPATH={shlex.quote(str(site))} exec {sys.executable} {arguments} "$@"\n'
    )
    python.chmod(0o755)
    return str(python)


def executor(tmp_path: Path, python: str, worker_init: str = "") -> SlurmExecutor:
    settings = SlurmSettings(python=python, unreachable_timeout=1.0)
    return SlurmExecutor(
        tmp_path, LocalTransport(), settings, worker_init=worker_init, log=logging.getLogger("t")
    )


def test_another_version_on_the_cluster_fails_the_job_saying_what_to_do(tmp_path: Path):
    python = fake_python(tmp_path / "prefix", "0.0.1")
    with pytest.raises(JobFailed) as refused:
        executor(tmp_path, python).check_worker_version()
    message = str(refused.value)
    assert f"has fractal_jupyter 0.0.1, this server's job runs {__version__}" in message
    assert python in message and "no task was run" in message
    assert "new prefix (one per version" in message and "restart the Jupyter servers" in message


def test_the_same_version_passes(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.INFO):
        executor(tmp_path, sys.executable).check_worker_version()
    assert f"fractal_jupyter {__version__} on the cluster" in caplog.text


def test_the_probe_runs_after_the_worker_init_lines(tmp_path: Path):
    """`module load` and the like decide which Python the nodes run: so does the probe."""
    python = fake_python(tmp_path / "old", "0.0.1")
    new = fake_python(tmp_path / "new", __version__)
    os.symlink(python, tmp_path / "python-on-path")
    init = f"ln -sf {new} {tmp_path / 'python-on-path'}"
    executor(tmp_path, str(tmp_path / "python-on-path"), worker_init=init).check_worker_version()


def test_no_fractal_jupyter_on_the_cluster_fails_the_job(tmp_path: Path):
    python = fake_python(tmp_path / "bare", None, "-S")  # no site-packages either
    with pytest.raises(JobFailed, match="has no fractal_jupyter: install fractal-jupyter=="):
        executor(tmp_path, python).check_worker_version()


def test_a_probe_that_cannot_tell_lets_the_job_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """A worker_init that only works on the nodes: the worker checks there."""
    executor(tmp_path, sys.executable, worker_init="exit 3").check_worker_version()
    assert "Could not read the fractal_jupyter version" in caplog.text


def test_the_job_fails_before_any_task_is_submitted(tmp_path: Path, monkeypatch):
    """Through the job process: the job fails at its start, and sbatch is never run (it is
    not even on PATH here: a submission would fail with another message)."""
    python = fake_python(tmp_path / "prefix", "0.0.1")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    task = WorkflowTaskSpec(
        id=1,
        order=0,
        task_id=1,
        task_name="t",
        task_type="non_parallel",
        command_non_parallel="true",
        command_parallel=None,
        args_non_parallel={},
        args_parallel=None,
        meta_non_parallel={},
        meta_parallel=None,
        input_filters={"attributes": {}, "types": {}},
        input_types={},
        output_types={},
        dump={},
    )
    JobSpec(
        job_id=7,
        zarr_dir=str(tmp_path / "zarr"),
        images=[],
        filters={},
        tasks=[task],
        max_workers=1,
        backend="slurm",
        slurm=SlurmSettings(python=python, unreachable_timeout=1.0).to_dict(),
    ).write(job_dir)
    assert job.main(job_dir) == 0
    events = read_events(job_dir)
    assert [event["type"] for event in events] == ["job_failed"]
    assert "has fractal_jupyter 0.0.1" in events[0]["message"]
    assert not list(job_dir.glob("**/*.sh")) and not list(job_dir.glob("**/*.pickle"))


class LoginShellTransport(LocalTransport):
    """Runs a command as SSHTransport sends it: argv joined into one line for the remote
    user's shell (`$SHELL -c <line>`)."""

    def run(self, argv: list[str], *, timeout: float | None = None) -> CommandResult:
        return super().run(["/bin/sh", "-c", shlex.join(argv)], timeout=timeout)


def test_the_probe_survives_the_ssh_backends_quoting(tmp_path: Path):
    python = fake_python(tmp_path / "prefix with space", "0.0.1")
    settings = SlurmSettings(python=python, unreachable_timeout=1.0)
    remote = SlurmExecutor(
        tmp_path,
        LoginShellTransport(),
        settings,
        worker_init="export GREETING='it''s \"quoted\"'",
        log=logging.getLogger("t"),
    )
    with pytest.raises(JobFailed, match=r"has fractal_jupyter 0\.0\.1"):
        remote.check_worker_version()
