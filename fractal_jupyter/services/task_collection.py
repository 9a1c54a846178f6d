"""Task collection: pip-install a task package into its own venv and register its tasks
(fractal-server 2.6.4's `POST task/collect/pip/`), or register the tasks of a package that is
installed already (`POST task/collect/custom/`).

A pip collection answers at once; the work runs as an asyncio task of the server (each step a
subprocess, the event loop never blocks) and writes its log to a file that `GET
task/collect/{id}/?verbose=true` shows while it grows. Folders under `<tasks_dir>/.fractal/`:

    .staging/<state id>/            the log and the downloaded wheel, while the collection runs
    <name><version>/                one package version: `venv/`, `collection.log`,
                                    `collection_freeze.txt`, `collection.json` (written last)

A collection that fails removes the folder it created and creates no task; its state keeps
the log and says why. A folder with a `collection.json` is a complete environment: when the
database does not know its tasks (a new database over the same `tasks_dir`), collecting the
same package, version, extras, pins and Python again registers them without reinstalling.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shlex
import shutil
import signal
import socket
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from ..db.engine import Database
from ..db.models import CollectionState, Task
from ..errors import NotFound, Unprocessable
from ..file_modes import SHARED_UMASK, make_shared_dir
from ..schemas.task import TaskCreate, TaskRead
from ..schemas.task_collection import (
    CollectionStateRead,
    Manifest,
    TaskCollectCustom,
    TaskCollectPip,
)
from .task import new_task
from .task_package import normalize_package_name, slugify_task_name
from .users import CurrentUser

PUBLIC_SUBDIR = ".fractal"
STAGING_SUBDIR = ".staging"
MANIFEST_FILE = "__FRACTAL_MANIFEST__.json"
COLLECTION_FILE = "collection.json"
LOG_FILE = "collection.log"
FREEZE_FILE = "collection_freeze.txt"
# How many lines of a failed command's output go into the state's `info`.
ERROR_TAIL_LINES = 15
FIND_PACKAGE_TIMEOUT_SECONDS = 60.0


class CollectionError(Exception):
    """A collection step failed; the message says why (it becomes the state's `info`)."""


@dataclass
class PipPackage:
    """What a pip collection installs; `version` is known once the wheel is at hand.

    `owner` is the owner of the collected tasks: None (every user's jobs may run them) when an
    administrator collects, else the collecting user (see `services/task_trust.py`).
    """

    package: str
    name: str
    python_version: str
    interpreter: str
    owner: str | None
    extras: str | None = None
    version: str | None = None
    pins: dict[str, str] = field(default_factory=dict)
    wheel: Path | None = None

    @classmethod
    def from_request(
        cls, body: TaskCollectPip, python_version: str, interpreter: str, owner: str | None
    ) -> PipPackage:
        if body.is_wheel:
            wheel = Path(body.package)
            distribution, version = wheel.name.split("-")[:2]
            return cls(
                package=body.package,
                name=normalize_package_name(distribution),
                python_version=python_version,
                interpreter=interpreter,
                owner=owner,
                extras=body.package_extras,
                version=version,
                pins=dict(body.pinned_package_versions or {}),
                wheel=wheel,
            )
        return cls(
            package=body.package,
            name=normalize_package_name(body.package),
            python_version=python_version,
            interpreter=interpreter,
            owner=owner,
            extras=body.package_extras,
            version=body.package_version,
            pins=dict(body.pinned_package_versions or {}),
        )

    @property
    def package_source(self) -> str:
        """`pip_remote|pip_local:<name_with_underscores>:<version>:<extras>:py<X.Y>`."""
        kind = "pip_local" if self.wheel is not None else "pip_remote"
        parts = (
            kind,
            self.name.replace("-", "_"),
            self.version or "",
            self.extras or "",
            f"py{self.python_version}",
        )
        return ":".join(parts)

    @property
    def install_request(self) -> dict[str, Any]:
        """What decides the content of the venv: a folder is reused only for the same.

        A user's own collection names its owner: its tasks are trusted as that user's, so
        they never point into a folder that another user's collection left."""
        request: dict[str, Any] = {
            "package_source": self.package_source,
            "pinned_package_versions": self.pins,
        }
        if self.owner is not None:
            request["owner"] = self.owner
        return request

    def requirement(self) -> str:
        extras = f"[{self.extras}]" if self.extras else ""
        if self.wheel is not None:
            return f"{self.wheel}{extras}"
        return f"{self.name}{extras}=={self.version}"


@dataclass
class TaskCollector:
    """The server's task collections: configuration, and the ones running in the background."""

    database: Database
    tasks_dir: Path
    python_interpreters: Mapping[str, str]
    default_python_version: str
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("fractal_jupyter"))
    runner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    _running: dict[int, asyncio.Task[None]] = field(default_factory=dict)

    @property
    def public_dir(self) -> Path:
        return self.tasks_dir / PUBLIC_SUBDIR

    def venv_dir(self, package: PipPackage) -> Path:
        return self.public_dir / f"{package.name}{package.version}"

    def staging_dir(self, state: CollectionState) -> Path:
        """Where a running collection keeps its log; named by id and creation time, since
        servers with other databases may share the tasks_dir (and their ids)."""
        stamp = state.timestamp.strftime("%Y%m%dT%H%M%S%f")
        return self.public_dir / STAGING_SUBDIR / f"{state.id}-{stamp}"

    def interpreter(self, python_version: str) -> str:
        """The configured interpreter for a Python version (422 when there is none)."""
        configured = self.python_interpreters.get(python_version)
        found = shutil.which(configured) if configured else None
        if found is None:
            raise Unprocessable(
                f"Python version {python_version} is not available for Fractal task "
                f"collection (configured: {sorted(self.python_interpreters)})."
            )
        return found

    def start(self, state_id: int, staging: Path, package: PipPackage) -> None:
        task = asyncio.ensure_future(self._collect(state_id, staging, package))
        self._running[state_id] = task
        task.add_done_callback(lambda _: self._running.pop(state_id, None))

    def is_running_here(self, state_id: int) -> bool:
        return state_id in self._running

    async def stop(self) -> None:
        """Cancel the running collections (each one fails and cleans up after itself)."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def wait(self, state_id: int) -> None:
        """Until the collection of `state_id` run by this server has ended (tests, demo)."""
        task = self._running.get(state_id)
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)

    # -- the background part ------------------------------------------------------------

    async def _collect(self, state_id: int, staging: Path, package: PipPackage) -> None:
        log = CollectionLog(staging / LOG_FILE)
        created: Path | None = None
        try:
            with contextlib.suppress(FileExistsError):
                make_shared_dir(self.public_dir)  # (and tasks_dir) before the staging area
            staging.mkdir(parents=True, exist_ok=True)
            log.write(f"START collection {state_id} of {package.package}")
            log.write(
                f"package={package.package} name={package.name} version={package.version} "
                f"extras={package.extras} python={package.python_version} "
                f"({package.interpreter}) pins={package.pins}"
            )
            await self._update(state_id, status="installing")
            wheel = package.wheel or await self._download(package, staging, log)
            package.version, manifest = inspect_wheel(wheel)
            log.write(f"manifest of {wheel.name}: {len(manifest.task_list)} tasks")
            venv_dir = self.venv_dir(package)
            await self._update(state_id, venv_path=str(venv_dir.relative_to(self.tasks_dir)))
            if (venv_dir / COLLECTION_FILE).exists():
                await self._reuse(state_id, package, manifest, venv_dir, log)
                return
            await self._check_sources_free(package, manifest)
            try:
                make_shared_dir(venv_dir)
            except FileExistsError:
                raise CollectionError(
                    f"{venv_dir} exists: another collection of {package.name} "
                    f"{package.version} is in progress, or an earlier one was interrupted "
                    "(remove the folder to collect again)."
                ) from None
            created = venv_dir
            python, package_root = await self._install(package, venv_dir, log)
            await self._update(state_id, status="collecting")
            tasks = build_tasks(
                manifest, package.package_source, python, package_root, package.version
            )
            check_executables(tasks)
            await self._register(state_id, package, tasks, venv_dir, log)
            created = None
        except asyncio.CancelledError:
            await asyncio.shield(
                self._fail(state_id, log, "the server stopped during the collection", created)
            )
            raise
        except Exception as error:  # every failure ends the collection with its reason
            if not isinstance(error, CollectionError | ValidationError | Unprocessable):
                self.log.exception("Task collection %s failed", state_id)
            reason = str(error.detail) if isinstance(error, Unprocessable) else str(error)
            await self._fail(state_id, log, reason, created)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    async def _download(self, package: PipPackage, staging: Path, log: CollectionLog) -> Path:
        download_dir = staging / "download"
        spec = package.name if package.version is None else f"{package.name}=={package.version}"
        await log.run(
            [
                package.interpreter,
                "-m",
                "pip",
                "download",
                "--no-deps",
                spec,
                "-d",
                str(download_dir),
            ],
            cwd=staging,
        )
        files = sorted(download_dir.iterdir())
        if len(files) != 1:
            raise CollectionError(f"pip download of {spec} gave {len(files)} files, not one")
        return files[0]

    async def _install(
        self, package: PipPackage, venv_dir: Path, log: CollectionLog
    ) -> tuple[Path, Path]:
        await log.run([package.interpreter, "-m", "venv", "venv"], cwd=venv_dir)
        python = venv_dir / "venv" / "bin" / "python"
        pip = [str(python), "-m", "pip"]
        await log.run([*pip, "install", package.requirement()], cwd=venv_dir)
        for name, version in package.pins.items():
            installed = _show_field(await log.run([*pip, "show", name], cwd=venv_dir), "Version")
            if installed != version:
                log.write(f"{name} {installed} is installed; the pinned version is {version}")
                await log.run([*pip, "install", f"{name}=={version}"], cwd=venv_dir)
            else:
                log.write(f"{name} {installed} is installed, as pinned")
        location = _show_field(
            await log.run([*pip, "show", package.name], cwd=venv_dir), "Location"
        )
        package_root = Path(location) / package.name.replace("-", "_")
        log.write(f"package root: {package_root}")
        freeze = await log.run([*pip, "freeze", "--all"], cwd=venv_dir, quiet=True)
        (venv_dir / FREEZE_FILE).write_text(freeze)
        return python, package_root

    async def _check_sources_free(self, package: PipPackage, manifest: Manifest) -> None:
        sources = [
            f"{package.package_source}:{slugify_task_name(task.name)}"
            for task in manifest.task_list
        ]
        async with self.database.session() as session:
            taken = await session.scalar(select(Task.source).where(Task.source.in_(sources)))
        if taken is not None:
            raise CollectionError(
                f'Cannot collect package. Task with source "{taken}" already exists in the '
                "database."
            )

    async def _register(
        self,
        state_id: int,
        package: PipPackage,
        tasks: list[TaskCreate],
        venv_dir: Path,
        log: CollectionLog,
    ) -> None:
        """Insert the tasks and end the state as OK, in one transaction."""
        log.write(f"registering {len(tasks)} tasks")
        log.write("END: collection OK")
        shutil.copyfile(log.path, venv_dir / LOG_FILE)
        async with self.database.session(write=True) as session:
            state = await _get_state(session, state_id)
            rows = await insert_tasks(session, tasks, owner=package.owner)
            data = {
                **state.data,
                "status": "OK",
                "info": f"{len(rows)} tasks collected",
                "task_list": [TaskRead.model_validate(row).model_dump(mode="json") for row in rows],
                "log": log.read(),
                "freeze": (venv_dir / FREEZE_FILE).read_text(),
            }
            (venv_dir / COLLECTION_FILE).write_text(
                json.dumps({**data, "install_request": package.install_request}, indent=2)
            )
            state.data = data
            state.runner = None

    async def _reuse(
        self,
        state_id: int,
        package: PipPackage,
        manifest: Manifest,
        venv_dir: Path,
        log: CollectionLog,
    ) -> None:
        """Register the tasks of a complete environment that an earlier collection left."""
        try:
            earlier = json.loads((venv_dir / COLLECTION_FILE).read_text())
        except (OSError, ValueError) as error:
            raise CollectionError(f"{venv_dir / COLLECTION_FILE} is unreadable: {error}") from None
        if earlier.get("install_request") != package.install_request:
            raise CollectionError(
                f"Cannot collect package: {venv_dir} holds {package.name} {package.version} "
                f"installed for {earlier.get('install_request')}, not for "
                f"{package.install_request}; remove the folder to collect it again."
            )
        await self._check_sources_free(package, manifest)
        log.write(f"{venv_dir} holds a complete environment for this request: reusing it")
        python = venv_dir / "venv" / "bin" / "python"
        pip = [str(python), "-m", "pip"]
        location = _show_field(
            await log.run([*pip, "show", package.name], cwd=venv_dir), "Location"
        )
        package_root = Path(location) / package.name.replace("-", "_")
        await self._update(state_id, status="collecting")
        tasks = build_tasks(manifest, package.package_source, python, package_root, package.version)
        check_executables(tasks)
        await self._register(state_id, package, tasks, venv_dir, log)

    async def _update(self, state_id: int, **changes: Any) -> None:
        async with self.database.session(write=True) as session:
            state = await _get_state(session, state_id)
            state.data = {**state.data, **changes}

    async def _fail(
        self, state_id: int, log: CollectionLog, reason: str, created: Path | None
    ) -> None:
        log.write(f"ERROR: task collection failed: {reason}")
        if created is not None:
            log.write(f"removing {created}")
            await asyncio.to_thread(shutil.rmtree, created, True)
        try:
            async with self.database.session(write=True) as session:
                state = await _get_state(session, state_id)
                state.data = {
                    **state.data,
                    "status": "fail",
                    "log": log.read(),
                    "info": f"Original error: {reason}",
                }
                state.runner = None
        except Exception:
            self.log.exception("Could not record the failure of task collection %s", state_id)

    async def reap_orphans(self) -> None:
        """Fail the collections of this host whose server process is gone (and clean up)."""
        host = self.runner.split(":")[0]
        async with self.database.session() as session:
            states = (
                await session.scalars(
                    select(CollectionState).where(CollectionState.runner.like(f"{host}:%"))
                )
            ).all()
        for state in states:
            if state.runner is None or not self._is_orphan(state.id, state.runner):
                continue
            staging = self.staging_dir(state)
            log = CollectionLog(staging / LOG_FILE)
            venv_path = state.data.get("venv_path")
            created = None
            if venv_path and not (self.tasks_dir / venv_path / COLLECTION_FILE).exists():
                created = self.tasks_dir / venv_path
            reason = "the server running the collection stopped before it ended"
            await self._fail(
                state.id, log, reason, created if created and created.exists() else None
            )
            shutil.rmtree(staging, ignore_errors=True)

    def _is_orphan(self, state_id: int, runner: str) -> bool:
        if runner == self.runner:
            return not self.is_running_here(state_id)
        host, _, pid = runner.partition(":")
        if host != self.runner.split(":")[0] or not pid.isdigit():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


class CollectionLog:
    """The log file of one collection; commands' output is appended as it comes."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, message: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        with contextlib.suppress(OSError), self.path.open("a") as file:
            file.write(f"{stamp} - {message}\n")

    def read(self) -> str:
        try:
            return self.path.read_text(errors="replace")
        except OSError:
            return ""

    async def run(self, argv: list[str], cwd: Path, quiet: bool = False) -> str:
        """Run a command (no shell), log its output line by line, return its stdout.

        A non-zero exit raises CollectionError with the output's tail. `quiet` keeps the
        output out of the log (it is kept elsewhere, like `pip freeze`).
        """
        self.write(f"$ {shlex.join(argv)}")
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=_subprocess_environment(),
            start_new_session=True,
            # The venv is read by every user of a shared tasks_dir.
            umask=SHARED_UMASK,
        )
        assert process.stdout is not None
        lines: list[str] = []
        try:
            with self.path.open("a") as file:
                async for raw in process.stdout:
                    line = raw.decode(errors="replace")
                    lines.append(line)
                    if not quiet:
                        file.write(line)
                        file.flush()
            returncode = await process.wait()
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await asyncio.shield(process.wait())
            raise
        if returncode != 0:
            tail = "".join(lines[-ERROR_TAIL_LINES:]).strip()
            raise CollectionError(
                f"command `{shlex.join(argv[:4])} ...` failed with exit code {returncode}:\n{tail}"
            )
        return "".join(lines)


