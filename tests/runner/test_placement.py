"""Job processes placed on SLURM (runner/placement.py): what is submitted, and how a server
tells one that waits or runs from one that is gone. SLURM's answers are scripted here; the
real cluster runs tests/e2e/test_slurm_allocation.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fractal_jupyter.app import FractalJupyter
from fractal_jupyter.configuration import settings_problems
from fractal_jupyter.runner.files import HEARTBEAT_FILE, PROCESS_LOG, STOP_REQUEST_FILE
from fractal_jupyter.runner.placement import (
    STATE_SECONDS,
    PlacedJobWatch,
    SlurmPlacement,
    runner_of,
    slurm_id_of,
)
from fractal_jupyter.runner.settings import SlurmSettings
from fractal_jupyter.runner.transport import CommandResult, LocalTransport


class ScriptedSlurm(LocalTransport):
    """Answers sbatch / squeue / scancel from a list, and keeps the command lines."""

    def __init__(self, answers: list[CommandResult]) -> None:
        self.answers = answers
        self.commands: list[list[str]] = []

    def run(self, argv: list[str], *, timeout: float | None = None) -> CommandResult:
        self.commands.append(argv)
        return self.answers.pop(0)


def ok(stdout: str = "") -> CommandResult:
    return CommandResult(0, stdout, "")


def placement(answers: list[CommandResult]) -> SlurmPlacement:
    settings = SlurmSettings(partition="short")
    return SlurmPlacement(settings, "/opt/py/bin/python", ScriptedSlurm(answers))


def test_runners_name_the_slurm_job_not_a_host():
    assert runner_of(4711, 1000) == "slurm-job-4711:1000"
    assert slurm_id_of("slurm-job-4711:1000") == 4711
    assert slurm_id_of("login-a:1000") is None
    assert slurm_id_of("slurm-job-x:1000") is None


def test_the_job_process_is_submitted_as_a_small_job_of_its_own(tmp_path):
    placed = placement([ok("812;cluster\n")])
    assert placed.submit(tmp_path, 7, "lab-a") == 812
    transport = placed.transport
    assert isinstance(transport, ScriptedSlurm)
    assert transport.commands == [
        [
            "sbatch",
            "--parsable",
            "--job-name=fractal-job-process-7",
            "--ntasks=1",
            "--cpus-per-task=1",
            "--mem=2G",
            f"--chdir={tmp_path}",
            f"--output={tmp_path / PROCESS_LOG}",
            "--open-mode=append",
            "--partition=short",
            "--account=lab-a",
            f"--wrap=exec /opt/py/bin/python -m fractal_jupyter.runner.job {tmp_path}",
        ]
    ]
    refused = placement([CommandResult(1, "", "sbatch: error: Invalid account")])
    with pytest.raises(OSError, match=r"sbatch of the job process failed .*Invalid account"):
        refused.submit(tmp_path, 7, "nope")


def beat(job_dir: Path, seconds_ago: float) -> None:
    heartbeat = job_dir / HEARTBEAT_FILE
    heartbeat.write_text("node-1 pid 5\n")
    then = heartbeat.stat().st_mtime - seconds_ago
    os.utime(heartbeat, (then, then))


def test_a_waiting_or_beating_job_process_lives_and_an_ended_one_is_dead(tmp_path):
    answers = [ok("PENDING\n"), ok("RUNNING\n"), ok("TIMEOUT\n"), CommandResult(1, "", "")]
    watch = PlacedJobWatch(placement(answers), heartbeat_timeout=60)
    transport = watch.placement.transport
    assert isinstance(transport, ScriptedSlurm)

    assert watch.death(9, tmp_path) is None  # never beat: squeue says it waits
    assert watch.death(9, tmp_path) is None  # asked again only after STATE_SECONDS
    assert len(transport.commands) == 1
    beat(tmp_path, 1)
    assert watch.death(9, tmp_path) is None  # beating: SLURM is not even asked
    assert len(transport.commands) == 1

    beat(tmp_path, 30)  # silent: SLURM is asked (its answer is old by then)
    watch._states[9] = (watch._states[9][0] - STATE_SECONDS, "PENDING")
    assert watch.death(9, tmp_path) is None  # RUNNING
    watch._states[9] = (watch._states[9][0] - STATE_SECONDS, "RUNNING")
    assert watch.death(9, tmp_path) == (
        "The job process (SLURM job 9) ended (TIMEOUT) without reporting the end of the job: "
        "it was cancelled, ran out of time or memory, or its node failed."
    )
    # SLURM cannot answer: a heartbeat silent for longer than the timeout is a death.
    beat(tmp_path, 61)
    death = watch.death(9, tmp_path)
    assert death is not None and death.startswith(
        "The job process (SLURM job 9) has given no sign of life for 61 s"
    )


def test_a_job_stopped_while_its_process_waited_says_so(tmp_path):
    watch = PlacedJobWatch(placement([ok("CANCELLED\n")]), heartbeat_timeout=60)
    (tmp_path / STOP_REQUEST_FILE).write_text("asked\n")
    assert watch.death(3, tmp_path) == (
        "The job was stopped before its process started (SLURM job 3 was still waiting in "
        "the queue)."
    )


@pytest.mark.parametrize(
    ("backend", "setting", "in_allocation", "used"),
    [
        ("slurm", "auto", True, "slurm"),
        ("slurm", "auto", False, "server"),
        ("local", "auto", True, "server"),
        ("slurm_ssh", "auto", True, "server"),
        ("slurm", "server", True, "server"),
        ("slurm", "slurm", False, "slurm"),
    ],
)
def test_auto_places_job_processes_on_slurm_inside_an_allocation(
    monkeypatch, backend, setting, in_allocation, used
):
    if in_allocation:
        monkeypatch.setenv("SLURM_JOB_ID", "55")
    else:
        monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    app = FractalJupyter(runner_backend=backend, job_process_placement=setting)
    assert app.job_process_placement_used() == used
    launcher = app.job_launcher()
    assert (launcher.slurm_placement is not None) == (used == "slurm")


def test_placing_on_slurm_needs_the_slurm_backend(tmp_path):
    app = FractalJupyter(
        runner_backend="local", job_process_placement="slurm", data_dir=str(tmp_path)
    )
    assert settings_problems(app) == [
        "FractalJupyter.job_process_placement = 'slurm' needs FractalJupyter.runner_backend = "
        "'slurm' (sbatch on this host), not 'local': it accepts 'server' or 'auto' there."
    ]
