"""Runner benchmark: a no-op parallel task over N images, ours vs fractal-server 2.6.4 vs a floor.

From the repository root:

    .venv/bin/python bench/runner.py [--sizes 10,100,1000] [--workers N] [--no-peer]
                                     [--repeat R] [--peer-tasks-per-job K] [--output PATH]
                                     [--slow-import-calls M] [--slow-import-seconds S]

For each size N: a dataset of N images (zarr_urls only, no files), a workflow with one parallel
task whose command is this interpreter running a tiny stdlib-only no-op script, a submission,
and the wall time from the submit request to the first poll (every 50 ms) that sees "done".
The floor is the same interpreter running the same script N times, `--workers` at a time (our
server's `local_max_workers`), from a thread pool of `subprocess.run`, measured in the same run.
A server's overhead per call is (job time - floor time) / N. Each size has R rounds (a floor,
then one job per server, the servers taking turns at going first); medians are reported.
Checks: every job ends "done"; our job folder has N per-call log files.

Our server runs the no-op task warm (runner/warm.py: one starter imports it, a process is
forked per call). A second part (`--slow-import-calls`, 0 to skip) measures what warm starts
are for: a task whose imports take `--slow-import-seconds` (a module of its folder that
sleeps and makes 50 MB of module data), M images, on our server warm and with its meta
opting out (a new process per call), against the floor of the same script; and the peak
memory of each of our two jobs, the sum of the proportional set sizes (PSS: a page shared by
k processes counts 1/k in each) of the job's processes (job process, starter, task
processes), sampled at every poll.

A third part (`--tasks-core-python`, on by default when the end-to-end tests' venv of
fractal-tasks-core 2.1.0 exists) runs the real tasks on the synthetic plate of
tests/support/tasks_core.py (one well, one 3D field): Project Image (HCS Plate), Threshold
Segmentation, Measure Features, on both servers, each round on a fresh plate, the servers
taking turns at going first. The tasks are created through the API from the package's
manifest with the same commands on both servers (that venv's Python and task scripts): 2.6.4
cannot collect 2.1.0's manifest, nor run its converter (Import OME-Zarr), so the plate's image
is added to the dataset through the API. Ours runs warm (its default): the tasks of the
package's one Python fork from one starter per job. `--tasks-core-wells N` puts the same
field in N wells (one call per well for each parallel task); `--tasks-core-spawn` also runs
ours with `"warm_start": false` in every task's meta (a new process per call, as 2.6.4).
Ours keeps its warm starters between jobs (`warm_start_keep_seconds`, its default): the
workflow runs on ours twice a round, once after killing every kept starter ("ours_first": the
first job of the package's Python) and once with the starter that an earlier job left ("ours":
a rerun). Kept starters of other runs are killed at the start and at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    REPO_ROOT,
    BenchError,
    OurServer,
    progress,
    report_header,
    stop_on_signals,
)

DEFAULT_SIZES = (10, 100, 1_000)
POLL_INTERVAL_S = 0.05
JOB_TIMEOUT_S = 1_800.0
REQUEST_TIMEOUT_S = 120.0
ZARR_DIR = "/bench/runner-zarr"
RESULTS_DIR = REPO_ROOT / "bench" / "results"
TASK_NAME = "noop-parallel"
TASK_SCRIPT = "noop_task.py"
SLOW_IMPORT_TASK_NAME = "slow-import-parallel"
SLOW_IMPORT_SCRIPT = "slow_import_task.py"
DEFAULT_SLOW_IMPORT_CALLS = 100
DEFAULT_SLOW_IMPORT_SECONDS = 1.0
# Warm starts: a task with a slow import takes at most this fraction of the spawn floor, and a
# warm job's peak memory (PSS) at most this multiple of the same job spawning its calls.
TARGET_WARM_FLOOR_FRACTION = 0.15
TARGET_WARM_MEMORY_FACTOR = 1.3
# The target on the runner: our job takes at most this multiple of the floor's time, i.e. our
# overhead per call is at most 20 % of the floor's time per call.
TARGET_FLOOR_FACTOR = 1.2
# Our server looks at the running jobs' event files this often (its default job_poll_interval).
OUR_JOB_POLL_INTERVAL_S = 0.5
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# The real tasks (fractal-tasks-core 2.1.0): ours at least this many times faster than 2.6.4.
TARGET_TASKS_CORE_FACTOR = 3.0
TASKS_CORE_VENV = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    / "fractal-jupyter/e2e-tasks/.fractal/fractal-tasks-core2.1.0/venv"
)
# The workflow: task name -> the workflow task's body (as tests/e2e/test_tasks_core.py).
TASKS_CORE_STEPS: dict[str, dict[str, Any]] = {
    "Project Image (HCS Plate)": {},
    "Threshold Segmentation": {
        "args_parallel": {"channel": {"mode": "label", "identifier": "DAPI"}}
    },
    "Measure Features": {"args_parallel": {"input_label_name": "DAPI_segmented"}},
}

PEER_EMAIL = "runner-bench@fractal.xy"
PEER_PASSWORD = "runner-bench-password"
PEER_USERNAME = "runnerbench"

NOOP_TASK_SOURCE = '''\
"""A no-op Fractal task: `--args-json A --out-json B`, reads A, writes nothing to B."""

import json
import sys


def main(argv: list[str]) -> int:
    args_path = argv[argv.index("--args-json") + 1]
    argv[argv.index("--out-json") + 1]  # no output: the file is not written
    with open(args_path) as args_file:
        json.load(args_file)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
'''

# A task whose imports are slow and leave data in memory (as numpy, dask, zarr... do): the task
# script imports a module of its folder that sleeps (a stand-in that spares the shared
# machine's CPUs) and makes 50 MB of module data; a call reads its arguments, writes nothing.
SLOW_DEPENDENCY_MODULE = "slow_dependency"
SLOW_DEPENDENCY_SOURCE = '''\
"""A dependency of the slow-import task: importing it takes IMPORT_SECONDS and holds 50 MB."""

import time

IMPORT_SECONDS = {seconds!r}
time.sleep(IMPORT_SECONDS)
MODULE_DATA = bytes(range(256)) * (50 * 4096)
'''
SLOW_IMPORT_TASK_SOURCE = f'''\
"""A Fractal task with a slow import (its dependency's)."""

import json
import sys

import {SLOW_DEPENDENCY_MODULE}


def main(argv: list[str]) -> int:
    args_path = argv[argv.index("--args-json") + 1]
    with open(args_path) as args_file:
        json.load(args_file)
    return 0 if {SLOW_DEPENDENCY_MODULE}.MODULE_DATA else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
'''


def peer_default_workers() -> int:
    """Threads of fractal-server 2.6.4's local executor for one parallel task, by default.

    `_local/__init__.py` creates `FractalThreadPoolExecutor()` without `max_workers`, so the
    pool has ThreadPoolExecutor's default size (Python 3.8-3.12): min(32, CPUs + 4). Its `map`
    cuts the calls into chunks of `parallel_tasks_per_job` (from the task's meta, else from
    FRACTAL_LOCAL_CONFIG_FILE, else None = one chunk of all calls) and waits for each chunk
    before starting the next; with no setting, all calls go to the pool at once.
    """
    return min(32, (os.cpu_count() or 1) + 4)


# --- servers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One server under test: where its v2 API lives, how to authenticate."""

    name: str
    url: str
    headers: dict[str, str]
    pid: int  # the server process (ours: the Jupyter server; 2.6.4: uvicorn, with its runner)
    concurrency: int
    # The body that adds the no-op task to a workflow (`{}`: no meta, the server's defaults).
    wftask_body: dict[str, Any] = field(default_factory=dict)


class RunnerServer(OurServer):
    """Our server with an explicit `local_max_workers`."""

    def __init__(self, workers: int) -> None:
        super().__init__()
        self.workers = workers

    def _command(self) -> list[str]:
        return [*super()._command(), f"--FractalJupyter.local_max_workers={self.workers}"]


def processes_mentioning(text: str, spare_group: int | None = None) -> list[int]:
    """Processes whose command line contains `text` (a unique temporary path of ours), except
    those of the process group `spare_group` (a server, which is stopped gracefully)."""
    marker = text.encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            # Fields after the command name: state, ppid, process group.
            state, _, group = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if marker in cmdline and state != "Z" and int(group) != spare_group:
            found.append(int(entry.name))
    return found


def kill_processes_mentioning(text: str, spare_group: int | None = None) -> list[int]:
    """SIGKILL the processes that name one of our temporary folders: job and task processes run
    in sessions of their own, so stopping a server's process group does not reach them."""
    killed = []
    for _ in range(5):
        pids = processes_mentioning(text, spare_group)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        time.sleep(0.1)
    return killed


@contextlib.contextmanager
def our_target(workers: int) -> Iterator[Target]:
    server = RunnerServer(workers)
    try:
        server.start()
        yield Target("ours", server.url, server.headers, server.pid, workers)
    finally:
        group = server.process.pid if server.process is not None else None
        leftovers = kill_processes_mentioning(str(server.workdir) + "/", spare_group=group)
        server.stop()
        leftovers += kill_processes_mentioning(str(server.workdir) + "/")
        if leftovers:
            progress(f"[ours] killed {len(leftovers)} leftover job/task process(es)")


@contextlib.contextmanager
def peer_target(venv: Path | None, tasks_per_job: int | None) -> Iterator[Target]:
    # Imported here: the peer helper is only needed (and only has to exist) with the peer.
    from tests.support.peer import PeerServer, ensure_peer_venv

    if venv is None:
        venv = ensure_peer_venv(REPO_ROOT / ".peer")
    workdir = Path(tempfile.mkdtemp(prefix="fractal-bench-runner-peer-"))
    try:
        # The peer runs its tasks in threads of the server process, in the server's process
        # group: PeerServer.stop() ends them with it.
        with PeerServer(venv, workdir) as peer:
            token = peer.create_user(PEER_EMAIL, PEER_PASSWORD, PEER_USERNAME)
            headers = {"Authorization": f"Bearer {token}"}
            if tasks_per_job is None:
                yield Target("peer", peer.url, headers, peer.pid, peer_default_workers())
            else:
                # Chunks of `tasks_per_job` calls, one after the other (see peer_default_workers).
                meta = {"meta_parallel": {"parallel_tasks_per_job": tasks_per_job}}
                concurrency = min(tasks_per_job, peer_default_workers())
                yield Target("peer", peer.url, headers, peer.pid, concurrency, meta)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --- the workload ---------------------------------------------------------------------------


def call(
    client: httpx.Client,
    target: Target,
    method: str,
    path: str,
    body: Any = None,
    expect: int = 200,
) -> Any:
    response = client.request(method, target.url + path, json=body, headers=target.headers)
    if response.status_code != expect:
        raise BenchError(
            f"[{target.name}] {method} {path}: HTTP {response.status_code}, expected {expect}: "
            f"{response.text[:1000]}"
        )
    return response.json()


def zarr_urls(size: int, tag: str) -> list[str]:
    return [f"{ZARR_DIR}/{tag}/plate.zarr/B/03/{i}" for i in range(size)]


@dataclass(frozen=True)
class Prepared:
    project_id: int
    dataset_id: int
    workflow_id: int


def create_task(client: httpx.Client, target: Target, command: str, name: str = TASK_NAME) -> int:
    body = {"name": name, "source": f"bench:runner:{name}", "command_parallel": command}
    task: dict[str, Any] = call(client, target, "POST", "/api/v2/task/", body, 201)
    if task.get("type") != "parallel":
        raise BenchError(f"[{target.name}] the no-op task has type {task.get('type')}")
    return int(task["id"])


def prepare(
    client: httpx.Client,
    target: Target,
    task_id: int,
    size: int,
    tag: str,
    wftask_body: dict[str, Any] | None = None,
) -> Prepared:
    """A project with a dataset of `size` images and a workflow with the task."""
    project = call(client, target, "POST", "/api/v2/project/", {"name": f"runner-{tag}"}, 201)
    base = f"/api/v2/project/{project['id']}"
    images = [{"zarr_url": url} for url in zarr_urls(size, tag)]
    body = {"name": f"runner-{tag}", "zarr_dir": f"{ZARR_DIR}/{tag}", "images": images}
    dataset = call(client, target, "POST", f"{base}/dataset/import/", body, 201)
    workflow = call(client, target, "POST", f"{base}/workflow/", {"name": f"runner-{tag}"}, 201)
    add_task = f"{base}/workflow/{workflow['id']}/wftask/?task_id={task_id}"
    body = target.wftask_body if wftask_body is None else wftask_body
    call(client, target, "POST", add_task, body, 201)
    return Prepared(int(project["id"]), int(dataset["id"]), int(workflow["id"]))


@dataclass(frozen=True)
class JobRun:
    seconds: float
    submitted_at: float  # time.time() just before the submit request
    accepted_at: float  # time.time() when the submit answer (202) arrived
    seen_done_at: float  # time.time() when the poll that saw "done" returned
    polls: int
    job: dict[str, Any]
    server_cpu_s: float | None  # CPU time of the server process during the job
    job_process_cpu_s: float | None  # ours: CPU time of the job process (last reading)
    peak_pss_mb: float | None  # ours: the most memory the job's processes held together


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of one process (its threads, not its children), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # Fields 14 and 15 of stat(5); the list starts at field 3 (the state).
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def job_process_pid(job_dir: str) -> int | None:
    """Our job process, from its `job_started` event (one forked by the job starter does not
    name its folder on its command line)."""
    try:
        lines = (Path(job_dir) / "events.jsonl").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        event = json.loads(line)
        if event["type"] == "job_started":
            return int(event["pid"])
    return None


class JobProcessProbe:
    """Follows the CPU time of our job process while the job runs: the last reading, taken at
    most one poll before it ended."""

    def __init__(self, job_dir: str) -> None:
        self.job_dir = job_dir
        self.pid: int | None = None
        self.cpu_s: float | None = None

    def sample(self) -> None:
        if self.pid is None:
            self.pid = job_process_pid(self.job_dir)
            if self.pid is None:
                return
        reading = cpu_seconds(self.pid)
        if reading is not None:
            self.cpu_s = reading


def pss_kb(pid: int) -> int:
    """The proportional set size of a process (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


# What the command line of a kept warm starter (warm_start_keep_seconds) holds: it names no
# job folder, and serves every job of its Python while it lives.
KEPT_STARTER_MARK = "warm_starter.py --listen"


class JobMemoryProbe:
    """The peak, over its samples, of the summed PSS of the processes that name the job folder
    (the job process, warm starters and their children, spawned task processes) and of the
    kept warm starters (the benchmark's: the script kills the others at its start)."""

    def __init__(self, job_dir: str) -> None:
        self.job_dir = job_dir
        self.peak_kb = 0

    def sample(self) -> None:
        pids = set(processes_mentioning(self.job_dir + "/"))
        pids |= set(processes_mentioning(KEPT_STARTER_MARK))
        job_process = job_process_pid(self.job_dir)
        if job_process is not None:
            pids.add(job_process)
        self.peak_kb = max(self.peak_kb, sum(pss_kb(pid) for pid in pids))


def run_job(client: httpx.Client, target: Target, prepared: Prepared) -> JobRun:
    """Submit, then poll every 50 ms; the time runs from the submit request to the poll that
    sees "done" (a failed job is an error: its numbers would mean nothing)."""
    base = f"/api/v2/project/{prepared.project_id}/job"
    submit = f"{base}/submit/?workflow_id={prepared.workflow_id}&dataset_id={prepared.dataset_id}"
    server_cpu_before = cpu_seconds(target.pid)
    submitted_at = time.time()
    start = time.perf_counter()
    job: dict[str, Any] = call(client, target, "POST", submit, {}, 202)
    accepted_at = time.time()
    probe = JobProcessProbe(job["working_dir"]) if target.name == "ours" else None
    memory = JobMemoryProbe(job["working_dir"]) if target.name == "ours" else None
    polls = 0
    while job["status"] not in ("done", "failed"):
        if time.perf_counter() - start > JOB_TIMEOUT_S:
            raise BenchError(f"[{target.name}] job {job['id']} not over after {JOB_TIMEOUT_S} s")
        if probe is not None:
            probe.sample()
        if memory is not None:
            memory.sample()
        time.sleep(POLL_INTERVAL_S)
        job = call(client, target, "GET", f"{base}/{job['id']}/")
        polls += 1
    seconds = time.perf_counter() - start
    seen_done_at = time.time()
    server_cpu_after = cpu_seconds(target.pid)
    server_cpu = (
        None
        if server_cpu_before is None or server_cpu_after is None
        else server_cpu_after - server_cpu_before
    )
    if job["status"] != "done":
        raise BenchError(
            f"[{target.name}] job {job['id']} ended {job['status']!r}:\n{(job.get('log') or '')}"
        )
    return JobRun(
        seconds,
        submitted_at,
        accepted_at,
        seen_done_at,
        polls,
        job,
        server_cpu,
        None if probe is None else probe.cpu_s,
        None if memory is None else round(memory.peak_kb / 1024, 1),
    )


def call_log_files(job_dir: Path) -> int:
    """The per-call logs: `<order>_par_<index>.log` in the task's subfolder of the job folder."""
    return sum(1 for path in job_dir.glob("*/*.log") if "_par_" in path.name)


def our_phases(job_dir: Path, run: JobRun) -> dict[str, float]:
    """Where our job's time went, from the job process's events (wall-clock `time` fields)."""
    events: dict[str, float] = {}
    for line in (job_dir / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        events.setdefault(event["type"], float(event["time"]))
    started, done = events.get("task_started"), events.get("task_done")
    # When the server applied job_done to the database (the job row's end_timestamp).
    applied = _api_time(run.job.get("end_timestamp"))
    marks = [
        ("submit request (until the 202)", run.submitted_at, run.accepted_at),
        ("202 to job process started", run.accepted_at, events.get("job_started")),
        ("job process start to task start", events.get("job_started"), started),
        ("task calls (task_started to task_done)", started, done),
        ("task_done to job_done", done, events.get("job_done")),
        ("job_done to the server applying it", events.get("job_done"), applied),
        ("applied to the poll that saw done", applied, run.seen_done_at),
    ]
    return {
        label: round(end - begin, 3)
        for label, begin, end in marks
        if begin is not None and end is not None
    }


def _api_time(text: Any) -> float | None:
    """A timestamp of the API (ISO 8601, UTC when no offset is given) as epoch seconds."""
    if not isinstance(text, str):
        return None
    stamp = datetime.datetime.fromisoformat(text)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.UTC)
    return stamp.timestamp()


def _log_time(line: str) -> float | None:
    try:
        stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    except ValueError:
        return None
    return stamp.timestamp()


def peer_phases(job_dir: Path, run: JobRun) -> dict[str, float]:
    """Where 2.6.4's job time went, from its workflow.log (local times, millisecond steps)."""
    marks: dict[str, float] = {}
    try:
        lines = (job_dir / "workflow.log").read_text(errors="replace").splitlines()
    except OSError:
        return {}
    for line in lines:
        stamp = _log_time(line)
        if stamp is None:
            continue
        for key, needle in (
            ("start", "START workflow"),
            ("submit", "SUBMIT 0-th task"),
            ("end_task", "END    0-th task"),
            ("end", "END workflow"),
        ):
            if needle in line:
                marks.setdefault(key, stamp)
    applied = _api_time(run.job.get("end_timestamp"))
    spans = [
        ("submit request (until the 202)", run.submitted_at, run.accepted_at),
        ("202 to START workflow", run.accepted_at, marks.get("start")),
        ("START workflow to SUBMIT task", marks.get("start"), marks.get("submit")),
        ("task calls (SUBMIT to END task)", marks.get("submit"), marks.get("end_task")),
        ("END task to END workflow", marks.get("end_task"), marks.get("end")),
        ("END workflow to end_timestamp", marks.get("end"), applied),
        ("end_timestamp to the poll that saw done", applied, run.seen_done_at),
    ]
    return {
        label: round(end - begin, 3)
        for label, begin, end in spans
        if begin is not None and end is not None
    }


# --- the floor ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FloorRun:
    seconds: float
    parent_cpu_s: float  # CPU of this process (the thread pool starting and waiting)
    task_cpu_s: float  # CPU of the N task processes


def measure_floor(command: list[str], size: int, workers: int, scratch: Path) -> FloorRun:
    """N runs of the no-op task command, `workers` at a time; the argument files are written
    beforehand and the output goes nowhere, so this is the cost of the processes alone."""
    folder = Path(tempfile.mkdtemp(prefix=f"floor-{size}-", dir=scratch))
    try:
        argvs = []
        for index, url in enumerate(zarr_urls(size, "floor")):
            args_path = folder / f"{index}.args.json"
            args_path.write_text(json.dumps({"zarr_url": url}))
            out_path = folder / f"{index}.metadiff.json"
            argvs.append([*command, "--args-json", str(args_path), "--out-json", str(out_path)])

        def run(argv: list[str]) -> int:
            return subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            ).returncode

        before = os.times()
        start = time.perf_counter()
        pool = ThreadPoolExecutor(max_workers=workers)
        try:
            codes = list(pool.map(run, argvs))
        finally:
            # On Ctrl-C or SIGTERM the calls not yet started must not run: cancel them.
            pool.shutdown(wait=True, cancel_futures=True)
        elapsed = time.perf_counter() - start
        after = os.times()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    failed = sum(1 for code in codes if code != 0)
    if failed:
        raise BenchError(f"floor: {failed} of {size} runs of {command} failed")
    # max(): os.times() counts in clock ticks, and a difference of equal sums may be -0.0.
    parent_cpu = after.user + after.system - before.user - before.system
    task_cpu = after.children_user + after.children_system
    task_cpu -= before.children_user + before.children_system
    return FloorRun(elapsed, max(0.0, parent_cpu), max(0.0, task_cpu))


# --- the run --------------------------------------------------------------------------------


def overhead_ms(job_s: float, floor_s: float, size: int) -> float:
    """The time a server adds to each call: (job time - floor time) / N, in ms."""
    return (job_s - floor_s) / size * 1000.0


def _ms_per_call(seconds: float | None, size: int) -> float | None:
    return None if seconds is None else round(seconds / size * 1000.0, 3)


def run_one_job(
    client: httpx.Client,
    target: Target,
    task_id: int,
    size: int,
    tag: str,
    wftask_body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    prepared = prepare(client, target, task_id, size, tag, wftask_body)
    run = run_job(client, target, prepared)
    job_dir = Path(run.job["working_dir"])
    logs = call_log_files(job_dir)
    if target.name == "ours" and logs != size:
        raise BenchError(f"[ours] N={size}: {logs} per-call log files, expected {size}")
    phases = (our_phases if target.name == "ours" else peer_phases)(job_dir, run)
    progress(f"[{target.name}] N={size}: job {run.seconds:.3f} s, {logs} call logs")
    return {
        "job_s": round(run.seconds, 4),
        "polls": run.polls,
        "status": run.job["status"],
        "call_log_files": logs,
        "server_cpu_ms_per_call": _ms_per_call(run.server_cpu_s, size),
        "job_process_cpu_ms_per_call": _ms_per_call(run.job_process_cpu_s, size),
        "peak_pss_mb": run.peak_pss_mb,
        "warm": "warm start" in (run.job.get("log") or ""),
        "phases_s": phases,
    }


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [run[key] for run in runs if run.get(key) is not None]
    return round(statistics.median(values), 3) if values else None


def median_phases(runs: list[dict[str, Any]]) -> dict[str, float]:
    labels = [label for label in runs[0]["phases_s"] if all(label in r["phases_s"] for r in runs)]
    return {
        label: round(statistics.median(run["phases_s"][label] for run in runs), 3)
        for label in labels
    }


def run_size(
    client: httpx.Client,
    targets: list[Target],
    task_ids: dict[str, int],
    command: list[str],
    size: int,
    workers: int,
    repeat: int,
    scratch: Path,
) -> dict[str, Any]:
    """`repeat` rounds, each with the floor and one job per server, so that a change in the
    machine's load (it may be shared) weighs on all of them alike; medians over the rounds."""
    floors: list[FloorRun] = []
    runs: dict[str, list[dict[str, Any]]] = {target.name: [] for target in targets}
    own_floors: dict[str, list[float]] = {target.name: [] for target in targets}
    load = [round(os.getloadavg()[0], 2)]
    for attempt in range(repeat):
        floors.append(measure_floor(command, size, workers, scratch))
        progress(f"N={size}: floor {floors[-1].seconds:.3f} s ({workers} at a time)")
        # The servers take turns at going first.
        turn = attempt % len(targets)
        for target in targets[turn:] + targets[:turn]:
            tag = f"{target.name}-{size}-{attempt}"
            runs[target.name].append(run_one_job(client, target, task_ids[target.name], size, tag))
            if target.concurrency != workers:
                own = measure_floor(command, size, target.concurrency, scratch).seconds
                progress(f"N={size}: floor at {target.name}'s concurrency {own:.3f} s")
                own_floors[target.name].append(own)
        load.append(round(os.getloadavg()[0], 2))
    floor_s = statistics.median(floor.seconds for floor in floors)
    result: dict[str, Any] = {
        "floor_s": round(floor_s, 4),
        "floor_runs_s": [round(floor.seconds, 4) for floor in floors],
        "floor_parent_cpu_ms_per_call": _ms_per_call(
            statistics.median(floor.parent_cpu_s for floor in floors), size
        ),
        "floor_task_cpu_ms_per_call": _ms_per_call(
            statistics.median(floor.task_cpu_s for floor in floors), size
        ),
        "load_average_1min": load,
    }
    for target in targets:
        done = runs[target.name]
        job_s = statistics.median(run["job_s"] for run in done)
        paired = [run["job_s"] / floor.seconds for run, floor in zip(done, floors, strict=True)]
        entry: dict[str, Any] = {
            "job_s": round(job_s, 4),
            "concurrency": target.concurrency,
            "overhead_ms_per_call": round(overhead_ms(job_s, floor_s, size), 3),
            "vs_floor_pct": round((job_s / floor_s - 1.0) * 100.0, 1),
            "paired_vs_floor_pct": round((statistics.median(paired) - 1.0) * 100.0, 1),
            "server_cpu_ms_per_call": median_of(done, "server_cpu_ms_per_call"),
            "job_process_cpu_ms_per_call": median_of(done, "job_process_cpu_ms_per_call"),
            "phases_median_s": median_phases(done),
            "runs": done,
        }
        if own_floors[target.name]:
            own_floor = statistics.median(own_floors[target.name])
            entry["floor_at_own_concurrency_s"] = round(own_floor, 4)
            entry["floor_at_own_concurrency_runs_s"] = [
                round(value, 4) for value in own_floors[target.name]
            ]
            own_overhead = overhead_ms(job_s, own_floor, size)
            entry["overhead_vs_own_floor_ms_per_call"] = round(own_overhead, 3)
        result[target.name] = entry
    if "peer" in result:
        result["peer_over_ours"] = round(result["peer"]["job_s"] / result["ours"]["job_s"], 3)
    return result


def run_all(
    targets: list[Target], sizes: list[int], workers: int, repeat: int, scratch: Path
) -> dict[str, Any]:
    """The no-op task at every size on every server."""
    script = scratch / TASK_SCRIPT
    script.write_text(NOOP_TASK_SOURCE)
    command = [sys.executable, str(script)]
    results: dict[str, Any] = {}
    with httpx.Client(timeout=REQUEST_TIMEOUT_S, trust_env=False) as client:
        task_ids = {
            target.name: create_task(client, target, " ".join(command)) for target in targets
        }
        for size in sizes:
            results[str(size)] = run_size(
                client, targets, task_ids, command, size, workers, repeat, scratch
            )
    return results


def run_slow_import(
    ours: Target, calls: int, seconds: float, workers: int, repeat: int, scratch: Path
) -> dict[str, Any]:
    """The slow-import task over `calls` images: the spawn floor, our job warm and our job with
    the task's meta opting out of warm starts; medians over `repeat` rounds."""
    script = scratch / SLOW_IMPORT_SCRIPT
    script.write_text(SLOW_IMPORT_TASK_SOURCE)
    dependency = scratch / f"{SLOW_DEPENDENCY_MODULE}.py"
    dependency.write_text(SLOW_DEPENDENCY_SOURCE.format(seconds=seconds))
    command = [sys.executable, str(script)]
    modes = {"warm": {}, "spawn": {"meta_parallel": {"warm_start": False}}}
    floors: list[float] = []
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    with httpx.Client(timeout=REQUEST_TIMEOUT_S, trust_env=False) as client:
        task_id = create_task(client, ours, " ".join(command), SLOW_IMPORT_TASK_NAME)
        for attempt in range(repeat):
            floors.append(measure_floor(command, calls, workers, scratch).seconds)
            progress(f"slow import, N={calls}: floor {floors[-1]:.3f} s ({workers} at a time)")
            for mode, body in modes.items():
                tag = f"slow-{mode}-{attempt}"
                run = run_one_job(client, ours, task_id, calls, tag, body)
                if run["warm"] != (mode == "warm"):
                    raise BenchError(f"[ours] slow import, {mode} job: warm={run['warm']}")
                progress(f"slow import, {mode}: peak PSS {run['peak_pss_mb']} MB")
                runs[mode].append(run)
    result: dict[str, Any] = {
        "calls": calls,
        "import_seconds": seconds,
        "workers": workers,
        "floor_s": round(statistics.median(floors), 4),
        "floor_runs_s": [round(value, 4) for value in floors],
    }
    for mode in modes:
        result[mode] = {
            "job_s": median_of(runs[mode], "job_s"),
            "peak_pss_mb": median_of(runs[mode], "peak_pss_mb"),
            "runs": runs[mode],
        }
    return result


def tasks_core_bodies(python: Path) -> list[dict[str, Any]]:
    """`POST api/v2/task/` bodies of the workflow's tasks, from the installed package's
    manifest, with the fields that both servers take (2.6.4 knows no newer ones)."""
    found = sorted(python.parent.parent.glob("lib/python*/site-packages/fractal_tasks_core"))
    if not found:
        raise BenchError(f"no fractal_tasks_core package next to {python}")
    package = found[-1]
    manifest = json.loads((package / "__FRACTAL_MANIFEST__.json").read_text())
    bodies = []
    for entry in manifest["task_list"]:
        if entry["name"] not in TASKS_CORE_STEPS:
            continue
        body: dict[str, Any] = {
            "name": entry["name"],
            "source": "bench:tasks-core-2.1.0:" + entry["name"].lower().replace(" ", "_"),
            "input_types": entry.get("input_types", {}),
            "output_types": entry.get("output_types", {}),
        }
        for part in ("non_parallel", "parallel"):
            if f"executable_{part}" in entry:
                body[f"command_{part}"] = f"{python} {package / entry[f'executable_{part}']}"
                body[f"meta_{part}"] = entry.get(f"meta_{part}") or {}
        bodies.append(body)
    return bodies


def task_spans(job_dir: Path, target: Target, tasks: int) -> list[float | None]:
    """Seconds from each task's start to its end: from our events (task_started, task_done),
    from 2.6.4's workflow.log (SUBMIT and END of the i-th task)."""
    begins: dict[int, float] = {}
    ends: dict[int, float] = {}
    if target.name == "ours":
        order: dict[int, int] = {}
        for line in (job_dir / "events.jsonl").read_text().splitlines():
            event = json.loads(line)
            if event["type"] in ("task_started", "task_done"):
                index = order.setdefault(event["workflow_task_id"], len(order))
                if event["type"] == "task_started":  # a compound task's parts: from the first
                    begins.setdefault(index, event["time"])
                else:
                    ends[index] = event["time"]
    else:
        lines = (job_dir / "workflow.log").read_text(errors="replace").splitlines()
        for line in lines:
            stamp = _log_time(line)
            for index in range(tasks):
                if stamp is not None and f"SUBMIT {index}-th task" in line:
                    begins.setdefault(index, stamp)
                if stamp is not None and f"END    {index}-th task" in line:
                    ends.setdefault(index, stamp)
    return [
        round(ends[index] - begins[index], 2) if index in begins and index in ends else None
        for index in range(tasks)
    ]


def tasks_core_phases(job_dir: Path, run: JobRun) -> dict[str, float]:
    """Where our job's time went outside the task calls, from the job process's events."""
    events = [json.loads(line) for line in (job_dir / "events.jsonl").read_text().splitlines()]
    times: dict[str, list[float]] = {}
    for event in events:
        times.setdefault(event["type"], []).append(float(event["time"]))
    starts, dones = times.get("task_started", []), times.get("task_done", [])
    if not starts or not dones or "job_started" not in times or "job_done" not in times:
        return {}
    phases = {
        "submit to job process started": times["job_started"][0] - run.submitted_at,
        "job process start to first task": starts[0] - times["job_started"][0],
        "first task start to last task done": dones[-1] - starts[0],
        "last task done to job_done": times["job_done"][0] - dones[-1],
        "job_done to the poll that saw done": run.seen_done_at - times["job_done"][0],
    }
    return {label: round(value, 2) for label, value in phases.items()}


def import_seconds(python: Path, bodies: list[dict[str, Any]]) -> dict[str, float]:
    """What a fresh interpreter pays for a task script's imports before any work: the cost of
    every call that spawns (2.6.4), and of every task's first call warm (ours)."""
    found = {}
    for body in bodies:
        for part in ("non_parallel", "parallel"):
            command = body.get(f"command_{part}")
            if command is None:
                continue
            module = "fractal_tasks_core." + Path(command.split()[-1]).stem
            started = time.perf_counter()
            subprocess.run([str(python), "-c", f"import {module}"], check=True)
            found[module] = round(time.perf_counter() - started, 2)
    return found


def run_tasks_core_job(
    client: httpx.Client,
    target: Target,
    task_ids: dict[str, int],
    folder: Path,
    wells: int,
    wftask_meta: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """One job of the workflow on a fresh plate of `wells` wells; checks that each well's
    projection and features are there."""
    from tests.support.tasks_core import write_synthetic_plate

    zarr_dir = folder / "zarr"
    images = write_synthetic_plate(zarr_dir, wells=wells)
    project = call(client, target, "POST", "/api/v2/project/", {"name": folder.name}, 201)
    base = f"/api/v2/project/{project['id']}"
    dataset = call(
        client,
        target,
        "POST",
        f"{base}/dataset/",
        {"name": "plate", "zarr_dir": str(zarr_dir)},
        201,
    )
    for image in images:
        well = "".join(image.parent.relative_to(image.parent.parent.parent).parts)
        attributes = {"plate": "synthetic.zarr", "well": well}
        body = {"zarr_url": str(image), "attributes": attributes, "types": {"is_3D": True}}
        added = client.post(
            f"{target.url}{base}/dataset/{dataset['id']}/images/",
            json=body,
            headers=target.headers,
        )
        if added.status_code != 201:  # an empty body on ours, null on 2.6.4
            raise BenchError(f"[{target.name}] adding the plate's image: {added.text[:1000]}")
    workflow = call(client, target, "POST", f"{base}/workflow/", {"name": "tasks-core"}, 201)
    for name, wftask in TASKS_CORE_STEPS.items():
        add = f"{base}/workflow/{workflow['id']}/wftask/?task_id={task_ids[name]}"
        call(client, target, "POST", add, {**wftask, **wftask_meta.get(name, {})}, 201)
    run = run_job(client, target, Prepared(project["id"], dataset["id"], workflow["id"]))
    for image in images:
        mip = zarr_dir / "synthetic_mip.zarr" / image.relative_to(zarr_dir / "synthetic.zarr")
        features = mip / "tables/region_props_features"
        if not features.is_dir():
            raise BenchError(f"[{target.name}] the job wrote no feature table at {features}")
    job_dir = Path(run.job["working_dir"])
    return {
        "job_s": round(run.seconds, 3),
        "task_s": task_spans(job_dir, target, len(TASKS_CORE_STEPS)),
        "phases_s": tasks_core_phases(job_dir, run) if target.name == "ours" else {},
        "server_cpu_s": None if run.server_cpu_s is None else round(run.server_cpu_s, 3),
        "peak_pss_mb": run.peak_pss_mb,
        "warm": "warm start" in (run.job.get("log") or ""),
        "kept": "kept from an earlier job" in (run.job.get("log") or ""),
    }


def run_tasks_core(
    targets: list[Target],
    python: Path,
    repeat: int,
    scratch: Path,
    wells: int = 1,
    spawn: bool = False,
) -> dict[str, Any]:
    """The real workflow on every server, `repeat` rounds, the servers taking turns first.
    Ours twice: "ours_first" with no kept starter (killed before the job: the first job of
    the Python, or one after `warm_start_keep_seconds` without any), "ours" with the starter
    that an earlier job left (a rerun). `spawn`: ours also with warm starts off in every
    task's meta ("ours_spawn")."""
    bodies = tasks_core_bodies(python)
    variants: list[tuple[str, Target, dict[str, dict[str, Any]]]] = [
        (target.name, target, {}) for target in targets
    ]
    variants.insert(0, ("ours_first", targets[0], {}))
    if spawn:  # every part of every task opts out of warm starts: a new process per call
        opt_out = {
            body["name"]: {
                f"meta_{part}": {"warm_start": False}
                for part in ("non_parallel", "parallel")
                if body.get(f"command_{part}")
            }
            for body in bodies
        }
        variants.insert(1, ("ours_spawn", targets[0], opt_out))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in variants}
    with httpx.Client(timeout=REQUEST_TIMEOUT_S, trust_env=False) as client:
        task_ids = {
            target.name: {
                body["name"]: int(call(client, target, "POST", "/api/v2/task/", body, 201)["id"])
                for body in bodies
            }
            for target in targets
        }
        for attempt in range(repeat):
            order = variants if attempt % 2 == 0 else list(reversed(variants))
            for name, target, meta in order:
                folder = scratch / f"tasks-core-{name}-{attempt}"
                if name == "ours_first":
                    kill_processes_mentioning(KEPT_STARTER_MARK)
                run = run_tasks_core_job(client, target, task_ids[target.name], folder, wells, meta)
                progress(
                    f"[{name}] fractal-tasks-core workflow, {wells} well(s): "
                    f"{run['job_s']:.2f} s (tasks {run['task_s']} s, warm={run['warm']}, "
                    f"peak PSS {run['peak_pss_mb']} MB, {run['phases_s']})"
                )
                runs[name].append(run)
    result: dict[str, Any] = {
        "python": str(python),
        "wells": wells,
        "tasks": list(TASKS_CORE_STEPS),
        "import_s": import_seconds(python, bodies),
    }
    progress(f"fractal-tasks-core imports in a fresh interpreter (s): {result['import_s']}")
    for name, target_runs in runs.items():
        result[name] = {
            "job_s": median_of(target_runs, "job_s"),
            "peak_pss_mb": median_of(target_runs, "peak_pss_mb"),
            "runs": target_runs,
        }
    if "peer" in result:
        result["peer_over_ours"] = round(result["peer"]["job_s"] / result["ours"]["job_s"], 2)
        first = result["ours_first"]["job_s"]
        result["peer_over_ours_first"] = round(result["peer"]["job_s"] / first, 2)
    if "ours_spawn" in result:
        spawned = result["ours_spawn"]["job_s"]
        result["spawn_over_warm"] = round(spawned / result["ours"]["job_s"], 2)
    return result


def check_tasks_core(result: dict[str, Any]) -> list[dict[str, Any]]:
    checks = []
    plate = f"fractal-tasks-core 2.1.0 workflow, {result['wells']} well(s)"
    if "peer" in result:
        for ours, ratio_key, which in (
            ("ours", "peer_over_ours", "a rerun (kept starter)"),
            ("ours_first", "peer_over_ours_first", "a first job (no kept starter)"),
        ):
            ratio = result[ratio_key]
            checks.append(
                {
                    "target": f"{plate}, {which}: ours at least "
                    f"{TARGET_TASKS_CORE_FACTOR:g}x faster than 2.6.4",
                    "value": f"ours {result[ours]['job_s']:.2f} s, "
                    f"2.6.4 {result['peer']['job_s']:.2f} s ({ratio:.2f}x)",
                    "ok": ratio >= TARGET_TASKS_CORE_FACTOR,
                }
            )
    if "ours_spawn" in result:
        warm, spawned = result["ours"]["peak_pss_mb"], result["ours_spawn"]["peak_pss_mb"]
        checks.append(
            {
                "target": f"{plate}: peak memory warm within "
                f"{TARGET_WARM_MEMORY_FACTOR:g}x of spawning",
                "value": f"{fmt(warm, 1)} MB vs {fmt(spawned, 1)} MB",
                "ok": warm is not None
                and spawned is not None
                and warm <= TARGET_WARM_MEMORY_FACTOR * spawned,
            }
        )
    return checks


# --- the report -----------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def markdown_table(results: dict[str, Any]) -> str:
    header = [
        "N",
        "floor (s)",
        "ours (s)",
        "2.6.4 (s)",
        "ours overhead (ms/call)",
        "2.6.4 overhead (ms/call)",
        "ours vs floor",
        "2.6.4 / ours",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for size, result in results.items():
        ours, peer = result["ours"], result.get("peer")
        ratio = result.get("peer_over_ours")
        cells = [
            f"{int(size):,}",
            fmt(result["floor_s"], 3),
            fmt(ours["job_s"], 3),
            fmt(peer["job_s"] if peer else None, 3),
            fmt(ours["overhead_ms_per_call"], 1),
            fmt(peer["overhead_ms_per_call"] if peer else None, 1),
            f"{ours['vs_floor_pct']:+.0f} %",
            fmt(ratio, 2, "x"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def phases_table(results: dict[str, Any]) -> str:
    """Medians over the rounds, in seconds, of the spans between the marks a job leaves."""
    lines = []
    for size, result in results.items():
        for name in ("ours", "peer"):
            if name in result:
                phases = result[name]["phases_median_s"].items()
                spans = "; ".join(f"{label} {value:.3f}" for label, value in phases)
                lines.append(f"  N={int(size):,} {name}: {spans}")
    return "\n".join(lines)


def cpu_table(results: dict[str, Any]) -> str:
    """CPU time per call (medians over the rounds), from /proc and os.times()."""
    header = [
        "N",
        "task process",
        "floor's parent",
        "ours: job process",
        "ours: Jupyter server",
        "2.6.4: server (with its runner threads)",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for size, result in results.items():
        ours, peer = result["ours"], result.get("peer", {})
        cells = [
            f"{int(size):,}",
            fmt(result["floor_task_cpu_ms_per_call"]),
            fmt(result["floor_parent_cpu_ms_per_call"]),
            fmt(ours["job_process_cpu_ms_per_call"]),
            fmt(ours["server_cpu_ms_per_call"]),
            fmt(peer.get("server_cpu_ms_per_call")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def slow_import_table(result: dict[str, Any]) -> str:
    header = ["run", "job (s)", "vs floor", "peak PSS (MB)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.append(f"| spawn floor | {result['floor_s']:.3f} | 100 % | - |")
    for mode, label in (("warm", "ours, warm"), ("spawn", "ours, a process per call")):
        entry = result[mode]
        share = entry["job_s"] / result["floor_s"] * 100.0
        cells = [label, fmt(entry["job_s"], 3), f"{share:.1f} %", fmt(entry["peak_pss_mb"], 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def check_slow_import(result: dict[str, Any]) -> list[dict[str, Any]]:
    warm, spawn, floor = result["warm"], result["spawn"], result["floor_s"]
    memory_ok = (
        warm["peak_pss_mb"] is not None
        and spawn["peak_pss_mb"] is not None
        and warm["peak_pss_mb"] <= TARGET_WARM_MEMORY_FACTOR * spawn["peak_pss_mb"]
    )
    return [
        {
            "target": f"slow import ({result['import_seconds']:g} s), N={result['calls']}: "
            f"warm job < {TARGET_WARM_FLOOR_FRACTION:.0%} of the spawn floor",
            "value": f"{warm['job_s']:.3f} s vs floor {floor:.3f} s ({warm['job_s'] / floor:.1%})",
            "ok": warm["job_s"] < TARGET_WARM_FLOOR_FRACTION * floor,
        },
        {
            "target": f"slow import: warm job's peak memory <= {TARGET_WARM_MEMORY_FACTOR} x "
            "the spawning job's (PSS)",
            "value": f"{warm['peak_pss_mb']} MB vs {spawn['peak_pss_mb']} MB",
            "ok": memory_ok,
        },
    ]


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    for size, result in results.items():
        ours = result["ours"]
        checks.append(
            {
                "target": f"N={size}: ours (warm) faster than the spawn floor",
                "value": f"{ours['job_s']:.3f} s vs {result['floor_s']:.3f} s",
                "ok": ours["job_s"] < result["floor_s"],
            }
        )
        limit = TARGET_FLOOR_FACTOR * result["floor_s"]
        checks.append(
            {
                "target": f"N={size}: ours <= {TARGET_FLOOR_FACTOR} x floor "
                f"(overhead per call <= 20 % of the floor's time per call)",
                "value": f"{ours['job_s']:.3f} s vs {limit:.3f} s ({ours['vs_floor_pct']:+.0f} %)",
                "ok": ours["job_s"] <= limit,
            }
        )
        if "peer" in result:
            checks.append(
                {
                    "target": f"N={size}: ours not slower end to end than 2.6.4",
                    "value": f"{ours['job_s']:.3f} s vs {result['peer']['job_s']:.3f} s",
                    "ok": ours["job_s"] <= result["peer"]["job_s"],
                }
            )
    return checks


def report(document: dict[str, Any], path: Path | None) -> Path:
    if document.get("results"):
        print()
        print(markdown_table(document["results"]))
        print()
        print("CPU time per call (ms, medians):")
        print(cpu_table(document["results"]))
        print()
        print("Where the time went (medians, s):")
        print(phases_table(document["results"]))
        print()
    if "tasks_core" in document:
        result = document["tasks_core"]
        print(
            "fractal-tasks-core 2.1.0 workflow (medians, s): ours, a rerun (kept starter)",
            result["ours"]["job_s"],
            "; ours, a first job",
            result["ours_first"]["job_s"],
        )
        print("  imports of each task script in a fresh interpreter (s):", result["import_s"])
        if "peer" in result:
            print(
                f"  2.6.4 {result['peer']['job_s']}, 2.6.4 / ours {result['peer_over_ours']}x "
                f"(a rerun), {result['peer_over_ours_first']}x (a first job)"
            )
        print()
    if "slow_import" in document:
        print("Slow import (medians):")
        print(slow_import_table(document["slow_import"]))
        print()
    print("Targets:")
    for check in document["targets"]:
        print(f"  [{'PASS' if check['ok'] else 'FAIL'}] {check['target']}: {check['value']}")
    if path is None:
        path = RESULTS_DIR / f"runner-{document['date']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nResults written to {path}")
    return path


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=lambda text: [int(size) for size in text.split(",")],
        default=list(DEFAULT_SIZES),
        help="comma-separated numbers of images (default: 10,100,1000)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="our local_max_workers and the floor's concurrency (default: the CPU count)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="jobs per size and server; the median is reported (default: 3)",
    )
    parser.add_argument("--no-peer", action="store_true", help="skip fractal-server 2.6.4")
    parser.add_argument(
        "--peer-tasks-per-job",
        type=int,
        default=None,
        help="set meta_parallel.parallel_tasks_per_job on 2.6.4's workflow task: chunks of "
        "that many calls, each chunk waited for (default: unset, all calls at once on 2.6.4's "
        "thread pool of min(32, CPUs + 4))",
    )
    parser.add_argument(
        "--peer-venv",
        type=Path,
        default=None,
        help="an existing venv with fractal-server 2.6.4 (default: <repo>/.peer/venv, "
        "installed on first use)",
    )
    parser.add_argument(
        "--slow-import-calls",
        type=int,
        default=DEFAULT_SLOW_IMPORT_CALLS,
        help="images of the slow-import part, ours only, warm and spawning (default: "
        f"{DEFAULT_SLOW_IMPORT_CALLS}; 0 skips it)",
    )
    parser.add_argument(
        "--slow-import-seconds",
        type=float,
        default=DEFAULT_SLOW_IMPORT_SECONDS,
        help=f"how long the slow task's import takes (default: {DEFAULT_SLOW_IMPORT_SECONDS})",
    )
    parser.add_argument(
        "--tasks-core-python",
        type=Path,
        default=TASKS_CORE_VENV / "bin" / "python" if TASKS_CORE_VENV.exists() else None,
        help="the Python of a venv with fractal-tasks-core 2.1.0 for the real workflow "
        "(default: the end-to-end tests' venv when it exists, else that part is skipped)",
    )
    parser.add_argument(
        "--tasks-core-wells",
        type=int,
        default=1,
        help="wells of the synthetic plate for the real workflow (default: 1, the recipe's)",
    )
    parser.add_argument(
        "--tasks-core-spawn",
        action="store_true",
        help="also run the real workflow on our server with warm starts off (per task meta)",
    )
    parser.add_argument(
        "--tasks-core-only",
        action="store_true",
        help="run only the fractal-tasks-core workflow (no no-op sizes, no slow import)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="where to write the JSON results (default: bench/results/runner-<date>.json)",
    )
    arguments = parser.parse_args(argv)
    numbers = [arguments.workers, arguments.repeat, arguments.tasks_core_wells, *arguments.sizes]
    if arguments.peer_tasks_per_job is not None:
        numbers.append(arguments.peer_tasks_per_job)
    if min(numbers) < 1:
        parser.error("--sizes, --workers, --repeat and --peer-tasks-per-job must be positive")
    return arguments


def guarded(scratch: Path, body: Callable[[], None]) -> int:
    """Run `body`; whatever happens, no process naming `scratch` may outlive it, nor a kept
    warm starter (the memory probe counts every one: none of another run may be there)."""
    kill_processes_mentioning(KEPT_STARTER_MARK)
    try:
        body()
    except KeyboardInterrupt:
        progress("interrupted: servers stopped")
        return 130
    except BenchError as error:
        progress(f"FAILED: {error}")
        return 1
    finally:
        leftovers = kill_processes_mentioning(str(scratch) + "/")
        leftovers += kill_processes_mentioning(KEPT_STARTER_MARK)
        if leftovers:
            progress(f"killed {len(leftovers)} leftover task process(es): {leftovers}")
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


def main(argv: list[str]) -> int:
    arguments = parse_arguments(argv)
    stop_on_signals()
    peer = "fractal-server 2.6.4 (local backend, " + (
        "default configuration)"
        if arguments.peer_tasks_per_job is None
        else f"meta_parallel.parallel_tasks_per_job={arguments.peer_tasks_per_job})"
    )
    document = report_header("bench/runner.py", argv, peer)
    document["settings"] = {
        "workers": arguments.workers,
        "peer_concurrency": None if arguments.no_peer else peer_default_workers(),
        "peer_parallel_tasks_per_job": arguments.peer_tasks_per_job,
        "repeat": arguments.repeat,
        "poll_interval_s": POLL_INTERVAL_S,
        "our_job_poll_interval_s": OUR_JOB_POLL_INTERVAL_S,
        "task_command": f"{sys.executable} <scratch>/{TASK_SCRIPT}",
        "floor": "median of one measurement per round (a round: floor, then one job per "
        "server, the servers taking turns at going first)",
        "target": f"ours job_s <= {TARGET_FLOOR_FACTOR} x floor_s",
    }
    scratch = Path(tempfile.mkdtemp(prefix="fractal-bench-runner-"))

    def body() -> None:
        with contextlib.ExitStack() as stack:
            targets = [stack.enter_context(our_target(arguments.workers))]
            if not arguments.no_peer:
                peer = peer_target(arguments.peer_venv, arguments.peer_tasks_per_job)
                targets.append(stack.enter_context(peer))
            if arguments.tasks_core_python is not None:
                document["tasks_core"] = run_tasks_core(
                    targets,
                    arguments.tasks_core_python,
                    arguments.repeat,
                    scratch,
                    arguments.tasks_core_wells,
                    arguments.tasks_core_spawn,
                )
            if arguments.tasks_core_only:
                document["results"] = {}
                return
            document["results"] = run_all(
                targets, sorted(arguments.sizes), arguments.workers, arguments.repeat, scratch
            )
            if arguments.slow_import_calls:
                document["slow_import"] = run_slow_import(
                    targets[0],
                    arguments.slow_import_calls,
                    arguments.slow_import_seconds,
                    arguments.workers,
                    arguments.repeat,
                    scratch,
                )

    status = guarded(scratch, body)
    if status != 0:
        return status
    document["load_average_after"] = [round(load, 2) for load in os.getloadavg()]
    document["targets"] = check_targets(document["results"])
    if "tasks_core" in document:
        document["targets"] += check_tasks_core(document["tasks_core"])
    if "slow_import" in document:
        document["targets"] += check_slow_import(document["slow_import"])
    report(document, arguments.output)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