def _subprocess_environment() -> dict[str, str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PIP_REQUIRE_VIRTUALENV")
    }
    environment.update(PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONUNBUFFERED="1")
    return environment


def _show_field(output: str, name: str) -> str:
    for line in output.splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise CollectionError(f"`pip show` printed no {name}")


def read_manifest(text: str | bytes, where: str) -> Manifest:
    """A manifest from its JSON text; every problem is a CollectionError that says what."""
    try:
        raw = json.loads(text)
    except ValueError as error:
        raise CollectionError(f"{where}: the manifest is not valid JSON ({error})") from None
    if not isinstance(raw, dict):
        raise CollectionError(f"{where}: the manifest is not a JSON object")
    version = str(raw.get("manifest_version"))
    if version != "2":
        raise CollectionError(f"{where}: manifest version {version!r} not supported (only '2')")
    try:
        return Manifest.model_validate({**raw, "manifest_version": version})
    except ValidationError as error:
        raise CollectionError(f"{where}: invalid manifest: {error}") from None


def inspect_wheel(path: Path) -> tuple[str, Manifest]:
    """The version (from the file name) and the manifest of a wheel."""
    if not path.name.endswith(".whl"):
        raise CollectionError(f"Only wheel packages are supported in Fractal (given {path.name}).")
    if not path.is_file():
        raise CollectionError(f"{path} does not exist or is not a file")
    version = path.name.split("-")[1]
    try:
        with zipfile.ZipFile(path) as wheel:
            member = next((n for n in wheel.namelist() if MANIFEST_FILE in n), None)
            if member is None:
                raise CollectionError(f"{path.name} does not include {MANIFEST_FILE}")
            text = wheel.read(member)
    except zipfile.BadZipFile as error:
        raise CollectionError(f"{path.name} is not a valid wheel: {error}") from None
    return version, read_manifest(text, path.name)


