"""The SLURM executor: task calls batched into sbatch jobs, watched with one squeue per poll.

It runs in the job process, as the user who owns the Jupyter server: `sbatch`, `squeue`,
`scancel` run through a `Transport` (this host for the `slurm` backend, a login node over SSH
for `slurm_ssh`). Each SLURM job runs `python -m fractal_jupyter.runner.remote` on a
cloudpickled batch of calls, which leaves every call's args, log and output in the task folder
and the outcomes in `<prefix>.results.json`. When the job folder on the cluster is not the
server's (SSH), the batch and the script are copied there and one tar of the results is copied
back per SLURM job.

A SLURM job that ends without its results fails the Fractal job with SLURM's state and reason;
the sibling SLURM jobs are cancelled then (2.6.4 leaves them running). The ids of all SLURM
jobs are appended to `slurm-jobs.txt` in the job folder, so that the server can cancel them
when the job process died (`runner.backends.cancel_left_cluster_jobs`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shlex
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cloudpickle  # type: ignore[import-untyped]

from .._version import __version__
from ..commands import split_command
from .batching import BatchingError, BatchingLimits, heuristics, parse_mem, split
from .call import LOG_TAIL_BYTES, log_tail
from .files import SLURM_JOBS_FILE
from .function import RUNNER_MODULE, function_file_of
from .interface import JSON, JobFailed, OnCallsDone, OnCallsEnded, TaskCall, TaskFailed
from .settings import SlurmSettings
from .slurm_queue import COMMAND_TIMEOUT, ENDED_STATES
from .transport import CommandResult, Transport, TransportError

OPTION_KEYS = ("partition", "cpus_per_task", "mem", "time", "constraint", "gres", "gpus")
# What the cluster's Python says about its fractal_jupyter (the package's __init__ is cheap).
VERSION_PROBE = "import fractal_jupyter; print('fractal_jupyter', fractal_jupyter.__version__)"
# Where notebook functions' files go in the job folder on the cluster (SSH).
FUNCTIONS_FOLDER = "functions"
STOP_WAIT_SECONDS = 30.0
SCANCEL_RETRY_SECONDS = 3.0

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resources:
    """What one call needs, from the settings and the task's meta (2.6.4's SlurmConfig)."""

    partition: str = ""
    cpus_per_task: int = 1
    mem_per_task: int = 1000  # MB
    time: str | None = None
    constraint: str | None = None
    gres: str | None = None
    gpus: str | None = None
    extra_lines: tuple[str, ...] = ()
    tasks_per_job: int | None = None
    parallel_tasks_per_job: int | None = None


def _options(values: dict[str, Any], where: str) -> dict[str, Any]:
    unknown = set(values) - {*OPTION_KEYS, "extra_lines"}
    if unknown:
        raise JobFailed(f"unknown SLURM option(s) {sorted(unknown)} in {where}")
    return values


def resources(settings: SlurmSettings, meta: JSON) -> Resources:
    """Defaults < GPU options (when `needs_gpu`) < the task's meta; `account` is refused in meta."""
    if "account" in meta:
        raise JobFailed(
            "the task's meta sets 'account': the SLURM account comes from the job submission "
            "(slurm_account), not from a task"
        )
    merged: dict[str, Any] = {"partition": settings.partition}
    extra = list(settings.extra_lines)
    layers = [_options(settings.default_options, "slurm_default_options")]
    if meta.get("needs_gpu"):
        if not settings.gpu_options:
            raise JobFailed(
                "the task needs a GPU (meta.needs_gpu) but no GPU options are configured "
                "(FractalJupyter.slurm_gpu_options)"
            )
        layers.append(_options(settings.gpu_options, "slurm_gpu_options"))
    layers.append({key: meta[key] for key in (*OPTION_KEYS, "extra_lines") if key in meta})
    for layer in layers:
        for key, value in layer.items():
            if key == "extra_lines":
                extra += [line for line in value if line not in extra]
            elif value is not None:
                merged[key] = value
    try:
        mem = parse_mem(merged.get("mem", 1000))
        cpus = int(merged.get("cpus_per_task", 1))
    except (BatchingError, TypeError, ValueError) as error:
        raise JobFailed(f"invalid SLURM resources: {error}") from None

    def optional_int(key: str) -> int | None:
        value = meta.get(key)
        return int(value) if isinstance(value, int) and not isinstance(value, bool) else None

    return Resources(
        partition=str(merged.get("partition") or ""),
        cpus_per_task=cpus,
        mem_per_task=mem,
        time=_text(merged.get("time")),
        constraint=_text(merged.get("constraint")),
        gres=_text(merged.get("gres")),
        gpus=_text(merged.get("gpus")),
        extra_lines=tuple(extra),
        tasks_per_job=optional_int("tasks_per_job"),
        parallel_tasks_per_job=optional_int("parallel_tasks_per_job"),
    )


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _check_no_account(lines: Sequence[str], where: str) -> None:
    for line in lines:
        if re.match(r"\s*#SBATCH\s+(--account|-A)\b", line):
            raise JobFailed(
                f"{where} contains {line.strip()!r}: the SLURM account comes from the job "
                "submission (slurm_account)"
            )


