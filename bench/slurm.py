"""SLURM benchmark: a no-op parallel task over N images on the local test cluster.

As root, from the repository root:

    .venv/bin/python bench/slurm.py [--images 1000] [--backends slurm_ssh,slurm]
                                    [--batching node|defaults|'{"max_num_jobs": ...}']
                                    [--repeat R] [--poll-interval S] [--latency-jobs K]
                                    [--output PATH]

The cluster is `scripts/slurm-cluster.sh` (started if it is not up, and then stopped at the
end; left alone if it was up). For each backend: our Jupyter server with that backend, a
dataset of N images (zarr_urls only), a workflow with one parallel no-op task, a submission,
and the time from the submit request to the first poll (every 50 ms) that sees "done".

- `slurm_ssh`: the server (root here) logs in as the cluster's unprivileged user over SSH
  (127.0.0.1:2222, a key): the SLURM jobs, the worker and the task processes run as that
  user, with Debian's /usr/bin/python3 and this checkout on PYTHONPATH (the remote worker and
  the no-op task need nothing else).
- `slurm`: the server calls sbatch itself; it runs as root here, so its jobs do too.

Measured by the script itself, around the jobs:
- SLURM's start latency: K tiny jobs (`--wrap 'date +%s%N'`), one after the other, as the
  cluster user; sbatch to the job's first instruction, and to the poll (every 20 ms) that sees
  it COMPLETED;
- the SLURM floor of the job: as many trivial sbatch jobs as our job submitted, with the same
  resources, all at once; the time until a poll sees all of them COMPLETED;
- the compute floor: the N no-op task processes, as many at a time as the SLURM jobs run
  calls at once, on this machine without SLURM (the cost of the processes alone).
Each of R rounds measures both floors, then runs one job per backend (the backends taking
turns at going first), so that the load of the machine (it may be shared) weighs on a round's
floor and jobs alike. The floor of the job is the SLURM floor plus the compute floor. The
number of sbatch submissions is read from the job folder (`slurm-jobs.txt`, one per sbatch).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO_ROOT, BenchError, OurServer, progress, report_header
from bench.common import stop_on_signals as _stop_on_signals
from bench.runner import (
    NOOP_TASK_SOURCE,
    TASK_SCRIPT,
    TASKS_CORE_VENV,
    Target,
    call_log_files,
    create_task,
    kill_processes_mentioning,
    measure_floor,
    our_phases,
    prepare,
    run_job,
    run_tasks_core,
)
from fractal_jupyter.runner.batching import BatchingLimits, heuristics

CLUSTER_SCRIPT = REPO_ROOT / "scripts" / "slurm-cluster.sh"
CLUSTER_ENV = Path(os.environ.get("CLUSTER_STATE", "/var/lib/fractal-jupyter-test")) / "env"
RESULTS_DIR = REPO_ROOT / "bench" / "results"
REQUEST_TIMEOUT_S = 120.0
NODE_PYTHON = "/usr/bin/python3"  # Debian's: the cluster user can run it (ours is root's)
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}
# The defaults of the server (slurm_default_options): what each call asks for.
CPUS_PER_TASK = 1
MEM_PER_TASK_MB = 1000
PRESETS: dict[str, dict[str, int]] = {
    # Jobs the size of one CPU, as many as the node runs at once: few submissions.
    "node": {
        "target_cpus_per_job": 1,
        "max_cpus_per_job": 1,
        "target_num_jobs": 2,
        "max_num_jobs": 2,
    },
    # 2.6.4's default targets, with the CPUs per job capped at the node's (2): many jobs.
    "defaults": {"target_cpus_per_job": 2, "max_cpus_per_job": 2},
}


# --- the cluster ----------------------------------------------------------------------------


def read_env(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            values[key] = value
    return values


@contextlib.contextmanager
def cluster() -> Iterator[dict[str, str]]:
    """The test cluster's env; started (and then stopped) only if it was not up."""
    if os.geteuid() != 0:
        raise BenchError("bench/slurm.py starts the test cluster: run it as root")
    up = subprocess.run(["bash", str(CLUSTER_SCRIPT), "status"], capture_output=True).returncode
    if up != 0:
        progress("starting the test cluster (scripts/slurm-cluster.sh start)")
        subprocess.run(["bash", str(CLUSTER_SCRIPT), "start"], check=True)
    env = read_env(CLUSTER_ENV)
    # The cluster's private configuration, for our squeue and everything the server starts.
    os.environ["SLURM_CONF"] = env["SLURM_CONF"]
    try:
        yield env
    finally:
        if up != 0:
            subprocess.run(["bash", str(CLUSTER_SCRIPT), "stop"], check=False)