def build_tasks(
    manifest: Manifest,
    package_source: str,
    python: Path | str,
    package_root: Path,
    version: str | None,
) -> list[TaskCreate]:
    """The tasks of a manifest: sources `<package_source>:<slug>`, commands
    `<python> <package_root>/<executable>`, the manifest's other fields kept."""
    tasks: list[TaskCreate] = []
    seen: set[str] = set()
    for entry in manifest.task_list:
        source = f"{package_source}:{slugify_task_name(entry.name)}"
        if source in seen:
            raise CollectionError(f"two tasks of the manifest have the source '{source}'")
        seen.add(source)
        fields: dict[str, Any] = {
            "name": entry.name,
            "source": source,
            "version": version,
            "input_types": entry.input_types,
            "output_types": entry.output_types,
            "docs_info": entry.docs_info,
            "docs_link": entry.docs_link,
            "type": entry.type,
            "category": entry.category,
            "modality": entry.modality,
            "tags": entry.tags,
            "authors": entry.authors or manifest.authors,
        }
        if manifest.has_args_schemas:
            fields["args_schema_version"] = manifest.args_schema_version
        for side in ("non_parallel", "parallel"):
            executable = getattr(entry, f"executable_{side}")
            if executable is None:
                continue
            fields[f"command_{side}"] = f"{python} {package_root / executable}"
            fields[f"meta_{side}"] = getattr(entry, f"meta_{side}")
            fields[f"args_schema_{side}"] = getattr(entry, f"args_schema_{side}")
        try:
            tasks.append(TaskCreate.model_validate(fields))
        except ValidationError as error:
            raise CollectionError(f"task '{entry.name}' of the manifest: {error}") from None
    return tasks