def job_name(task_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", task_name.strip()) or "fractal"


@dataclass
class SlurmJob:
    """One submitted sbatch job and the calls (with their positions) it runs."""

    slurm_id: str
    prefix: str
    folder: str
    calls: list[tuple[int, TaskCall]]


@dataclass(frozen=True)
class QueueState:
    state: str
    reason: str


class SlurmExecutor:
    def __init__(
        self,
        job_dir: Path,
        transport: Transport,
        settings: SlurmSettings,
        *,
        remote_job_dir: str | None = None,
        python: str | None = None,
        slurm_account: str | None = None,
        worker_init: str | None = None,
        log: logging.Logger = logger,
    ) -> None:
        self.job_dir = job_dir
        self.transport = transport
        self.settings = settings
        self.remote_job_dir = remote_job_dir or str(job_dir)
        self.copy_files = self.remote_job_dir != str(job_dir)
        self.python = python or settings.python
        self.slurm_account = slurm_account
        self.worker_init = [
            line for line in (settings.worker_init + "\n" + (worker_init or "")).splitlines()
        ]
        _check_no_account(self.worker_init, "worker_init")
        _check_no_account(settings.extra_lines, "slurm_extra_lines")
        self.limits = BatchingLimits.from_dict(settings.batching)
        self.log = log
        self.active: dict[str, SlurmJob] = {}
        self._stop_requested = False
        self._made_dirs: set[str] = set()
        self._copied_functions: set[str] = set()  # on the cluster
        self.on_calls_done: OnCallsDone | None = None
        self.on_calls_ended: OnCallsEnded | None = None
        if self.copy_files:
            self._makedirs(self.remote_job_dir)

    # -- the Executor protocol -------------------------------------------------------------

    def run_calls(self, calls: Sequence[TaskCall]) -> list[JSON | None]:
        if not calls:
            return []
        needs = resources(self.settings, calls[0].meta)
        _check_no_account(needs.extra_lines, "the task's meta.extra_lines")
        if calls[0].part == "non_parallel" or len(calls) == 1:
            tasks_per_job, parallel = 1, 1
        else:
            try:
                tasks_per_job, parallel = heuristics(
                    len(calls),
                    self.limits,
                    needs.cpus_per_task,
                    needs.mem_per_task,
                    needs.tasks_per_job,
                    needs.parallel_tasks_per_job,
                )
            except BatchingError as error:
                raise JobFailed(f"{calls[0].task_name}: {error}") from None
        indexed = list(enumerate(calls))
        batches = split(indexed, tasks_per_job)
        outputs: list[JSON | None] = [None] * len(calls)
        try:
            for number, batch in enumerate(batches):
                if self._stop_requested:
                    raise TaskFailed(batch[0][1], "the job was stopped")
                prefix = self._prefix(batch[0][1], number, len(batches) > 1 or parallel > 1)
                self._submit(prefix, batch, needs, min(parallel, len(batch)))
            if len(batches) > 1:
                self.log.info(
                    "%s: %s calls in %s SLURM jobs (%s per job, %s at a time)",
                    calls[0].task_name,
                    len(calls),
                    len(batches),
                    tasks_per_job,
                    parallel,
                )
            self._wait(outputs)
        except BaseException:
            self.cancel_all()
            raise
        return outputs

    def describe(self) -> str:
        return f"on SLURM (job folder on the cluster: {self.remote_job_dir})"

    def stop(self) -> None:
        """Called from a signal handler: only a flag; the polling loop cancels the jobs."""
        self._stop_requested = True

    def close(self) -> None:
        """At the end of the job process: nothing of ours may stay queued."""
        with contextlib.suppress(Exception):
            self.cancel_all()
        with contextlib.suppress(Exception):
            self.transport.close()

    def check_worker_version(self) -> None:
        """Fail the job, before any task is submitted, when the Python that runs the SLURM
        jobs has another fractal_jupyter than this job process.

        The worker unpickles this process's task calls and reports in its format, so the
        versions must match exactly: after an upgrade in place of one side (the cluster's
        install prefix, or the server's environment while servers still run the old code)
        every task would fail on the node, after waiting in the queue. The probe runs where
        sbatch runs (this host, or the login node over SSH) with the job's worker_init lines,
        as the nodes run them. A probe that cannot tell (a worker_init that works on the
        nodes only) is logged and the job goes on: the worker checks again on the node.
        """
        # From the job folder, as the worker runs (`python -m` imports from there first).
        lines = [f"cd {shlex.quote(self.remote_job_dir)} || exit 1"]
        lines += [line for line in self.worker_init if line.strip()]
        lines.append(f"exec {shlex.quote(self.python)} -c {shlex.quote(VERSION_PROBE)}")
        result = self._command(["sh", "-c", "\n".join(lines)], "check fractal_jupyter's version")
        found = re.search(r"^fractal_jupyter (\S+)$", result.stdout, re.M)
        where = "the login node" if self.copy_files else "this host"
        if found is None:
            reason = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
            if "No module named 'fractal_jupyter'" in result.stderr:
                raise JobFailed(
                    f"the cluster's Python {self.python} (on {where}) has no fractal_jupyter: "
                    f"install fractal-jupyter=={__version__} for it, or set "
                    "slurm_python / slurm_ssh_python to the Python of such an install prefix. "
                    "No task was run."
                )
            self.log.warning(
                "Could not read the fractal_jupyter version of %s on %s (%s); the worker "
                "checks it on the node",
                self.python,
                where,
                reason,
            )
            return
        if found.group(1) != __version__:
            raise JobFailed(
                f"version mismatch: the cluster's Python {self.python} (on {where}) has "
                f"fractal_jupyter {found.group(1)}, this server's job runs {__version__}; "
                "remote workers need exactly the server's version, so no task was run. After "
                "an upgrade, install the new version into a new prefix (one per version, e.g. "
                f"/opt/fractal-jupyter/{__version__}) and point the servers' slurm_python / "
                "slurm_ssh_python at it, then restart the Jupyter servers so that they run "
                "the same version (docs/deploy-jupyterhub.md: versioned install prefixes)."
            )
        self.log.info("fractal_jupyter %s on the cluster (%s)", found.group(1), self.python)

    # -- submission ---------------------------------------------------------------------

    @staticmethod
    def _prefix(call: TaskCall, number: int, batched: bool) -> str:
        order = call.prefix.split("_", 1)[0]
        return f"{order}_batch_{number:06d}" if batched else call.prefix

    def _remote(self, *parts: str) -> str:
        return "/".join([self.remote_job_dir.rstrip("/"), *parts])

    def _makedirs(self, remote: str) -> None:
        if remote not in self._made_dirs:
            self._retrying(lambda: self.transport.makedirs(remote), f"mkdir {remote}")
            self._made_dirs.add(remote)

    def script(self, prefix: str, folder: str, needs: Resources, ntasks: int, name: str) -> str:
        remote_folder = self._remote(folder)
        options = [f"--job-name={job_name(name)}"]
        if needs.partition:
            options.append(f"--partition={needs.partition}")
        options += [
            "--nodes=1",
            f"--ntasks={ntasks}",
            f"--cpus-per-task={needs.cpus_per_task}",
            f"--mem={ntasks * needs.mem_per_task}M",
        ]
        for key in ("time", "constraint", "gres", "gpus"):
            value = getattr(needs, key)
            if value is not None:
                options.append(f"--{key}={value}")
        if self.slurm_account:
            options.append(f"--account={self.slurm_account}")
        lines = ["#!/bin/sh", *(f"#SBATCH {option}" for option in options)]
        lines += [line for line in needs.extra_lines if line.lstrip().startswith("#SBATCH")]
        lines += [
            f"#SBATCH --output={remote_folder}/{prefix}_slurm_%j.out",
            f"#SBATCH --error={remote_folder}/{prefix}_slurm_%j.err",
            f"#SBATCH --chdir={self.remote_job_dir}",
        ]
        lines += [line for line in needs.extra_lines if not line.lstrip().startswith("#SBATCH")]
        lines += [line for line in self.worker_init if line.strip()]
        batch_file = shlex.quote(f"{remote_folder}/{prefix}.batch.pickle")
        lines.append(
            f"exec {shlex.quote(self.python)} -m fractal_jupyter.runner.remote {batch_file}"
        )
        return "\n".join(lines) + "\n"

    def _submit(
        self, prefix: str, batch: list[tuple[int, TaskCall]], needs: Resources, parallel: int
    ) -> None:
        first = batch[0][1]
        folder = first.folder
        local_folder = self.job_dir / folder
        local_folder.mkdir(parents=True, exist_ok=True)
        data = {
            "job_dir": self.remote_job_dir,
            "folder": folder,
            "calls": [self._call_on_cluster(call) for _, call in batch],
            "parallel": parallel,
            "results": f"{prefix}.results.json",
            "archive": f"{prefix}.files.tar" if self.copy_files else None,
            "version": __version__,
            "warm_start": self.settings.warm_start,
        }
        batch_path = local_folder / f"{prefix}.batch.pickle"
        batch_path.write_bytes(cloudpickle.dumps(data))
        script_path = local_folder / f"{prefix}_slurm_submit.sbatch"
        script_path.write_text(self.script(prefix, folder, needs, parallel, first.task_name))
        remote_script = self._remote(folder, script_path.name)
        if self.copy_files:
            self._makedirs(self._remote(folder))
            for path in (batch_path, script_path):
                self._retrying(
                    lambda path=path: self.transport.put(path, self._remote(folder, path.name)),
                    f"copy {path.name} to the cluster",
                )
        try:  # not retried: a lost answer may hide a submitted job
            result = self.transport.run(
                ["sbatch", "--parsable", remote_script], timeout=COMMAND_TIMEOUT
            )
        except TransportError as error:
            raise JobFailed(f"sbatch of {prefix} failed: {error}") from None
        slurm_id = result.stdout.strip().split(";")[0]
        if result.returncode != 0 or not slurm_id.isdigit():
            raise TaskFailed(first, f"SLURM refused the job (sbatch {result.describe()})")
        job = SlurmJob(slurm_id, prefix, folder, batch)
        self.active[slurm_id] = job
        with (self.job_dir / SLURM_JOBS_FILE).open("a") as record:
            record.write(slurm_id + "\n")
        self.log.info("SLURM job %s submitted: %s, %s call(s)", slurm_id, prefix, len(batch))

    def _call_on_cluster(self, call: TaskCall) -> TaskCall:
        """The call as the cluster runs it. When the job folder is copied (SSH), a notebook
        function's file (runner/function.py) goes along into `functions/` of the job folder on
        the cluster, and the command names that copy: the file is on the server's disk only."""
        if not self.copy_files:
            return call
        try:
            argv = split_command(call.command)
        except ValueError:
            return call  # the call fails on the cluster with this reason
        local = function_file_of(argv)
        if local is None:
            return call
        # Function files are named by their content (`<part>-<digest>.pkl`) in a folder per
        # task name: the same two names on the cluster never stand for two functions.
        name = f"{Path(local).parent.name}-{Path(local).name}"
        remote = self._remote(FUNCTIONS_FOLDER, name)
        if remote not in self._copied_functions:
            self._makedirs(self._remote(FUNCTIONS_FOLDER))
            try:
                self._retrying(
                    lambda: self.transport.put(Path(local), remote),
                    f"copy the function file {local} to the cluster",
                )
            except OSError as error:
                raise TaskFailed(call, f"cannot copy its function file: {error}") from None
            self._copied_functions.add(remote)
        return replace(call, command=shlex.join([argv[0], "-m", RUNNER_MODULE, remote]))

    # -- commands -------------------------------------------------------------------------

    def _command(self, argv: list[str], what: str) -> CommandResult:
        result: CommandResult = self._retrying(
            lambda: self.transport.run(argv, timeout=COMMAND_TIMEOUT), what
        )
        return result

    def _retrying(self, action: Any, what: str) -> Any:
        """Retry an action whose transport fails, until `unreachable_timeout`: then JobFailed."""
        deadline = time.monotonic() + self.settings.unreachable_timeout
        delay = 0.5
        while True:
            try:
                return action()
            except TransportError as error:
                if getattr(error, "permanent", False):  # a refused key: waiting changes nothing
                    message = f"the cluster refused the connection ({what}): {error}"
                    raise JobFailed(message) from None
                if time.monotonic() + delay > deadline or self._stop_requested:
                    raise JobFailed(
                        f"lost contact with the cluster for {self.settings.unreachable_timeout:g} s"
                        f" ({what}): {error}"
                    ) from None
                self.log.warning("%s failed (%s): retrying in %.1f s", what, error, delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def poll(self, ids: Sequence[str]) -> dict[str, QueueState]:
        """One squeue for all the ids: the ones it lists (an id it does not list has ended)."""
        result = self._command(
            [
                "squeue",
                "--noheader",
                "--states=all",
                "--format=%i|%T|%r",
                f"--jobs={','.join(ids)}",
            ],
            "squeue",
        )
        if result.returncode != 0:
            if "Invalid job id" in result.stderr:
                return {}
            raise TransportError(f"squeue {result.describe()}")
        states = {}
        for line in result.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 3:
                states[parts[0]] = QueueState(parts[1], parts[2])
        return states

    def cancel_all(self) -> None:
        """scancel every active SLURM job of this executor and wait until SLURM says they
        ended (the job's last word means that nothing of it runs any more).

        A busy controller fails or times out a scancel or squeue now and then: such a failure
        is logged and the command tried again, scancel every SCANCEL_RETRY_SECONDS, until
        STOP_WAIT_SECONDS have passed; then the job's log names the SLURM jobs not seen to end.
        """
        left = list(self.active)
        if not left:
            return
        self.log.info("Cancelling SLURM job(s) %s", " ".join(left))
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        next_scancel = 0.0
        while left:
            if time.monotonic() >= next_scancel:
                self._scancel(left)
                next_scancel = time.monotonic() + SCANCEL_RETRY_SECONDS
            try:
                states = self.poll(left)
            except (TransportError, JobFailed) as error:
                self.log.warning("Polling SLURM after scancel failed: %s", error)
            else:
                left = [
                    slurm_id
                    for slurm_id in left
                    if slurm_id in states and states[slurm_id].state not in ENDED_STATES
                ]
            if left and time.monotonic() >= deadline:
                self.log.warning(
                    "SLURM job(s) %s not seen to end %g s after their scancel",
                    " ".join(left),
                    STOP_WAIT_SECONDS,
                )
                break
            if left:
                time.sleep(0.2)
        self.active.clear()

    def _scancel(self, ids: Sequence[str]) -> None:
        """One scancel, its failure logged (the caller tries again)."""
        try:
            result = self.transport.run(["scancel", *ids], timeout=COMMAND_TIMEOUT)
        except TransportError as error:
            self.log.warning("scancel failed: %s", error)
            return
        if result.returncode != 0:
            self.log.warning("scancel %s", result.describe())

    # -- waiting and results --------------------------------------------------------------

    def _wait(self, outputs: list[JSON | None]) -> None:
        failing_since: float | None = None
        while self.active:
            if self._stop_requested:
                first = next(iter(self.active.values())).calls[0][1]
                raise TaskFailed(first, "the job was stopped")
            try:
                states = self.poll(list(self.active))
            except TransportError as error:  # squeue answered with an error (controller down?)
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > self.settings.unreachable_timeout:
                    raise JobFailed(
                        f"SLURM did not answer for {self.settings.unreachable_timeout:g} s: {error}"
                    ) from None
                self.log.warning("Polling SLURM failed: %s", error)
            else:
                failing_since = None
                for slurm_id, job in list(self.active.items()):
                    state = states.get(slurm_id)
                    if state is None or state.state in ENDED_STATES:
                        del self.active[slurm_id]
                        self._collect(job, state, outputs)
            if self.active:
                self._sleep(self.settings.poll_interval)

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._stop_requested and time.monotonic() < end:
            time.sleep(min(0.05, max(0.0, end - time.monotonic())))

    def _fetch(self, job: SlurmJob, name: str) -> bool:
        if not self.copy_files:
            return (self.job_dir / job.folder / name).exists()
        try:
            self._retrying(
                lambda: self.transport.get(
                    self._remote(job.folder, name), self.job_dir / job.folder / name
                ),
                f"copy {name} from the cluster",
            )
        except FileNotFoundError:
            return False
        return True

    def _collect(self, job: SlurmJob, state: QueueState | None, outputs: list[JSON | None]) -> None:
        folder = self.job_dir / job.folder
        if self.copy_files:
            archive = folder / f"{job.prefix}.files.tar"
            if self._fetch(job, archive.name):
                with tarfile.open(archive) as tar:
                    tar.extractall(folder, filter="data")
                archive.unlink()
            for stream in ("out", "err"):
                self._fetch(job, f"{job.prefix}_slurm_{job.slurm_id}.{stream}")
        results_path = folder / f"{job.prefix}.results.json"
        try:
            results: list[JSON] = json.loads(results_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            stderr = log_tail(self.job_dir / job.folder / f"{job.prefix}_slurm_{job.slurm_id}.err")
            raise TaskFailed(
                job.calls[0][1],
                self._describe_end(job, state),
                executor_error=executor_error_log(stderr),
            ) from None
        # How the calls of each command started (warm or why not), once per SLURM job.
        for note in dict.fromkeys(result["note"] for result in results if "note" in result):
            self.log.info("SLURM job %s: %s", job.slurm_id, note)
        failure: TaskFailed | None = None
        done = 0
        ended: list[tuple[TaskCall, bool]] = []
        for (index, call), result in zip(job.calls, results, strict=True):
            if result["status"] == "done":
                outputs[index] = result["output"]
                done += 1
                ended.append((call, True))
            elif result["status"] == "failed":
                ended.append((call, False))
                if failure is None:
                    failure = TaskFailed(call, result["reason"], result.get("log_tail", ""))
        if done and self.on_calls_done is not None:
            self.on_calls_done(done)
        if ended and self.on_calls_ended is not None:
            self.on_calls_ended(ended)
        if failure is not None:
            raise failure

    def _describe_end(self, job: SlurmJob, state: QueueState | None) -> str:
        """SLURM's own account of a job that ended without results: state, reason, output."""
        details = self._slurm_details(job.slurm_id)
        if not details and state is not None:
            details = f"state {state.state}, reason {state.reason}"
        message = (
            f"the SLURM job {job.slurm_id} ended without the results of its calls "
            f"({details or 'SLURM no longer knows the job'})"
        )
        folder = self.job_dir / job.folder
        for stream in ("err", "out"):
            text = log_tail(folder / f"{job.prefix}_slurm_{job.slurm_id}.{stream}", LOG_TAIL_BYTES)
            if text.strip():
                message += f"\nSLURM's {stream} file ends with:\n{text.rstrip()}"
        return message

    def _slurm_details(self, slurm_id: str) -> str:
        try:
            shown = self._command(["scontrol", "show", "job", slurm_id], "scontrol")
        except JobFailed:
            return ""
        if shown.returncode == 0:
            fields = dict(re.findall(r"(JobState|Reason|ExitCode)=(\S+)", shown.stdout))
            if fields:
                return ", ".join(
                    f"{label} {fields[key]}"
                    for key, label in (
                        ("JobState", "state"),
                        ("Reason", "reason"),
                        ("ExitCode", "exit code"),
                    )
                    if key in fields
                )
        try:
            accounted = self._command(
                ["sacct", "-X", "-n", "-P", "-j", slurm_id, "-o", "State,Reason,ExitCode"], "sacct"
            )
        except JobFailed:
            return ""
        if accounted.returncode == 0 and accounted.stdout.strip():
            state, reason, code = [*accounted.stdout.strip().splitlines()[0].split("|"), "", ""][:3]
            return f"state {state}, reason {reason}, exit code {code}"
        return ""


# SLURM's lines that say why it ended a job, and what they mean for a user.
_SLURM_VERDICTS = (
    (re.compile(r"oom[_-]kill|out of memory|OOM Killed", re.I), "Out of memory"),
    (re.compile(r"DUE TO TIME LIMIT", re.I), "Time limit reached"),
    (re.compile(r"CANCELLED AT", re.I), "Cancelled"),
    (re.compile(r"DUE TO NODE FAILURE", re.I), "Node failure"),
    (re.compile(r"DUE TO PREEMPTION", re.I), "Preempted"),
)
_SLURM_PREFIX = re.compile(r"^(slurmstepd|srun|sbatch|salloc)(-\S+)?: (error|warning|info): ")
_SLURM_FRAME = re.compile(r"^\*+\s*|\s*\*+$")


def executor_error_log(stderr: str) -> str:
    """SLURM's stderr of a job it ended, for users: a first line with the verdict ("Out of
    memory", "Time limit reached", ...), then the distinct lines without SLURM's prefixes and
    `***` frames. Empty when there is nothing to say."""
    lines: list[str] = []
    for raw in stderr.splitlines():
        line = _SLURM_FRAME.sub("", _SLURM_PREFIX.sub("", raw.strip())).strip()
        if line and line not in lines:
            lines.append(line)
    verdicts = [
        verdict
        for pattern, verdict in _SLURM_VERDICTS
        if any(pattern.search(line) for line in lines)
    ]
    if "Time limit reached" in verdicts or "Node failure" in verdicts or "Preempted" in verdicts:
        verdicts = [v for v in verdicts if v != "Cancelled"]  # SLURM cancels for those reasons
    if verdicts:
        lines.insert(0, ", ".join(verdicts) + ".")
    return "\n".join(lines)