def as_user(user: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", user, "--", *argv], capture_output=True, text=True, check=False
    )


def squeue_states(ids: list[str]) -> dict[str, str]:
    result = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%i %T", "-j", ",".join(ids)],
        capture_output=True,
        text=True,
        check=False,
    )
    states = {}
    for line in result.stdout.splitlines():
        job_id, _, state = line.strip().partition(" ")
        states[job_id] = state
    return states


def sbatch(user: str, options: list[str], wrap: str) -> str:
    result = as_user(user, ["sbatch", "--parsable", *options, "--wrap", wrap])
    if result.returncode != 0:
        raise BenchError(f"sbatch failed: {result.stderr.strip()}")
    return result.stdout.strip().split(";")[0]


def start_latency(user: str, folder: str, jobs: int) -> dict[str, Any]:
    """K tiny jobs one after the other: sbatch -> first instruction, and -> COMPLETED seen."""
    starts, dones = [], []
    for _ in range(jobs):
        submitted = time.time()
        job_id = sbatch(user, ["-o", f"{folder}/lat-%j.out"], "date +%s%N")
        while squeue_states([job_id]).get(job_id) not in ENDED:
            time.sleep(0.02)
        dones.append(time.time() - submitted)
        started_ns = int(Path(f"{folder}/lat-{job_id}.out").read_text().split()[0])
        starts.append(started_ns / 1e9 - submitted)
    progress(f"SLURM start latency: median {statistics.median(starts) * 1000:.0f} ms")
    return {
        "jobs": jobs,
        "start_ms": sorted(round(s * 1000, 1) for s in starts),
        "start_median_ms": round(statistics.median(starts) * 1000, 1),
        "completed_seen_median_ms": round(statistics.median(dones) * 1000, 1),
    }


def slurm_floor(user: str, folder: str, jobs: int, ntasks: int) -> float:
    """`jobs` trivial sbatch jobs with our jobs' resources, all at once: until all COMPLETED."""
    options = [
        "--nodes=1",
        f"--ntasks={ntasks}",
        f"--cpus-per-task={CPUS_PER_TASK}",
        f"--mem={ntasks * MEM_PER_TASK_MB}M",
        "-o",
        f"{folder}/floor-%j.out",
    ]
    started = time.perf_counter()
    ids = [sbatch(user, options, "true") for _ in range(jobs)]
    while True:
        states = squeue_states(ids)
        if all(states.get(job_id) in ENDED for job_id in ids):
            break
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    bad = {job_id: state for job_id, state in states.items() if state != "COMPLETED"}
    if bad:
        raise BenchError(f"floor jobs did not complete: {bad}")
    return seconds


# --- our server -----------------------------------------------------------------------------