def check_executables(tasks: list[TaskCreate]) -> None:
    for task in tasks:
        for side in ("non_parallel", "parallel"):
            command = getattr(task, f"command_{side}")
            if command is not None and not Path(command.split()[1]).exists():
                raise CollectionError(
                    f"Task `{task.name}` has `command_{side}` pointing to missing file "
                    f"`{command.split()[1]}`."
                )


async def insert_tasks(
    session: AsyncSession, tasks: list[TaskCreate], owner: str | None
) -> list[Task]:
    rows = [new_task(task, source=task.source, owner=owner) for task in tasks]
    session.add_all(rows)
    await session.flush()
    return rows


async def _get_state(session: AsyncSession, state_id: int) -> CollectionState:
    state = await session.get(CollectionState, state_id)
    if state is None:
        raise NotFound(f"No task collection info with id={state_id}")
    return state


def _after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run `callback` once the session's transaction is committed (never on rollback)."""

    def fire(_: Session) -> None:
        callback()

    event.listen(session.sync_session, "after_commit", fire, once=True)


# -- the endpoints' part ---------------------------------------------------------------------


async def start_pip_collection(
    session: AsyncSession, collector: TaskCollector, user: CurrentUser, body: TaskCollectPip
) -> CollectionState:
    """Check what can be checked at once, record a pending state, start the background work
    once the state is committed.

    An administrator's collection makes tasks without owner, which every user's jobs may run
    (fractal-server 2.6.4 makes all collected tasks so); anyone else's makes tasks they own.
    """
    python_version = body.python_version or collector.default_python_version
    interpreter = collector.interpreter(python_version)
    owner = None if user.is_superuser else user.username
    package = PipPackage.from_request(body, python_version, interpreter, owner)
    data: dict[str, Any] = {"status": "pending", "package": body.package}
    if package.version is not None:
        venv_dir = collector.venv_dir(package)
        data["venv_path"] = str(venv_dir.relative_to(collector.tasks_dir))
        prefix = package.package_source + ":"
        taken = await session.scalar(
            select(Task.source).where(Task.source.startswith(prefix, autoescape=True))
        )
        if taken is not None:
            raise Unprocessable(
                f"Cannot collect package {package.name} {package.version}: it was collected "
                f'already (task with source "{taken}" exists).'
            )
        if venv_dir.exists() and not (venv_dir / COLLECTION_FILE).exists():
            raise Unprocessable(
                "Cannot collect package. Possible reason: another collection of the same "
                f"package is in progress ({venv_dir} exists and is not complete)."
            )
    state = CollectionState(data=data, runner=collector.runner)
    session.add(state)
    await session.flush()
    state.data = {
        **data,
        "info": (
            "Collecting tasks in the background. "
            f"GET /task/collect/{state.id} to query collection status"
        ),
    }
    state_id, staging = state.id, collector.staging_dir(state)
    _after_commit(session, lambda: collector.start(state_id, staging, package))
    return state


