"""Production deployment (issue 22): file modes, the configuration reference, CPU limits."""

from __future__ import annotations

import os
import stat
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fractal_jupyter.file_modes import make_private_dir, make_shared_dir
from fractal_jupyter.services.task_collection import CollectionLog
from fractal_jupyter.tokens import KEY_FILE
from tests.conftest import fractal_state_of


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o022, 0o000], ids=["umask022", "umask000"])
def umask(request: Any) -> Iterator[int]:
    """The process umask during the test (restored after it)."""
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


@pytest.fixture
def fractal_config(fractal_config: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    # The database in the data folder, as by default, both created by the server.
    data_dir = tmp_path / "home" / "fractal-data"
    return {
        **fractal_config,
        "data_dir": str(data_dir),
        "db_url": f"sqlite+aiosqlite:///{data_dir}/fractal.db",
    }


@pytest.fixture
def jp_server_config(umask: int, jp_server_config: dict[str, Any]) -> dict[str, Any]:
    return jp_server_config  # the umask is set before the server starts


async def test_data_folder_database_and_key_are_private_whatever_the_umask(
    api: Any, jp_serverapp: Any, fractal_config: dict[str, Any], umask: int
) -> None:
    data_dir = Path(fractal_config["data_dir"])
    status, _ = await api("POST", "api/v2/project/", {"name": "p"})
    assert status == 201
    status, body = await api(
        "POST",
        "auth/token/login/",
        raw_body=urllib.parse.urlencode(
            {"username": "alice", "password": jp_serverapp.identity_provider.token}
        ).encode(),
        headers={"Authorization": "", "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 200, body
    assert os.umask(umask) == umask  # the server ran under the umask of the test
    assert mode_of(data_dir) == 0o700
    database = data_dir / "fractal.db"
    # The server keeps its connections open: the write-ahead log and its index exist.
    for path in (database, data_dir / "fractal.db-wal", data_dir / "fractal.db-shm"):
        assert mode_of(path) == 0o600, path
    assert mode_of(data_dir / KEY_FILE) == 0o600


def test_an_existing_database_file_others_can_read_is_made_private(
    tmp_path: Path, umask: int
) -> None:
    from fractal_jupyter.db.engine import Database

    path = tmp_path / "fractal.db"
    path.write_bytes(b"")
    os.chmod(path, 0o644)
    Database(f"sqlite+aiosqlite:///{path}")
    assert mode_of(path) == 0o600


def test_private_and_shared_folders_whatever_the_umask(tmp_path: Path) -> None:
    for umask in (0o022, 0o000, 0o077):
        previous = os.umask(umask)
        try:
            make_private_dir(tmp_path / f"private{umask}" / "data")
            make_shared_dir(tmp_path / f"shared{umask}" / ".fractal" / "pkg1.0")
        finally:
            os.umask(previous)
        assert mode_of(tmp_path / f"private{umask}" / "data") == 0o700
        for path in (
            tmp_path / f"shared{umask}",
            tmp_path / f"shared{umask}" / ".fractal",
            tmp_path / f"shared{umask}" / ".fractal" / "pkg1.0",
        ):
            assert mode_of(path) == 0o755, (oct(umask), path)


@pytest.mark.parametrize("umask", [0o077], indirect=True, ids=["umask077"])
async def test_a_collected_venv_is_readable_by_every_user(
    api: Any, jp_serverapp: Any, tmp_path: Path, umask: int
) -> None:
    """An administrator whose server runs with a private umask collects for everyone."""
    from tests.support.task_packages import build_task_wheel, mock_manifest
    from tests.test_task_collection import COLLECT, wait_for_collection

    wheel = build_task_wheel(tmp_path / "wheels", manifest=mock_manifest())
    status, state = await api("POST", COLLECT + "pip/", {"package": str(wheel)}, user="admin")
    assert status == 201, state
    final, _ = await wait_for_collection(api, state["id"])
    assert final["data"]["status"] == "OK", final["data"].get("log")
    tasks_dir = Path(fractal_state_of(jp_serverapp).collector.tasks_dir)
    venv_dir = tasks_dir / ".fractal" / "fractal-tasks-mock0.1.0"
    for folder in (tasks_dir, tasks_dir / ".fractal", venv_dir, venv_dir / "venv" / "bin"):
        assert mode_of(folder) == 0o755, folder
    python = Path(final["data"]["task_list"][0]["command_non_parallel"].split()[0])
    assert mode_of(python.resolve()) & 0o055 == 0o055  # others may run the interpreter
    package = next((venv_dir / "venv" / "lib").glob("python*/site-packages/fractal_tasks_mock"))
    for path in [package, *package.rglob("*")]:
        assert mode_of(path) & 0o044 == 0o044 and not mode_of(path) & 0o022, path


async def test_collection_commands_write_files_every_user_can_read(tmp_path: Path) -> None:
    # pip and venv write the shared venv: 0644 files and 0755 folders, even when the
    # collecting server runs with a private umask.
    previous = os.umask(0o077)
    try:
        await CollectionLog(tmp_path / "collection.log").run(
            [
                sys.executable,
                "-c",
                "import os; os.mkdir('lib'); open('lib/module.py', 'w').close()",
            ],
            cwd=tmp_path,
        )
    finally:
        os.umask(previous)
    assert mode_of(tmp_path / "lib") == 0o755
    assert mode_of(tmp_path / "lib" / "module.py") == 0o644


# -- the configuration reference --

REPO = Path(__file__).resolve().parents[1]


def test_the_configuration_reference_matches_the_code() -> None:
    from fractal_jupyter.app import FractalJupyter
    from fractal_jupyter.config_reference import reference_markdown

    generated = reference_markdown()
    written = (REPO / "docs" / "configuration.md").read_text()
    assert written == generated, (
        "docs/configuration.md is not what the traitlets say: run "
        "`python -m fractal_jupyter.config_reference > docs/configuration.md`"
    )
    for name, trait in FractalJupyter.class_own_traits(config=True).items():
        assert f"\n## `{name}`\n" in written
        assert " ".join(trait.help.split()[:3]) in written.replace("\n", " "), name


def test_the_configuration_reference_shows_type_default_and_help() -> None:
    from traitlets import Integer, Unicode

    from fractal_jupyter.app import FractalJupyter
    from fractal_jupyter.config_reference import reference_markdown

    class Changed(FractalJupyter):
        new_setting = Integer(3, help="A new <thing>, as many as you like.").tag(config=True)
        slurm_partition = Unicode("long", help="Another help.").tag(config=True)

    text = reference_markdown(Changed)
    assert (
        "## `new_setting`\n\n- Type: Int (an int)\n- Default: `3`\n\n"
        "A new \\<thing>, as many as you like.\n"
    ) in text
    assert "## `slurm_partition`\n\n- Type: Unicode (a unicode string)\n- Default: `'long'`" in text
    data_dir = reference_markdown().split("## `data_dir`")[1].split("\n## ")[0]
    assert "- Default: computed when the server starts" in data_dir


# -- local_max_workers inside an allocation --


def fake_cgroup(tmp_path: Path, quotas: dict[str, str]) -> tuple[Path, Path]:
    """A /proc/self/cgroup naming `/slurm/job_1/step_0` and a cgroup v2 tree with `cpu.max`
    files (`quotas`: folder under the root -> content)."""
    tmp_path.mkdir(exist_ok=True)
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text("0::/slurm/job_1/step_0\n")
    root = tmp_path / "cgroup"
    (root / "slurm" / "job_1" / "step_0").mkdir(parents=True, exist_ok=True)
    for folder, content in quotas.items():
        (root / folder / "cpu.max").write_text(content)
    return proc, root


def test_usable_cpus_follow_affinity_and_the_cgroup_quota(tmp_path: Path) -> None:
    from fractal_jupyter.runner.resources import usable_cpus

    def eight() -> set[int]:
        return set(range(8))

    nothing = tmp_path / "missing"
    assert usable_cpus(eight, nothing, nothing) == 8
    assert usable_cpus(lambda: {3}, nothing, nothing) == 1
    # No quota anywhere ("max"), a quota of 2.5 CPUs on the job, of 4 on the step: 3.
    proc, root = fake_cgroup(tmp_path / "a", {"": "max 100000\n"})
    assert usable_cpus(eight, proc, root) == 8
    proc, root = fake_cgroup(
        tmp_path / "b",
        {"slurm/job_1": "250000 100000\n", "slurm/job_1/step_0": "400000 100000\n"},
    )
    assert usable_cpus(eight, proc, root) == 3
    assert usable_cpus(lambda: {0, 1}, proc, root) == 2
    # cgroup v1 only (no "0::" line): the affinity alone.
    proc.write_text("4:memory:/x\n1:cpu:/\n")
    assert usable_cpus(eight, proc, root) == 8


def test_local_max_workers_defaults_to_the_cpus_of_this_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fractal_jupyter import app
    from fractal_jupyter.runner import resources

    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # the node
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {5, 6, 7}, raising=False)
    monkeypatch.setattr(resources, "PROC_SELF_CGROUP", tmp_path / "none")
    assert app.FractalJupyter().local_max_workers == 3
    proc, root = fake_cgroup(tmp_path, {"slurm": "150000 100000"})
    monkeypatch.setattr(resources, "PROC_SELF_CGROUP", proc)
    monkeypatch.setattr(resources, "CGROUP_ROOT", root)
    assert app.FractalJupyter().local_max_workers == 2
