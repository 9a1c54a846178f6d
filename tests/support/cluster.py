"""The real single-node SLURM cluster of the tests, and a Jupyter server running as its user.

`scripts/slurm-cluster.sh` starts munged, slurmctld, slurmd and an sshd on 127.0.0.1:2222 (as
root, installing the Debian packages when missing), all from a private configuration under
`CLUSTER_STATE`: the machine's own SLURM and munge, if any, are left alone. The session fixture
`slurm_cluster` starts it, and stops it at the end only if it was not already running (so a
cluster someone else uses is left alone); where it cannot run (not root), the tests that need
it are skipped with a loud reason. While it runs, `SLURM_CONF` in this process's environment
names the cluster's configuration, so that every SLURM command of the tests, and of the
servers and job processes they start, finds it (the sshd sets it for its sessions).

Jobs must run as the cluster's unprivileged user, never as root. With the `slurm` backend the
job process calls sbatch itself, so the Jupyter server that starts it must be that user's:
`UserServer` is a real `jupyter fractal` process started with `runuser`, its data (database,
job folders) in a folder the user owns, the test identities of tests/conftest.py included.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from fractal_jupyter.demo import DemoServer, free_port, server_command

REPO = Path(__file__).resolve().parents[2]
# Coverage data of the processes that run as the cluster's user (`make coverage-report`).
USER_COVERAGE = REPO / ".coverage-users"
SCRIPT = REPO / "scripts" / "slurm-cluster.sh"
STATE = Path(os.environ.get("CLUSTER_STATE", "/var/lib/fractal-jupyter-test"))
# The user's folders. The machine's checkouts share the cluster and this folder, and test names
# are the same in each: every checkout has its own folder in it, else a test run would remove
# the folders of the same test running at the same time in another checkout (its database
# and job folders, mid-job: the flaky failures of test_a_function_runs_on_slurm).
SHARED_USER_ROOT = Path("/tmp/fractal-slurm-tests")
USER_ROOT = SHARED_USER_ROOT / f"{REPO.name}-{hashlib.sha256(bytes(REPO)).hexdigest()[:8]}"
CANNOT_RUN = 3


@dataclass(frozen=True)
class ClusterInfo:
    user: str
    uid: int
    gid: int
    home: str
    ssh_host: str
    ssh_port: int
    ssh_key: str
    known_hosts: str
    slurm_conf: str
    partition: str
    node_memory_mb: int
    node_cpus: int

    def user_dir(self, name: str) -> Path:
        """A fresh folder owned by the cluster's user (their jobs write there)."""
        SHARED_USER_ROOT.mkdir(mode=0o755, exist_ok=True)
        os.chmod(SHARED_USER_ROOT, 0o1777)
        USER_ROOT.mkdir(mode=0o755, exist_ok=True)
        folder = USER_ROOT / name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(mode=0o755)
        os.chown(folder, self.uid, self.gid)
        return folder

    def as_user(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", self.user, "--", *argv]

    def run_as_user(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.as_user(argv), capture_output=True, text=True, check=False, cwd="/tmp"
        )

    def slurm_settings(self, poll_interval: float = 0.2) -> dict[str, Any]:
        """FractalJupyter traits for this cluster: fast polls, jobs that fit the one node."""
        cpus = max(1, self.node_cpus)
        return {
            "slurm_partition": self.partition,
            "slurm_poll_interval": poll_interval,
            "slurm_default_options": {"cpus_per_task": 1, "mem": "500M"},
            "slurm_batching": {
                "target_cpus_per_job": cpus,
                "max_cpus_per_job": cpus,
                "target_mem_per_job": 500 * cpus,
                "max_mem_per_job": 1000 * cpus,
                "target_num_jobs": 2,
                "max_num_jobs": 4,
            },
            "slurm_python": sys.executable,
            "slurm_unreachable_timeout": 20.0,
        }

    def ssh_settings(self, remote_dir: Path) -> dict[str, Any]:
        return {
            "slurm_ssh_host": self.ssh_host,
            "slurm_ssh_port": self.ssh_port,
            "slurm_ssh_user": self.user,
            "slurm_ssh_key_path": self.ssh_key,
            "slurm_ssh_known_hosts": self.known_hosts,
            "slurm_ssh_remote_dir": str(remote_dir),
            "slurm_ssh_python": sys.executable,
        }


def read_env() -> dict[str, str]:
    values = {}
    for line in (STATE / "env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            values[key] = value
    return values


def cluster_info() -> ClusterInfo:
    env = read_env()
    entry = pwd.getpwnam(env["CI_USER"])
    return ClusterInfo(
        user=env["CI_USER"],
        uid=entry.pw_uid,
        gid=entry.pw_gid,
        home=entry.pw_dir,
        ssh_host=env["CI_SSH_HOST"],
        ssh_port=int(env["CI_SSH_PORT"]),
        ssh_key=env["CI_SSH_KEY"],
        known_hosts=env["CI_SSH_KNOWN_HOSTS"],
        slurm_conf=env["SLURM_CONF"],
        partition=env["SLURM_PARTITION"],
        node_memory_mb=int(env["SLURM_NODE_MEMORY_MB"]),
        node_cpus=int(env["SLURM_NODE_CPUS"]),
    )


_availability: dict[str, Any] = {}


def cluster_available() -> str | None:
    """None when the cluster can be used here, else why not (for skip reasons)."""
    if "reason" not in _availability:
        if os.environ.get("FRACTAL_TEST_DB_URL"):
            reason: str | None = "SLURM tests run on SQLite only (FRACTAL_TEST_DB_URL is set)"
        elif os.geteuid() != 0:
            reason = (
                "*** SKIPPED: the SLURM cluster needs root to start (scripts/slurm-cluster.sh) ***"
            )
        else:
            reason = None
        _availability["reason"] = reason
    return _availability["reason"]  # type: ignore[no-any-return]


def start_cluster() -> subprocess.CompletedProcess[str]:
    """`slurm-cluster.sh start` (a no-op for the daemons that run), its output captured."""
    # The user runs this Python (and the task scripts of the checkout) on the node.
    paths = f"{os.path.realpath(sys.executable)} {REPO / 'tests' / 'tasks' / 'misbehave.py'}"
    return subprocess.run(
        [SCRIPT, "start"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "CLUSTER_USER_PATHS": paths},
    )


def slurm_cluster_fixture() -> Iterator[ClusterInfo]:
    reason = cluster_available()
    if reason is not None:
        pytest.skip(reason)
    was_running = (
        subprocess.run([SCRIPT, "status"], capture_output=True, check=False).returncode == 0
    )
    started = start_cluster()
    if started.returncode == CANNOT_RUN:
        pytest.skip(f"*** SKIPPED: no SLURM cluster here: {started.stderr.strip()[-500:]} ***")
    assert started.returncode == 0, started.stderr
    info = cluster_info()
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = info.slurm_conf
    try:
        yield info
    finally:
        if not was_running:
            subprocess.run([SCRIPT, "stop"], capture_output=True, check=False)
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous


slurm_cluster = pytest.fixture(scope="session", name="slurm_cluster")(slurm_cluster_fixture)


def user_coverage_environment() -> dict[str, str]:
    """When the tests measure coverage, the processes of the cluster's user measure it too.

    They cannot write the test run's data file (root's), so they write their own data files
    in a world-writable folder of the checkout, which `make coverage-report` combines.
    """
    if "COVERAGE_PROCESS_CONFIG" not in os.environ:
        return {}
    USER_COVERAGE.mkdir(exist_ok=True)
    USER_COVERAGE.chmod(0o1777)
    settings = USER_COVERAGE / "coveragerc"
    settings.write_text(
        "[run]\n"
        "branch = true\n"
        "source = fractal_jupyter\n"
        "omit = */fractal_jupyter/db/migrations/*\n"
        "parallel = true\n"
        "patch = subprocess\n"
        f"data_file = {USER_COVERAGE}/.coverage\n"
    )
    settings.chmod(0o644)
    return {"COVERAGE_PROCESS_START": str(settings)}


class UserServer:
    """`jupyter fractal` as the cluster's user, configured with `FractalJupyter` traits."""

    def __init__(self, cluster: ClusterInfo, root: Path, fractal: dict[str, Any]) -> None:
        self.cluster = cluster
        self.root = root
        self.fractal = fractal
        # Words before the command: `outside` as root (e.g. unshare), `inside` as the user
        # (e.g. srun: the server in an allocation, as batchspawner starts it).
        self.outside: list[str] = []
        self.inside: list[str] = []
        self.port = free_port(0)
        self.token = "slurm-test-token"
        self.api = DemoServer(f"http://127.0.0.1:{self.port}/", self.token)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        config_dir = self.root / "config"
        for folder in (config_dir, self.root / "data"):
            folder.mkdir(exist_ok=True)
            os.chown(folder, self.cluster.uid, self.cluster.gid)
        config = {
            "ServerApp": {
                "identity_provider_class": "tests.conftest.HeaderIdentityProvider",
                "allow_unauthenticated_access": False,
                "jpserver_extensions": {"jupyter_server_terminals": False},
            },
            "FractalJupyter": self.fractal,
        }
        for name in ("jupyter_server_config.json", "jupyter_fractal_config.json"):
            (config_dir / name).write_text(json.dumps(config))
        environment = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("COV_", "COVERAGE", "JUPYTER", "PYTEST"))
        }
        environment.update(
            HOME=str(self.root),
            USER=self.cluster.user,
            LOGNAME=self.cluster.user,
            PYTHONPATH=str(REPO),
            JUPYTER_CONFIG_DIR=str(config_dir),
            JUPYTER_DATA_DIR=str(self.root / "jupyter-data"),
            JUPYTER_RUNTIME_DIR=str(self.root / "jupyter-runtime"),
            **user_coverage_environment(),
        )
        command = [
            *self.outside,
            *self.cluster.as_user(
                [*self.inside, *server_command(self.root / "data", self.port, self.token)]
            ),
        ]
        log = (self.root / "server.log").open("ab")
        self.process = subprocess.Popen(
            command,
            stdout=log,
            stderr=log,
            start_new_session=True,
            env=environment,
            cwd=REPO,
        )
        self.api.wait_alive(self.process)

    def cancel_slurm_jobs(self) -> None:
        """scancel what the jobs of this server submitted (after a test failed half-way)."""
        ids = [
            line.strip()
            for record in (self.root / "data").glob("fractal/jobs/*/slurm-jobs.txt")
            for line in record.read_text().splitlines()
            if line.strip()
        ]
        if ids:
            self.cluster.run_as_user(["scancel", *ids])

    def stop(self) -> None:
        if self.process is None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    async def fetch(
        self,
        *parts: str,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> HTTPResponse:
        """What pytest-jupyter's `jp_fetch` does, against this server."""
        url = f"http://127.0.0.1:{self.port}/" + "/".join(part.strip("/") for part in parts)
        if parts and parts[-1].endswith("/"):
            url += "/"
        if params:
            url += "?" + urlencode(params)
        request_headers = {"Authorization": f"token {self.token}", **(headers or {})}
        response: HTTPResponse = await AsyncHTTPClient().fetch(
            url, headers=request_headers, request_timeout=60, **kwargs
        )
        return response


def job_backends() -> list[Any]:
    """pytest params for the end-to-end job tests: local always, SLURM where it can run."""
    reason = cluster_available()
    # `cluster`: `make test` runs these with the end-to-end tests, apart from the quick ones.
    marks = [pytest.mark.cluster, *([pytest.mark.skip(reason=reason)] if reason else [])]
    return [
        "local",
        pytest.param("slurm", marks=marks),
        pytest.param("slurm_ssh", marks=marks),
    ]


def user_server_for(
    backend: str, cluster: ClusterInfo, root: Path, fractal: dict[str, Any]
) -> UserServer:
    """A server as the cluster's user with the `slurm` or `slurm_ssh` backend, data in `root`."""
    config = {**fractal, "runner_backend": backend, **cluster.slurm_settings()}
    if backend == "slurm_ssh":
        key = root / "ssh-key"
        shutil.copyfile(cluster.ssh_key, key)
        os.chown(key, cluster.uid, cluster.gid)
        os.chmod(key, 0o600)
        # The cluster-side job folders: a different folder (files are copied over SFTP) whose
        # path contains the local one, so that a process on the cluster still "mentions" the
        # local job folder for the tests that look for task processes.
        jobs = root / "data" / "fractal" / "jobs"
        remote = root / "remote"
        config.update(cluster.ssh_settings(Path(f"{remote}{jobs}")))
        config["slurm_ssh_key_path"] = str(key)
        known_hosts = root / "known_hosts"
        shutil.copyfile(cluster.known_hosts, known_hosts)
        os.chmod(known_hosts, 0o644)
        config["slurm_ssh_known_hosts"] = str(known_hosts)
        subprocess.run(cluster.as_user(["mkdir", "-p", f"{remote}{jobs}"]), check=True)
    return UserServer(cluster, root, config)