async def read_collection_state(
    session: AsyncSession, collector: TaskCollector, state_id: int, verbose: bool
) -> CollectionStateRead:
    state = await _get_state(session, state_id)
    if state.runner is not None and collector._is_orphan(state.id, state.runner):
        await collector.reap_orphans()
        await session.refresh(state)
    data = dict(state.data)
    if verbose and not data.get("log"):
        staging_log = collector.staging_dir(state) / LOG_FILE
        if staging_log.exists():
            data["log"] = CollectionLog(staging_log).read()
        elif "venv_path" not in data:
            raise Unprocessable(f"No 'venv_path' in CollectionStateV2[{state_id}].data")
        else:
            data["log"] = CollectionLog(collector.tasks_dir / data["venv_path"] / LOG_FILE).read()
    return CollectionStateRead(id=state.id, data=data, timestamp=state.timestamp)


async def _find_package_root(python: str, package_name: str) -> Path:
    name = package_name.replace("-", "_")
    code = (
        "import importlib.util, pathlib; "
        f"print(pathlib.Path(importlib.util.find_spec({name!r}).origin).parent.as_posix())"
    )
    process = await asyncio.create_subprocess_exec(
        python,
        "-c",
        code,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_subprocess_environment(),
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), FIND_PACKAGE_TIMEOUT_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise Unprocessable(
            f"Cannot determine 'package_root': {python} did not answer within "
            f"{FIND_PACKAGE_TIMEOUT_SECONDS:.0f} s."
        ) from None
    output = stdout.decode(errors="replace").strip("\n")
    if process.returncode != 0 or not output or "\n" in output:
        raise Unprocessable(
            "Cannot determine 'package_root'.\n"
            f"Original output: {output}\n"
            f"Original error: {stderr.decode(errors='replace')}"
        )
    return Path(output)


