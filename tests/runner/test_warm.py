"""Warm task starts (runner/warm.py): calls forked from a starter end as spawned calls do."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from fractal_jupyter.runner import warm_starter
from fractal_jupyter.runner.call import run_call, task_environment
from fractal_jupyter.runner.interface import JSON, TaskCall, TaskFailed
from fractal_jupyter.runner.local import LocalExecutor
from fractal_jupyter.runner.warm import WarmStarters, warm_script
from tests.support.jobs import processes_mentioning, wait_for

TASKS = Path(__file__).resolve().parents[1] / "tasks"
PROBE = f"{sys.executable} {TASKS / 'warm_probe.py'}"
SECOND = f"{sys.executable} {TASKS / 'warm_second.py'}"
IMPORT_FAILS = f"{sys.executable} {TASKS / 'warm_import_fails.py'}"


class Notes(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def notes() -> Notes:
    return Notes()


@pytest.fixture
def imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file where the probe task records each import of itself as a module."""
    path = tmp_path / "imports.txt"
    path.touch()
    monkeypatch.setenv("WARM_PROBE_IMPORTS", str(path))
    return path


def running(pid: int) -> bool:
    """True while the process runs (an orphan's zombie may wait long for its reaper)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def make_calls(
    count: int, args: JSON | None = None, meta: JSON | None = None, command: str = PROBE
) -> list[TaskCall]:
    return [
        TaskCall(
            1,
            "probe",
            command,
            dict(args or {}),
            "1_probe",
            f"1_par_{i:07d}",
            "parallel",
            meta or {},
        )
        for i in range(count)
    ]


OPEN_EXECUTORS: list[LocalExecutor] = []


@pytest.fixture(autouse=True)
def close_executors() -> Iterator[None]:
    """A job's end: its executor's starters end."""
    yield
    while OPEN_EXECUTORS:
        OPEN_EXECUTORS.pop().close()


def executor(
    job_dir: Path,
    notes: Notes,
    *,
    warm: bool = True,
    workers: int = 2,
    planned: Sequence[str] = (),
    keep_seconds: float = 0.0,
    keep_dir: Path | None = None,
) -> LocalExecutor:
    log = logging.getLogger(f"test_warm.{id(notes)}")
    log.setLevel(logging.INFO)
    log.addHandler(notes)
    local = LocalExecutor(
        job_dir,
        workers,
        warm_start=warm,
        planned_commands=planned,
        keep_seconds=keep_seconds,
        keep_dir=keep_dir,
        log=log,
    )
    OPEN_EXECUTORS.append(local)
    return local


def outcome(job_dir: Path, calls: list[TaskCall], warm: bool, notes: Notes) -> Any:
    """What running the calls gives: their outputs, or the failure's reason and log tail."""
    try:
        return executor(job_dir, notes, warm=warm).run_calls(calls)
    except TaskFailed as error:
        return error.reason, error.log_tail.replace(str(job_dir), "<job>")


