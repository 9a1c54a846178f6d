"""A hub restarted as systemd restarts its unit, while a job runs (docs/deploy-jupyterhub.md,
section 5).

With LocalProcessSpawner the user servers, their job processes and the jobs' task processes
descend from the hub, and under systemd they all live in the cgroup of `jupyterhub.service`.
The machine need not run systemd: the test makes a cgroup for the unit (cgroup v1, the
`name=systemd` hierarchy systemd itself uses there, or `pids`) and starts the test hub of
scripts/jupyterhub-test.sh in it (FRACTAL_HUB_CGROUP), so that every process it starts
inherits it, with cleanup_servers and cleanup_proxy off (FRACTAL_HUB_KEEP_SERVERS). The
servers run jobs on the `local` backend, on per-user SQLite; the job's first task waits for a
file the test writes, so that it runs exactly as long as the test needs.

- `KillMode=process`: `systemctl restart` signals the hub's main process only, and starts it
  again in the same cgroup; the server and the job go on, and the restarted hub finds the
  server again (the same process, no new spawn). The job ends `done` and its images are there.
- `KillMode=control-group` (systemd's default): every process of the cgroup gets SIGTERM,
  and SIGKILL if still there after a grace time. The server and the job process die; once
  the user starts a server again, the job is `failed`, its log saying why.

Root only (the hub setuids to its users, the test writes cgroups). Skipped, loudly, elsewhere
and where no cgroup v1 hierarchy can be written.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fractal_jupyter.runner.files import read_events
from tests.support.cluster import USER_ROOT
from tests.support.hub import (
    Hub,
    Workspace,
    hub_script,
    new_workspace,
    own_tasks,
    start_hub,
    stop_hub,
    tasks_folder,
    until,
)
from tests.support.jobs import processes_mentioning

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="*** hub restart test needs root (the hub setuids to its users; cgroups) ***",
)

# The cgroup v1 hierarchies that can stand for systemd's: (mount point, its name in
# /proc/<pid>/cgroup). Both list a cgroup's processes in cgroup.procs.
HIERARCHIES = [("/sys/fs/cgroup/systemd", "name=systemd"), ("/sys/fs/cgroup/pids", "pids")]
# One unit per checkout (as the cluster's user folders): a run in another checkout has its own.
UNIT = f"fractal-e2e-{USER_ROOT.name}-jupyterhub.service"
SERVER_CONFIG = {"FractalJupyter": {"runner_backend": "local", "job_poll_interval": 0.2}}
# systemd waits TimeoutStopSec (90 s by default) before SIGKILL; everything here ends at once
STOP_TIMEOUT = 20.0
# The waiting task's limit, should the test never write its file.
TASK_SECONDS = 120


# ---------------------------------------------------------------------------------------------
# The unit's cgroup


@dataclass(frozen=True)
class Cgroup:
    """A cgroup v1 made by the test, standing for a systemd unit's."""

    path: Path
    hierarchy: str  # the hierarchy's name in /proc/<pid>/cgroup

    def pids(self) -> set[int]:
        """The processes in it (exited ones are not listed)."""
        return {int(pid) for pid in (self.path / "cgroup.procs").read_text().split()}

    def holds(self, pid: int) -> bool:
        """Whether /proc/<pid>/cgroup puts `pid` in this cgroup (the check of the premise)."""
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            _, names, path = line.split(":", 2)
            if self.hierarchy in names.split(","):
                return path.endswith(f"/{self.path.name}")
        return False

    def signal_all(self, signum: signal.Signals) -> set[int]:
        """`signum` to every process, again until a pass finds none it has not signalled yet
        (processes forked meanwhile), as systemd does; the pids signalled."""
        done: set[int] = set()
        while new := self.pids() - done:
            for pid in new:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)
                    if signum == signal.SIGTERM:
                        os.kill(pid, signal.SIGCONT)  # systemd's SendSIGCONT=yes
            done |= new
        return done

    def kill_all(self, timeout: float = STOP_TIMEOUT) -> set[int]:
        """The stop of KillMode=control-group: SIGTERM to every process, SIGKILL to those
        left after `timeout` s; the pids signalled. The cgroup is empty afterwards."""
        signalled = self.signal_all(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        deadline = time.monotonic() + 10
        while self.pids():
            assert time.monotonic() < deadline, f"still in {self.path}: {self.pids()}"
            signalled |= self.signal_all(signal.SIGKILL)
            time.sleep(0.1)
        # Their parents died with them: init reaps them. systemd, as init, does so at once;
        # another init may take a second or two, and a hub started meanwhile takes a zombie
        # server for a live one (LocalProcessSpawner polls with kill(pid, 0)) until its
        # http_timeout. Exited processes are no longer listed in the cgroup.
        until(
            "init to reap the unit's processes",
            lambda: not any(zombie(pid) for pid in signalled),
            15,
            0.1,
        )
        return signalled


def unit_cgroup() -> Cgroup:
    """The unit's cgroup, in the first writable cgroup v1 hierarchy; emptied if an interrupted
    run left processes in it. Skips (loudly) when there is none."""
    mounts = {}
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, point, kind, *_ = line.split()
        mounts[point] = kind
    problems = []
    for root, hierarchy in HIERARCHIES:
        if mounts.get(root) != "cgroup":
            problems.append(f"{root} is not a cgroup v1 mount")
            continue
        path = Path(root) / UNIT
        try:
            path.mkdir(exist_ok=True)
        except OSError as error:
            problems.append(f"cannot create {path}: {error}")
            continue
        cgroup = Cgroup(path, hierarchy)
        cgroup.kill_all(timeout=5)
        # can a process be moved into it? (what the hub's launcher does)
        probe = subprocess.Popen(["sleep", "60"])
        try:
            (path / "cgroup.procs").write_text(str(probe.pid))
        except OSError as error:
            problems.append(f"cannot move a process into {path}: {error}")
            continue
        finally:
            probe.kill()
            probe.wait()
        return cgroup
    pytest.skip(f"*** hub restart test: no writable cgroup v1 hierarchy: {'; '.join(problems)} ***")


# ---------------------------------------------------------------------------------------------
# Processes


def _stat(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name (state, ppid, ...); [] once reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def alive(pid: int) -> bool:
    """Running: neither gone nor a zombie."""
    return _stat(pid)[:1] not in ([], ["Z"])


def zombie(pid: int) -> bool:
    """Exited, not reaped yet."""
    return _stat(pid)[:1] == ["Z"]


def started_at(pid: int) -> int:
    """The process's start time (clock ticks since boot): a pid reused would differ."""
    return int(_stat(pid)[19])


def hub_pid(hub: Hub) -> int:
    """The hub's main process (its own pid file)."""
    return int(Path(hub.env["HUB_LOG"]).with_name("jupyterhub.pid").read_text())


def server_pid(hub: Hub, user: str) -> int:
    """The pid of `user`'s server, as the hub records it (LocalProcessSpawner's state)."""
    server = hub.server_state(user)
    assert server and server["ready"], f"{user}'s server is not running: {server}"
    pid: int = server["state"]["pid"]
    return pid


@dataclass
class Alice:
    """Alice's workspace (an empty workflow) and her tasks, made for one run of the module."""

    space: Workspace
    tasks: dict[str, dict[str, Any]]
    run: str


@dataclass
class RunningJob:
    """A job of the test, its first task waiting for `release` to exist."""

    job: dict[str, Any]
    release: Path
    pid: int  # the job process
    tasks: list[int]  # the waiting task's process


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def unit() -> Iterator[Cgroup]:
    cgroup = unit_cgroup()
    try:
        yield cgroup
    finally:
        cgroup.kill_all(timeout=5)  # the jobs the hub's stop leaves
        with contextlib.suppress(OSError):
            cgroup.path.rmdir()


@pytest.fixture(scope="module")
def hub(unit: Cgroup) -> Iterator[Hub]:
    hub = start_hub(
        {
            "FRACTAL_HUB_SERVER_CONFIG": json.dumps(SERVER_CONFIG),
            "FRACTAL_HUB_KEEP_SERVERS": "1",  # cleanup_servers, cleanup_proxy False
            "FRACTAL_HUB_CGROUP": str(unit.path),
        }
    )
    try:
        yield hub
    finally:
        stop_hub()


@pytest.fixture(scope="module")
def alice(hub: Hub) -> Iterator[Alice]:
    """Alice's server started through the hub, her tasks and a workspace of hers."""
    hub.start_servers("alice")
    server = hub.server("alice")
    run = uuid.uuid4().hex[:8]
    alice = Alice(new_workspace(server, run), own_tasks(hub, server, "alice"), run)
    yield alice
    shutil.rmtree(alice.space.zarr_dir, ignore_errors=True)
    for release in tasks_folder(hub).glob(f"release-{run}-*"):
        release.unlink()


def start_waiting_job(hub: Hub, unit: Cgroup, alice: Alice, plate: str) -> RunningJob:
    """Submit a job whose first task waits for a file, its second makes plate `plate`; return
    once the waiting task runs, having checked the premise: the hub, the proxy, the server,
    the job process and its task process are all in the unit's cgroup."""
    release = tasks_folder(hub) / f"release-{alice.run}-{plate}"
    waiting = {"seconds": TASK_SECONDS, "until_file": str(release)}
    workflow = alice.space.add_workflow(
        plate,
        [
            # spawned, not forked from a warm starter: its command line names the job folder
            (
                alice.tasks["Sleep"],
                {"args_non_parallel": waiting, "meta_non_parallel": {"warm_start": False}},
            ),
            (
                alice.tasks["Create demo plate"],
                {"args_non_parallel": {"plate_name": plate, "rows": "B", "columns": 1}},
            ),
        ],
    )
    job = alice.space.submit(workflow)
    folder = Path(job["working_dir"])

    def waiting_task() -> list[int]:
        # task command lines name their argument files, in the job folder
        found = processes_mentioning(f" {folder}/")
        if not found:
            state = alice.space.job(job["id"])
            assert state["status"] == "submitted", f"job {job['id']}: {state['log']}"
        return found

    tasks = until(f"job {job['id']}'s waiting task", waiting_task, 60)
    assert alice.space.job(job["id"])["status"] == "submitted"
    started = [event for event in read_events(folder) if event["type"] == "job_started"]
    assert started, f"no job_started event in {folder}"
    pid = started[0]["pid"]
    proxy = int(Path(hub.env["HUB_LOG"]).with_name("jupyterhub-proxy.pid").read_text())
    members = {
        "the hub": hub_pid(hub),
        "the proxy": proxy,
        "alice's server": server_pid(hub, "alice"),
        "the job process": pid,
        **{f"the task process {task}": task for task in tasks},
    }
    listed = unit.pids()
    for what, member in members.items():
        assert unit.holds(member), f"{what} (pid {member}) is not in {unit.path}"
        assert member in listed, f"{what} (pid {member}) not in {unit.path}/cgroup.procs"
    return RunningJob(job, release, pid, tasks)


# ---------------------------------------------------------------------------------------------
# The checks


def test_restart_with_killmode_process_keeps_server_and_job(
    hub: Hub, unit: Cgroup, alice: Alice
) -> None:
    """The set-up of section 5: the hub alone restarts; the server and its job go on."""
    space = alice.space
    running = start_waiting_job(hub, unit, alice, "process.zarr")
    old_hub, server = hub_pid(hub), server_pid(hub, "alice")
    server_start, job_start = started_at(server), started_at(running.pid)

    # `systemctl restart jupyterhub` with KillMode=process: SIGTERM to the main process only,
    # then the unit starts again (in the same cgroup, its left-over processes kept)
    values = hub_script("restart")
    assert values == hub.env, "the restarted hub has other ports or secrets"
    assert not alive(old_hub), f"the hub's old process {old_hub} still runs"
    new_hub = hub_pid(hub)
    assert new_hub != old_hub and unit.holds(new_hub)

    # the restarted hub found the server again: the same process, not a new spawn
    assert server_pid(hub, "alice") == server and started_at(server) == server_start
    assert alive(running.pid) and started_at(running.pid) == job_start
    assert all(alive(task) for task in running.tasks), "the task ended with the hub"
    # ... and routes to it (the new proxy's routes come from the hub, as it starts): the job,
    # through the new hub's proxy, still runs
    until(
        "alice's server through the restarted hub",
        lambda: space.server.call("GET", "api/alive/")[0] == 200,
        30,
    )
    assert space.job(running.job["id"])["status"] == "submitted"

    running.release.touch()
    ended = space.wait(running.job["id"])
    assert ended["status"] == "done", ended["log"]
    assert space.images({"plate": "process.zarr"})["total_count"] == 2  # fields: 2 by default
    assert server_pid(hub, "alice") == server, "the server was spawned again"
    log = Path(hub.env["HUB_LOG"]).read_text()
    assert "Leaving single-user servers running" in log
    assert "alice still running" in log


def test_restart_with_killmode_control_group_fails_the_running_job(
    hub: Hub, unit: Cgroup, alice: Alice
) -> None:
    """Why section 5 asks for KillMode=process: the default kills the servers and jobs."""
    space = alice.space
    if not (hub.server_state("alice") or {}).get("ready"):
        hub.start_servers("alice")
    running = start_waiting_job(hub, unit, alice, "control-group.zarr")
    old_hub, server = hub_pid(hub), server_pid(hub, "alice")

    # `systemctl restart jupyterhub` with KillMode=control-group: the stop signals every
    # process of the unit's cgroup; then the unit starts again
    signalled = unit.kill_all()
    assert {old_hub, server, running.pid, *running.tasks} <= signalled
    assert not alive(running.pid) and not any(alive(pid) for pid in running.tasks)
    hub_script("restart")
    assert unit.holds(hub_pid(hub))
    # the hub finds the server gone (cleanup_servers False or not, it died with the unit)
    until("the hub to drop alice's dead server", lambda: hub.server_state("alice") is None, 30)

    # the user starts a server again; it sees the job process gone
    hub.start_servers("alice")
    assert server_pid(hub, "alice") != server
    ended = space.wait(running.job["id"])
    assert ended["status"] == "failed", ended
    # Every process of the unit gets its SIGTERM at once, so the job's log says which end
    # came first: the job process's own (it reports that it was signalled), its task's (the
    # job process, still up, reports the call killed), or none (the job process died before
    # it could report: the server finds it gone).
    reasons = (
        "got SIGTERM without a stop of its user",
        "the task process was killed by SIGTERM",
        "ended without reporting the end of the job",
    )
    assert any(reason in ended["log"] for reason in reasons), ended["log"]
    assert space.images({"plate": "control-group.zarr"})["total_count"] == 0