class SlurmServer(OurServer):
    def __init__(self, backend: str, env: dict[str, str], options: dict[str, Any]) -> None:
        super().__init__()
        self.backend = backend
        self.env = env
        self.options = options

    def _command(self) -> list[str]:
        o = self.options
        extra = [
            f"--FractalJupyter.runner_backend={self.backend}",
            f"--FractalJupyter.slurm_batching={json.dumps(o['batching'])}",
            f"--FractalJupyter.slurm_poll_interval={o['poll_interval']}",
            f"--FractalJupyter.slurm_partition={self.env.get('SLURM_PARTITION', '')}",
        ]
        if self.backend == "slurm_ssh":
            extra += [
                f"--FractalJupyter.slurm_ssh_host={self.env['CI_SSH_HOST']}",
                f"--FractalJupyter.slurm_ssh_port={self.env['CI_SSH_PORT']}",
                f"--FractalJupyter.slurm_ssh_user={self.env['CI_USER']}",
                f"--FractalJupyter.slurm_ssh_key_path={self.env['CI_SSH_KEY']}",
                f"--FractalJupyter.slurm_ssh_known_hosts={self.env['CI_SSH_KNOWN_HOSTS']}",
                f"--FractalJupyter.slurm_ssh_remote_dir={o['remote_dir']}",
                f"--FractalJupyter.slurm_ssh_python={NODE_PYTHON}",
                f"--FractalJupyter.slurm_worker_init=export PYTHONPATH={REPO_ROOT}",
            ]
        return [*super()._command(), *extra]


@contextlib.contextmanager
def started(server: SlurmServer) -> Iterator[tuple[SlurmServer, Target, int]]:
    """The server, its target, and the id of the no-op task on it."""
    try:
        server.start()
        target = Target("ours", server.url, server.headers, server.pid, 1)
        with httpx.Client(timeout=REQUEST_TIMEOUT_S, trust_env=False) as client:
            task_id = create_task(client, target, server.options["task_command"])
        yield server, target, task_id
    finally:
        group = server.process.pid if server.process is not None else None
        kill_processes_mentioning(str(server.workdir) + "/", spare_group=group)
        server.stop()


def one_job(target: Target, task_id: int, images: int, tag: str) -> dict[str, Any]:
    with httpx.Client(timeout=REQUEST_TIMEOUT_S, trust_env=False) as client:
        prepared = prepare(client, target, task_id, images, tag)
        run = run_job(client, target, prepared)
    job_dir = Path(run.job["working_dir"])
    submissions = len((job_dir / "slurm-jobs.txt").read_text().split())
    logs = call_log_files(job_dir)
    if logs != images:
        raise BenchError(f"[{tag}] {logs} per-call logs, expected {images}")
    progress(f"[{tag}] N={images}: {run.seconds:.2f} s, {submissions} sbatch, {logs} call logs")
    return {
        "job_s": round(run.seconds, 3),
        "sbatch_submissions": submissions,
        "call_log_files": logs,
        "phases_s": our_phases(job_dir, run),
    }


def one_round(
    user: str, work: str, scratch: Path, images: int, jobs: int, parallel: int, at_once: int
) -> dict[str, float]:
    """The SLURM floor (our number of trivial jobs) and the compute floor (the calls alone)."""
    slurm_s = slurm_floor(user, work, jobs, parallel)
    command = [NODE_PYTHON, str(scratch / TASK_SCRIPT)]
    compute_s = measure_floor(command, images, at_once, scratch).seconds
    progress(
        f"floor: SLURM ({jobs} jobs) {slurm_s:.2f} s, compute ({at_once} at a time) "
        f"{compute_s:.2f} s"
    )
    return {
        "slurm_floor_s": round(slurm_s, 3),
        "compute_floor_s": round(compute_s, 3),
        "floor_s": round(slurm_s + compute_s, 3),
    }