def test_calls_fork_from_one_import_and_each_sees_a_fresh_module(
    tmp_path: Path, notes: Notes, imports: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARM_PROBE_MARK", "from the environment")
    outputs = executor(tmp_path, notes).run_calls(make_calls(6))
    probes = [output["probe"] for output in outputs if output is not None]
    # One import, by the starter; six processes of their own; a module global that each call
    # appends to is empty again in every call.
    [importer] = imports.read_text().split()
    assert len({probe["pid"] for probe in probes} | {int(importer)}) == 7
    assert [probe["calls_seen"] for probe in probes] == [1] * 6
    assert all(probe["gc_enabled"] for probe in probes)  # the starter's is off, not theirs
    # argv, working directory and environment as for a spawned call
    assert probes[2]["argv"] == [
        str(TASKS / "warm_probe.py"),
        "--args-json",
        str(tmp_path / "1_probe" / "1_par_0000002.args.json"),
        "--out-json",
        str(tmp_path / "1_probe" / "1_par_0000002.metadiff.json"),
    ]
    assert probes[2]["cwd"] == os.getcwd() and probes[2]["mark"] == "from the environment"
    assert (tmp_path / "1_probe" / "1_par_0000005.log").read_text().startswith("probe state")
    [note] = notes.lines
    assert note.startswith(f"probe: warm start, {TASKS / 'warm_probe.py'} imported once in")


@pytest.mark.parametrize(
    "args, meta, reason, tail",
    [
        ({"mode": "exit"}, {}, "the task exited with code 3", "ValueError: the image is corrupt"),
        ({"mode": "raise"}, {}, "the task exited with code 1", "RuntimeError: the task raised"),
        ({"mode": "killed"}, {}, "the task process was killed by SIGKILL", "probe killed"),
        (  # over the call's memory limit: 1 GB in a 200 MB address space
            {"mode": "allocate", "blocks": 16},
            {"address_space_limit": "200M"},
            "the task exited with code 1",
            "MemoryError",
        ),
    ],
)
def test_a_failing_call_ends_as_a_spawned_one(
    tmp_path: Path, notes: Notes, args: JSON, meta: JSON, reason: str, tail: str
) -> None:
    calls = make_calls(3, args, meta)
    warm = outcome(tmp_path / "warm", calls, True, notes)
    spawned = outcome(tmp_path / "spawned", calls, False, notes)
    assert warm[0] == spawned[0] == reason
    assert tail in warm[1] and tail in spawned[1]
    assert "warm start" in notes.lines[0]
    assert (
        notes.lines[1]
        == "probe: one new process per call (warm starts are off: FractalJupyter.warm_start)"
    )


def test_a_call_under_its_memory_limit_runs(tmp_path: Path, notes: Notes) -> None:
    calls = make_calls(2, {"mode": "allocate", "blocks": 1}, {"address_space_limit": 1000})
    for warm in (True, False):
        outputs = executor(tmp_path / str(warm), notes, warm=warm).run_calls(calls)
        assert all(output is not None for output in outputs)


def test_stop_ends_warm_calls_mid_call(tmp_path: Path, notes: Notes) -> None:
    local = executor(tmp_path, notes)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            local.run_calls(make_calls(3, {"mode": "sleep", "seconds": 60}))
        except BaseException as error:
            failure.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 30
    while len(local._running) < 2:
        assert time.monotonic() < deadline, "the calls did not start"
        time.sleep(0.05)
    pids = set(local._running)
    began = time.monotonic()
    local.stop()
    thread.join(timeout=30)
    assert not thread.is_alive() and time.monotonic() - began < 5
    assert isinstance(failure[0], TaskFailed) and failure[0].reason == "the job was stopped"
    for pid in pids:
        assert not running(pid)
    assert "warm start" in notes.lines[0]


@pytest.mark.parametrize(
    "script, meta, enabled, why",
    [
        (
            "warm_import_fails.py",
            {},
            True,
            "the warm start failed: importing {script} failed: RuntimeError: this task refuses "
            "to be imported",
        ),
        (
            "unguarded.py",
            {},
            True,
            "the warm start failed: importing {script} failed: ImportError: the script has no "
            '`if __name__ == "__main__":` block (importing it would run the task)',
        ),
        ("warm_probe.py", {"warm_start": False}, True, "the task's meta sets warm_start to false"),
        ("warm_probe.py", {}, False, "warm starts are off: FractalJupyter.warm_start"),
    ],
)
def test_calls_that_cannot_run_warm_are_spawned_and_the_log_says_why(
    tmp_path: Path, notes: Notes, imports: Path, script: str, meta: JSON, enabled: bool, why: str
) -> None:
    command = f"{sys.executable} {TASKS / script}"
    outputs = executor(tmp_path, notes, warm=enabled).run_calls(
        make_calls(3, meta=meta, command=command)
    )
    assert len(outputs) == 3
    assert notes.lines == [f"probe: one new process per call ({why.format(script=TASKS / script)})"]
    assert imports.read_text() == ""
    for index in range(3):
        log = (tmp_path / "1_probe" / f"1_par_{index:07d}.log").read_text()
        assert log.startswith(("probe state", "ran "))


def test_a_single_call_is_spawned_without_a_note(
    tmp_path: Path, notes: Notes, imports: Path
) -> None:
    assert executor(tmp_path, notes).run_calls(make_calls(1))[0] is not None
    assert notes.lines == [] and imports.read_text() == ""


def task_calls(order: int, name: str, command: str, count: int = 1) -> list[TaskCall]:
    return [
        TaskCall(order, name, command, {}, f"{order}_{name}", f"{order}_par_{i:07d}", "parallel")
        for i in range(count)
    ]


def test_the_tasks_of_one_interpreter_fork_from_one_starter_over_the_job(
    tmp_path: Path, notes: Notes, imports: Path
) -> None:
    """One call per task (a one-well plate): each task's call shares the imports that the
    job's other tasks of the same interpreter paid for."""
    local = executor(tmp_path, notes, planned=[PROBE, SECOND, IMPORT_FAILS])
    first = local.run_calls(task_calls(1, "probe", PROBE))[0]
    second = local.run_calls(task_calls(2, "second", SECOND, count=2))
    assert local.run_calls(task_calls(3, "fails", IMPORT_FAILS)) == [None]
    again = local.run_calls(task_calls(4, "probe", PROBE))[0]
    probes = [output["probe"] for output in (first, *second, again) if output is not None]
    [starter_pid] = imports.read_text().split()  # warm_second's `import warm_probe` is free
    assert len({probe["pid"] for probe in probes} | {int(starter_pid)}) == 5
    assert [probe["calls_seen"] for probe in probes] == [1, 1, 1, 1]
    assert probes[1]["argv"][0] == str(TASKS / "warm_second.py")
    # `ps` shows a warm call as a spawned one, its task folder included
    assert probes[1]["cmdline"] == [sys.executable, *probes[1]["argv"]]
    assert f"{tmp_path}/2_second/" in probes[1]["cmdline"][3]
    assert (tmp_path / "3_fails" / "3_par_0000000.log").read_text() == "ran as a script\n"
    assert notes.lines[0].startswith(
        f"probe: warm start, {TASKS / 'warm_probe.py'} imported once in"
    )
    assert notes.lines[1].startswith(
        f"second: warm start, {TASKS / 'warm_second.py'} imported once in"
    )
    assert notes.lines[1].endswith(
        f"by the starter of {sys.executable} that had imported {TASKS / 'warm_probe.py'}, "
        "a process forked per call"
    )
    assert notes.lines[2] == (
        f"fails: one new process per call (the warm start failed: importing "
        f"{TASKS / 'warm_import_fails.py'} failed: RuntimeError: this task refuses to be "
        "imported)"
    )
    assert len(notes.lines) == 3
    assert (
        "RuntimeError: this task refuses"
        in (tmp_path / "1_probe" / "1_par_0000000.warm-starter.txt").read_text()
    )


def test_the_starter_imports_the_scripts_of_later_tasks_while_it_waits(
    tmp_path: Path, notes: Notes, imports: Path
) -> None:
    local = executor(tmp_path, notes, planned=[SECOND, PROBE, IMPORT_FAILS])
    assert local.run_calls(task_calls(1, "second", SECOND))[0] is not None
    # Before any call of theirs: warm_probe.py is imported (as `warm_probe`, by warm_second
    # already), warm_import_fails.py was tried and failed.
    starter_log = tmp_path / "1_second" / "1_par_0000000.warm-starter.txt"
    deadline = time.monotonic() + 10
    while "RuntimeError: this task refuses" not in starter_log.read_text():
        assert time.monotonic() < deadline, "warm_import_fails.py was not imported ahead"
        time.sleep(0.02)
    assert len(imports.read_text().split()) == 1
    assert local.run_calls(task_calls(2, "fails", IMPORT_FAILS)) == [None]
    assert notes.lines[1].startswith("fails: one new process per call (the warm start failed: ")


def test_a_single_call_of_an_interpreter_that_no_other_task_uses_is_spawned(
    tmp_path: Path, notes: Notes, imports: Path
) -> None:
    local = executor(tmp_path, notes, planned=[PROBE, f"/bin/sh {TASKS / 'warm_second.py'}"])
    assert local.run_calls(make_calls(1))[0] is not None
    assert notes.lines == [] and imports.read_text() == ""


def test_commands_that_can_run_warm() -> None:
    script = str(TASKS / "warm_probe.py")
    assert warm_script([sys.executable, script]) == (sys.executable, script)
    assert warm_script(["/opt/venv/bin/python3.12", script]) == ("/opt/venv/bin/python3.12", script)
    assert (
        warm_script([sys.executable, "-m", "pkg.task"])
        == "the command is not `<python> <script.py>`"
    )
    assert (
        warm_script([sys.executable, script, "--flag"])
        == "the command is not `<python> <script.py>`"
    )
    assert warm_script(["/usr/bin/env", script]) == "/usr/bin/env is not a Python interpreter"
    assert warm_script([sys.executable, "/no/such/task.py"]) == "/no/such/task.py is not a file"


def test_a_dead_starter_is_not_used_again(tmp_path: Path, notes: Notes, imports: Path) -> None:
    calls = make_calls(3)
    starters = WarmStarters(
        calls, enabled=True, log_dir=tmp_path, env=task_environment(), on_note=notes.lines.append
    )
    with starters:
        assert run_call(tmp_path, calls[0], starters=starters) is not None
        [starter_pid] = imports.read_text().split()
        os.kill(int(starter_pid), signal.SIGKILL)
        deadline = time.monotonic() + 10
        while all(starter.died is None for starter in starters._started):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        output = run_call(tmp_path, calls[1], starters=starters)
        output_after = run_call(tmp_path, calls[2], starters=starters)
    assert output is not None and output_after is not None
    assert output["probe"]["calls_seen"] == output_after["probe"]["calls_seen"] == 1
    assert len(notes.lines) == 2 and notes.lines[1].startswith(
        "probe: the warm starter failed (the starter ended (code -9)); the calls it had not "
        "started get a new process each"
    )


def test_a_call_whose_starter_dies_under_it_fails_once_it_ended(
    tmp_path: Path, notes: Notes, imports: Path
) -> None:
    calls = make_calls(2, {"mode": "sleep", "seconds": 1})
    starters = WarmStarters(
        calls, enabled=True, log_dir=tmp_path, env=task_environment(), on_note=notes.lines.append
    )
    pids: list[int] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            run_call(tmp_path, calls[0], pids.append, starters)
        except BaseException as error:
            failure.append(error)

    with starters:
        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 10
        while not pids:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        [starter_pid] = imports.read_text().split()
        os.kill(int(starter_pid), signal.SIGKILL)
        thread.join(timeout=20)
    # The call's process is no one's child any more: its outcome is unknown, and the call
    # fails only once that process is gone (nothing of the job runs after its end).
    assert isinstance(failure[0], TaskFailed)
    assert failure[0].reason == (
        "the starter ended (code -9) while the call's process ran: its outcome is unknown"
    )
    assert not running(pids[0])


@pytest.fixture
def kept(tmp_path: Path) -> Iterator[Path]:
    """The folder of the test's kept starters; they are killed at its end."""
    folder = tmp_path / "kept"
    yield folder
    for socket_path in folder.glob("*.sock*"):
        for pid in processes_mentioning(str(socket_path)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def run_job(
    job_dir: Path, notes: Notes, kept: Path, calls: list[TaskCall], keep_seconds: float = 60
) -> list[JSON]:
    """One job's calls on a fresh executor that keeps its starters; closed at its end."""
    local = executor(job_dir, notes, keep_seconds=keep_seconds, keep_dir=kept)
    try:
        return [output for output in local.run_calls(calls) if output is not None]
    finally:
        local.close()


def test_a_kept_starter_serves_the_next_job_with_a_fresh_module_in_every_call(
    tmp_path: Path, notes: Notes, imports: Path, kept: Path
) -> None:
    first = run_job(tmp_path / "job1", notes, kept, make_calls(3))
    [starter_pid] = imports.read_text().split()
    assert running(int(starter_pid))  # the job ended, its starter stays
    second = run_job(tmp_path / "job2", notes, kept, make_calls(3))
    # One import for both jobs; six processes of their own, each with a fresh module global.
    assert imports.read_text().split() == [starter_pid]
    probes = [output["probe"] for output in first + second]
    assert len({probe["pid"] for probe in probes} | {int(starter_pid)}) == 7
    assert [probe["calls_seen"] for probe in probes] == [1] * 6
    # The second job's calls run in its own folder, with its own argument files.
    assert second[0]["probe"]["argv"][2] == str(tmp_path / "job2/1_probe/1_par_0000000.args.json")
    assert (tmp_path / "job2/1_probe/1_par_0000002.log").read_text().startswith("probe state")
    assert notes.lines[0].startswith(
        f"probe: warm start, {TASKS / 'warm_probe.py'} imported once in "
    )
    assert notes.lines[0].endswith(
        f"by {sys.executable}; the starter stays 60 s after its last call, a process forked "
        "per call"
    )
    assert notes.lines[1] == (
        f"probe: warm start, {TASKS / 'warm_probe.py'} imported by the starter of "
        f"{sys.executable} kept from an earlier job (pid {starter_pid}, 1 jobs before this "
        "one); the starter stays 60 s after its last call, a process forked per call"
    )
    # Nothing of the kept starter is in the job folders (a dead job's leftovers are found
    # there) and only its owner can reach it.
    assert not list((tmp_path / "job1").rglob("*.warm-starter.txt"))
    assert kept.stat().st_mode & 0o777 == 0o700


def test_a_kept_starter_ends_once_idle_and_gives_up_its_socket(
    tmp_path: Path, notes: Notes, imports: Path, kept: Path
) -> None:
    began = time.monotonic()
    run_job(tmp_path / "job1", notes, kept, make_calls(2), keep_seconds=1)
    [starter_pid] = imports.read_text().split()
    [socket_path] = kept.glob("*.sock")
    wait_for(lambda: not running(int(starter_pid)), 10, "the starter did not end once idle")
    assert time.monotonic() - began >= 1
    assert not socket_path.exists()
    # The next job starts a new one.
    run_job(tmp_path / "job2", notes, kept, make_calls(2), keep_seconds=1)
    assert len(imports.read_text().split()) == 2
    assert "kept from an earlier job" not in notes.lines[1]


def test_a_kept_starter_whose_imports_changed_is_replaced(
    tmp_path: Path, notes: Notes, imports: Path, kept: Path
) -> None:
    script = tmp_path / "probe_copy.py"
    shutil.copy(TASKS / "warm_probe.py", script)
    calls = make_calls(2, command=f"{sys.executable} {script}")
    run_job(tmp_path / "job1", notes, kept, calls)
    [old_pid] = imports.read_text().split()
    later = script.stat().st_mtime + 10  # a new version of the task's code
    os.utime(script, (later, later))
    outputs = run_job(tmp_path / "job2", notes, kept, calls)
    assert [output["probe"]["calls_seen"] for output in outputs] == [1, 1]
    [_, new_pid] = imports.read_text().split()
    assert new_pid != old_pid
    assert f"(a new starter: {script} changed since the starter imported it)" in notes.lines[1]
    wait_for(lambda: not running(int(old_pid)), 10, "the stale starter did not end")
    run_job(tmp_path / "job3", notes, kept, calls)
    assert imports.read_text().split() == [old_pid, new_pid]  # the new one is kept


def test_what_makes_a_kept_starter_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A module's file and a folder of installed packages count; a project folder on the
    path changes with every file written there (coverage data, notebooks) and does not."""
    project, packages = tmp_path / "project", tmp_path / "lib/python3/site-packages"
    for folder in (project, packages):
        folder.mkdir(parents=True)
    module_file = project / "stale_probe_module.py"
    module_file.write_text("VALUE = 1\n")
    monkeypatch.setattr(sys, "path", [sys.path[0], str(project), str(packages), *sys.path[1:]])
    monkeypatch.setitem(sys.modules, "stale_probe_module", None)  # gone again at the end
    del sys.modules["stale_probe_module"]
    importlib.import_module("stale_probe_module")
    starter = warm_starter.Starter()
    starter.remember_files()
    (project / "notes.txt").write_text("a new file in a folder of the path")
    assert starter.stale() is None
    later = module_file.stat().st_mtime + 10
    os.utime(module_file, (later, later))
    assert starter.stale() == f"{module_file} changed since the starter imported it"
    starter = warm_starter.Starter()
    starter.remember_files()
    (packages / "new_package").mkdir()
    assert starter.stale() == f"{packages} changed since the starter imported it"


def test_a_kept_starter_that_cannot_import_leaves_the_calls_to_spawning(
    tmp_path: Path, notes: Notes, kept: Path
) -> None:
    outputs = run_job(tmp_path / "job1", notes, kept, make_calls(2, command=IMPORT_FAILS))
    assert outputs == []  # warm_import_fails.py writes no output, as a script
    assert (tmp_path / "job1/1_probe/1_par_0000001.log").read_text() == "ran as a script\n"
    assert notes.lines == [
        f"probe: one new process per call (the warm start failed: importing "
        f"{TASKS / 'warm_import_fails.py'} failed: RuntimeError: this task refuses to be "
        "imported)"
    ]
    [log] = kept.glob("*.log")
    assert "RuntimeError: this task refuses" in log.read_text()
    wait_for(lambda: not processes_mentioning(str(kept)), 10, "the starter did not end")
    assert not list(kept.glob("*.sock*"))


def test_a_single_call_runs_warm_when_its_starter_is_kept(
    tmp_path: Path, notes: Notes, imports: Path, kept: Path
) -> None:
    """A task with one call whose Python serves no other task of the job: its starter is
    worth starting when the next job finds it."""
    run_job(tmp_path / "job1", notes, kept, make_calls(1))
    run_job(tmp_path / "job2", notes, kept, make_calls(1))
    assert len(imports.read_text().split()) == 1
    assert "kept from an earlier job" in notes.lines[1]


def test_starters_are_not_kept_in_a_folder_that_others_can_enter(
    tmp_path: Path, notes: Notes, imports: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    run_job(tmp_path / "job1", notes, shared, make_calls(2))
    assert notes.lines[0] == (
        f"warm starters are not kept after this job: no private folder for them: {shared} "
        "is not this user's alone (it must be mode 700)"
    )
    assert "warm start" in notes.lines[1] and "stays" not in notes.lines[1]
    [starter_pid] = imports.read_text().split()
    assert not running(int(starter_pid))  # it ended with the job
    assert list(shared.iterdir()) == []


def test_a_local_job_process_starts_without_the_slurm_executor() -> None:
    """A job process (or the job starter) imports what a local job needs, not cloudpickle,
    tarfile or the SSH transport: every job pays for its imports before it starts."""
    code = (
        "import sys, fractal_jupyter.runner.job_starter; "
        "print(sorted(m for m in ('cloudpickle', 'fractal_jupyter.runner.slurm', "
        "'fractal_jupyter.runner.ssh', 'paramiko') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (result.returncode, result.stdout.strip()) == (0, "[]"), result.stderr