async def collect_custom(
    session: AsyncSession, user: CurrentUser, body: TaskCollectCustom
) -> list[Task]:
    """Register the tasks of a package installed already (no venv, no pip)."""
    if not Path(body.python_interpreter).is_file():
        raise Unprocessable(
            f"task_collect.python_interpreter='{body.python_interpreter}' doesn't exist or "
            "is not a file."
        )
    if body.package_root is not None:
        if not Path(body.package_root).is_dir():
            raise Unprocessable(
                f"task_collect.package_root='{body.package_root}' doesn't exist or is not a "
                "directory."
            )
        package_root = Path(body.package_root)
    else:
        assert body.package_name is not None
        package_root = await _find_package_root(body.python_interpreter, body.package_name)
    source = f"{user.username}:{body.source}"
    try:
        tasks = build_tasks(
            body.manifest, source, body.python_interpreter, package_root, body.version
        )
    except CollectionError as error:
        raise Unprocessable(str(error)) from None
    overlapping = (
        await session.scalars(
            select(Task).where(Task.source.in_([task.source for task in tasks])).order_by(Task.id)
        )
    ).all()
    if overlapping:
        raise Unprocessable(
            "\n".join(
                f"TaskV2 with ID {task.id} already has source='{task.source}'"
                for task in overlapping
            )
        )
    return await insert_tasks(session, tasks, owner=user.username)