def run_rounds(
    env: dict[str, str], work: str, scratch: Path, arguments: argparse.Namespace
) -> dict[str, Any]:
    """R rounds, each: the floors, then one job per backend (taking turns at going first), so
    that a change of the machine's load weighs on the floor and the jobs of a round alike."""
    user = env["CI_USER"]
    limits = BatchingLimits.from_dict(arguments.limits)
    tasks_per_job, parallel = heuristics(arguments.images, limits, CPUS_PER_TASK, MEM_PER_TASK_MB)
    jobs = math.ceil(arguments.images / tasks_per_job)
    # How many calls run at once: `parallel` per job, as many jobs as fit the node.
    node_cpus = int(env.get("SLURM_NODE_CPUS") or os.cpu_count() or 1)
    at_once = max(1, min(jobs, node_cpus // parallel) * parallel)
    rounds: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        servers = {}
        for backend in arguments.backends:
            options = {
                "batching": arguments.limits,
                "poll_interval": arguments.poll_interval,
                "remote_dir": f"{work}/jobs-{backend}",
                "task_command": f"{NODE_PYTHON} {scratch / TASK_SCRIPT}",
            }
            servers[backend] = stack.enter_context(started(SlurmServer(backend, env, options)))
        for number in range(arguments.repeat):
            entry: dict[str, Any] = dict(
                one_round(user, work, scratch, arguments.images, jobs, parallel, at_once)
            )
            entry["load_average_1min"] = round(os.getloadavg()[0], 2)
            turn = number % len(arguments.backends)
            for backend in arguments.backends[turn:] + arguments.backends[:turn]:
                _, target, task_id = servers[backend]
                entry[backend] = one_job(target, task_id, arguments.images, f"{backend}-{number}")
            rounds.append(entry)
    results: dict[str, Any] = {
        "heuristic": {
            "tasks_per_job": tasks_per_job,
            "parallel_tasks_per_job": parallel,
            "sbatch_jobs": jobs,
            "calls_at_once": at_once,
        },
        "rounds": rounds,
    }
    for key in ("slurm_floor_s", "compute_floor_s", "floor_s"):
        results[key] = round(statistics.median(entry[key] for entry in rounds), 3)
    for backend in arguments.backends:
        job_s = statistics.median(entry[backend]["job_s"] for entry in rounds)
        paired = statistics.median(entry[backend]["job_s"] - entry["floor_s"] for entry in rounds)
        results[backend] = {
            "job_s": round(job_s, 3),
            "sbatch_submissions": rounds[0][backend]["sbatch_submissions"],
            "over_floor_paired_median_s": round(paired, 3),
            "over_floor_ms_per_call": round(paired / arguments.images * 1000, 2),
        }
    return results


def run_tasks_core_on_slurm(
    env: dict[str, str], work: str, scratch: Path, arguments: argparse.Namespace
) -> dict[str, Any]:
    """The real fractal-tasks-core workflow (bench/runner.py) on the `slurm` backend, warm
    against a new process per call, `repeat` rounds taking turns."""
    options = {
        "batching": arguments.limits,
        "poll_interval": arguments.poll_interval,
        "remote_dir": f"{work}/jobs-slurm",
    }
    server = SlurmServer("slurm", env, options)
    try:
        server.start()
        target = Target("ours", server.url, server.headers, server.pid, 1)
        return run_tasks_core(
            [target],
            arguments.tasks_core_python,
            arguments.repeat,
            scratch,
            wells=arguments.tasks_core_wells,
            spawn=True,
        )
    finally:
        group = server.process.pid if server.process is not None else None
        kill_processes_mentioning(str(server.workdir) + "/", spare_group=group)
        server.stop()


def batching_of(text: str) -> dict[str, int]:
    if text in PRESETS:
        return PRESETS[text]
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise SystemExit(f"--batching: a preset ({', '.join(PRESETS)}) or a JSON object") from None
    if not isinstance(value, dict):
        raise SystemExit("--batching: a JSON object")
    return value


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1_000)
    parser.add_argument("--backends", default="slurm_ssh,slurm")
    parser.add_argument("--batching", default="node", help="preset name or JSON limits")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--latency-jobs", type=int, default=10)
    parser.add_argument("--output", type=Path)
    parser.add_argument(
        "--tasks-core-wells",
        type=int,
        default=0,
        help="instead of the no-op task: the real fractal-tasks-core 2.1.0 workflow of "
        "bench/runner.py on a synthetic plate of this many wells, on the `slurm` backend, "
        "warm against warm starts off",
    )
    parser.add_argument(
        "--tasks-core-python",
        type=Path,
        default=TASKS_CORE_VENV / "bin" / "python",
        help="the Python of a venv with fractal-tasks-core 2.1.0 (default: the end-to-end "
        "tests' venv)",
    )
    arguments = parser.parse_args(argv)
    arguments.backends = [b for b in arguments.backends.split(",") if b]
    unknown = set(arguments.backends) - {"slurm", "slurm_ssh"}
    if unknown:
        parser.error(f"unknown backend(s) {sorted(unknown)}")
    arguments.limits = batching_of(arguments.batching)
    return arguments


def main(argv: list[str]) -> int:
    arguments = parse_arguments(argv)
    _stop_on_signals()
    document = report_header("bench/slurm.py", argv, "none (SLURM's own latency is the floor)")
    document["settings"] = {
        "images": arguments.images,
        "backends": arguments.backends,
        "batching": arguments.limits,
        "per_call": {"cpus_per_task": CPUS_PER_TASK, "mem_mb": MEM_PER_TASK_MB},
        "slurm_poll_interval_s": arguments.poll_interval,
        "repeat": arguments.repeat,
        "task_command": f"{NODE_PYTHON} <scratch>/{TASK_SCRIPT}",
    }
    scratch = Path(tempfile.mkdtemp(prefix="fractal-bench-slurm-"))
    scratch.chmod(0o755)  # the cluster user runs the task script from here
    (scratch / TASK_SCRIPT).write_text(NOOP_TASK_SOURCE)
    status = 0
    try:
        with cluster() as env:
            user = env["CI_USER"]
            work = f"{pwd.getpwnam(user).pw_dir}/fractal-bench-slurm-{os.getpid()}"
            as_user(user, ["mkdir", "-p", work])
            try:
                document["cluster"] = {
                    key: env.get(key) for key in ("SLURM_NODE_CPUS", "SLURM_NODE_MEMORY_MB")
                }
                if arguments.tasks_core_wells:
                    document["tasks_core"] = run_tasks_core_on_slurm(env, work, scratch, arguments)
                else:
                    document["latency"] = start_latency(user, work, arguments.latency_jobs)
                    document["results"] = run_rounds(env, work, scratch, arguments)
            finally:
                as_user(user, ["rm", "-rf", work])
    except KeyboardInterrupt:
        progress("interrupted")
        status = 130
    except BenchError as error:
        progress(f"FAILED: {error}")
        status = 1
    finally:
        kill_processes_mentioning(str(scratch) + "/")
        shutil.rmtree(scratch, ignore_errors=True)
    if status:
        return status
    document["load_average_after"] = [round(load, 2) for load in os.getloadavg()]
    output = arguments.output or RESULTS_DIR / f"slurm-{datetime.date.today().isoformat()}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n")
    print(summary(document))
    progress(f"results: {output}")
    return 0


def summary(document: dict[str, Any]) -> str:
    if "tasks_core" in document:
        result = document["tasks_core"]
        warm, spawned = result["ours"], result["ours_spawn"]
        return (
            f"fractal-tasks-core 2.1.0 workflow, {result['wells']} well(s), slurm backend "
            f"(medians): warm {warm['job_s']:.2f} s, a new process per call "
            f"{spawned['job_s']:.2f} s ({result['spawn_over_warm']:.2f}x); peak PSS "
            f"{warm['peak_pss_mb']} MB vs {spawned['peak_pss_mb']} MB"
        )
    results = document["results"]
    latency = document["latency"]
    lines = [
        f"N={document['settings']['images']}, batching {results['heuristic']}",
        f"SLURM start latency (median of {latency['jobs']}): {latency['start_median_ms']:.0f} ms"
        f"; completed seen {latency['completed_seen_median_ms']:.0f} ms",
        f"floor (medians): SLURM {results['slurm_floor_s']:.2f} s + compute "
        f"{results['compute_floor_s']:.2f} s = {results['floor_s']:.2f} s",
    ]
    for backend in document["settings"]["backends"]:
        result = results[backend]
        lines.append(
            f"{backend}: {result['job_s']:.2f} s submit-to-done, "
            f"{result['sbatch_submissions']} sbatch, {result['over_floor_paired_median_s']:+.2f} s"
            f" over the floor of its round ({result['over_floor_ms_per_call']:+.1f} ms per call)"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
