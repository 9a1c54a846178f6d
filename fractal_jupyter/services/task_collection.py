"""Task collection, the database side: pip-install a task package into its own venv and
register its tasks as a task group (fractal-server 2.6.4's `POST task/collect/pip/`), or
register the tasks of a package that is installed already (`POST task/collect/custom/`).

A pip collection answers at once; the work runs as an asyncio task of the server (each step a
subprocess, the event loop never blocks) and writes its log to a file that `GET
task/collect/{id}/?verbose=true` and the collection's task-group activity show while it grows.
Folders under `<tasks_dir>/.fractal/` (the package mechanics are in `fractal_jupyter.tasks`):

    .staging/<state id>/            the log and the downloaded wheel, while the collection runs
    <name><version>/                one package version: see `tasks/venv.py`

A collection that fails removes the folder it created and creates no task; its state keeps
the log and says why. A folder with a `collection.json` is a complete environment: when the
database does not know its tasks (a new database over the same `tasks_dir`), collecting the
same package, version, extras, pins and Python again registers them without reinstalling.

The same background runner (`TaskCollector`) runs the task groups' other activities
(deactivate, reactivate, delete: `services/task_group.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from ..db.engine import Database
from ..db.models import CollectionState, Task, TaskGroup, TaskGroupActivity, utc_now
from ..errors import NotFound, Unprocessable
from ..file_modes import make_shared_dir
from ..schemas.task import TaskCreate, TaskRead
from ..schemas.task_collection import (
    CollectionStateRead,
    Manifest,
    TaskCollectCustom,
    TaskCollectPip,
)
from ..tasks import venv
from ..tasks.log import CollectionError, CollectionLog
from ..tasks.package import (
    PipPackage,
    build_tasks,
    check_executables,
    inspect_wheel,
    slugify_task_name,
)
from .task import LEGACY_VERSION, new_task
from .task_trust import new_group_user_group_id
from .users import CurrentUser

PUBLIC_SUBDIR = ".fractal"
STAGING_SUBDIR = ".staging"
LOG_FILE = venv.LOG_FILE
COLLECTION_FILE = venv.COLLECTION_FILE

__all__ = ["CollectionLog", "TaskCollector"]


@dataclass(frozen=True)
class GroupOwner:
    """Whose the task group of a collection will be, and which user group shares it."""

    user_id: int
    user_group_id: int | None


@dataclass
class TaskCollector:
    """The server's background package work: collections, and the task groups' other
    activities; its configuration, and what runs in this process."""

    database: Database
    tasks_dir: Path
    python_interpreters: Mapping[str, str]
    default_python_version: str
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("fractal_jupyter"))
    runner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    _running: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    _activities: dict[int, asyncio.Task[None]] = field(default_factory=dict)

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

    def activity_log_file(self, activity: TaskGroupActivity) -> Path:
        stamp = activity.timestamp_started.strftime("%Y%m%dT%H%M%S%f")
        return self.public_dir / STAGING_SUBDIR / f"activity-{activity.id}-{stamp}.log"

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

    def start(
        self,
        state_id: int,
        activity_id: int,
        staging: Path,
        package: PipPackage,
        owner: GroupOwner,
    ) -> None:
        task = asyncio.ensure_future(self._collect(state_id, activity_id, staging, package, owner))
        self._running[state_id] = task
        self._activities[activity_id] = task
        task.add_done_callback(lambda _: self._running.pop(state_id, None))
        task.add_done_callback(lambda _: self._activities.pop(activity_id, None))

    def start_activity(
        self, activity_id: int, work: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        """Run `work` (a task group's deactivation, reactivation or deletion) in the
        background; it records its own outcome on the activity."""
        task = asyncio.ensure_future(work())
        self._activities[activity_id] = task
        task.add_done_callback(lambda _: self._activities.pop(activity_id, None))

    def is_running_here(self, state_id: int) -> bool:
        return state_id in self._running

    async def stop(self) -> None:
        """Cancel the running work (each one fails and cleans up after itself)."""
        tasks = [*self._running.values(), *self._activities.values()]
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

    async def wait_activity(self, activity_id: int) -> None:
        """Until a task group activity run by this server has ended (tests)."""
        task = self._activities.get(activity_id)
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)

    # -- the background part ------------------------------------------------------------

    async def _collect(
        self,
        state_id: int,
        activity_id: int,
        staging: Path,
        package: PipPackage,
        owner: GroupOwner,
    ) -> None:
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
                f"({package.interpreter}) pins={package.pins} pins_pre={package.pins_pre}"
            )
            await self._update(state_id, activity_id, status="installing")
            wheel = package.wheel or await venv.download(package, staging, log)
            package.version, manifest = inspect_wheel(wheel)
            log.write(f"manifest of {wheel.name}: {len(manifest.task_list)} tasks")
            venv_dir = self.venv_dir(package)
            await self._update(
                state_id,
                activity_id,
                venv_path=str(venv_dir.relative_to(self.tasks_dir)),
                version=package.version,
            )
            if (venv_dir / COLLECTION_FILE).exists():
                await self._reuse(state_id, activity_id, package, owner, manifest, venv_dir, log)
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
            python, package_root = await venv.install(package, venv_dir, log)
            await self._update(state_id, activity_id, status="collecting")
            tasks = build_tasks(
                manifest, package.package_source, python, package_root, package.version
            )
            check_executables(tasks)
            await self._register(state_id, activity_id, package, owner, tasks, venv_dir, log)
            created = None
        except asyncio.CancelledError:
            await asyncio.shield(
                self._fail(
                    state_id,
                    activity_id,
                    log,
                    "the server stopped during the collection",
                    created,
                )
            )
            raise
        except Exception as error:  # every failure ends the collection with its reason
            if not isinstance(error, CollectionError | ValidationError | Unprocessable):
                self.log.exception("Task collection %s failed", state_id)
            reason = str(error.detail) if isinstance(error, Unprocessable) else str(error)
            await self._fail(state_id, activity_id, log, reason, created)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

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
        activity_id: int,
        package: PipPackage,
        owner: GroupOwner,
        tasks: list[TaskCreate],
        venv_dir: Path,
        log: CollectionLog,
    ) -> None:
        """Insert the task group and its tasks, and end the state and the activity as OK, in
        one transaction."""
        log.write(f"registering {len(tasks)} tasks")
        log.write("END: collection OK")
        shutil.copyfile(log.path, venv_dir / LOG_FILE)
        frozen = (venv_dir / venv.FREEZE_FILE).read_text()
        async with self.database.session(write=True) as session:
            state = await _get_state(session, state_id)
            group = TaskGroup(
                user_id=owner.user_id,
                user_group_id=owner.user_group_id,
                origin="wheel-file" if package.wheel is not None else "pypi",
                pkg_name=package.name,
                version=package.version or "",
                python_version=package.python_version,
                path=str(venv_dir),
                venv_path=str(venv_dir / venv.VENV_SUBDIR),
                wheel_path=str(package.wheel) if package.wheel is not None else None,
                pip_extras=package.extras,
                pinned_package_versions=package.pins,
                pinned_package_versions_pre=package.pins_pre,
                pip_freeze=frozen,
            )
            session.add(group)
            await session.flush()
            rows = await insert_tasks(session, tasks, owner=package.owner, group_id=group.id)
            data = {
                **state.data,
                "status": "OK",
                "info": f"{len(rows)} tasks collected",
                "task_list": [TaskRead.model_validate(row).model_dump(mode="json") for row in rows],
                "log": log.read(),
                "freeze": frozen,
            }
            venv.write_collection_file(
                venv_dir, {**data, "install_request": package.install_request}
            )
            state.data = data
            state.runner = None
            await end_activity(session, activity_id, "OK", log.read(), group_id=group.id)

    async def _reuse(
        self,
        state_id: int,
        activity_id: int,
        package: PipPackage,
        owner: GroupOwner,
        manifest: Manifest,
        venv_dir: Path,
        log: CollectionLog,
    ) -> None:
        """Register the tasks of a complete environment that an earlier collection left."""
        earlier = venv.read_collection_file(venv_dir)
        if earlier.get("install_request") != package.install_request:
            raise CollectionError(
                f"Cannot collect package: {venv_dir} holds {package.name} {package.version} "
                f"installed for {earlier.get('install_request')}, not for "
                f"{package.install_request}; remove the folder to collect it again."
            )
        await self._check_sources_free(package, manifest)
        log.write(f"{venv_dir} holds a complete environment for this request: reusing it")
        package_root = await venv.package_root(venv_dir, package.name, log)
        await self._update(state_id, activity_id, status="collecting")
        tasks = build_tasks(
            manifest,
            package.package_source,
            venv.venv_python(venv_dir),
            package_root,
            package.version,
        )
        check_executables(tasks)
        await self._register(state_id, activity_id, package, owner, tasks, venv_dir, log)

    async def _update(
        self, state_id: int, activity_id: int, version: str | None = None, **changes: Any
    ) -> None:
        async with self.database.session(write=True) as session:
            state = await _get_state(session, state_id)
            state.data = {**state.data, **changes}
            activity = await session.get(TaskGroupActivity, activity_id)
            if activity is not None:
                activity.status = "ongoing"
                if version is not None:
                    activity.version = version

    async def _fail(
        self,
        state_id: int,
        activity_id: int | None,
        log: CollectionLog,
        reason: str,
        created: Path | None,
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
                if activity_id is not None:
                    await end_activity(session, activity_id, "failed", log.read())
        except Exception:
            self.log.exception("Could not record the failure of task collection %s", state_id)

    async def reap_orphans(self) -> None:
        """Fail the collections and activities of this host whose server process is gone
        (and clean up)."""
        host = self.runner.split(":")[0]
        async with self.database.session() as session:
            states = (
                await session.scalars(
                    select(CollectionState).where(CollectionState.runner.like(f"{host}:%"))
                )
            ).all()
            activities = (
                await session.scalars(
                    select(TaskGroupActivity).where(TaskGroupActivity.runner.like(f"{host}:%"))
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
            # (its activity is failed below, with the others of the dead server)
            await self._fail(
                state.id,
                None,
                log,
                reason,
                created if created and created.exists() else None,
            )
            shutil.rmtree(staging, ignore_errors=True)
        for activity in activities:
            if activity.runner is None or not self.activity_is_orphan(activity):
                continue
            log = CollectionLog(Path(activity.log_file or os.devnull))
            log.write("ERROR: the server running this activity stopped before it ended")
            async with self.database.session(write=True) as session:
                await end_activity(session, activity.id, "failed", log.read())
            if activity.log_file is not None:
                Path(activity.log_file).unlink(missing_ok=True)

    def activity_is_orphan(self, activity: TaskGroupActivity) -> bool:
        if activity.runner is None:
            return False
        if activity.runner == self.runner:
            return activity.id not in self._activities
        return _process_is_gone(activity.runner, self.runner)

    def _is_orphan(self, state_id: int, runner: str) -> bool:
        if runner == self.runner:
            return not self.is_running_here(state_id)
        return _process_is_gone(runner, self.runner)


def _process_is_gone(runner: str, ours: str) -> bool:
    """Whether the server `host:pid` runs on our host and is gone."""
    host, _, pid = runner.partition(":")
    if host != ours.split(":")[0] or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


async def end_activity(
    session: AsyncSession,
    activity_id: int,
    status: str,
    log: str,
    *,
    group_id: int | None = None,
) -> None:
    """Record the end of a task group activity: its status and its whole log."""
    activity = await session.get(TaskGroupActivity, activity_id)
    if activity is None:
        return
    activity.status = status
    activity.log = log
    activity.log_file = None
    activity.runner = None
    activity.timestamp_ended = utc_now()
    if group_id is not None:
        activity.taskgroupv2_id = group_id


async def insert_tasks(
    session: AsyncSession, tasks: list[TaskCreate], owner: str | None, group_id: int
) -> list[Task]:
    rows = [new_task(task, source=task.source, owner=owner) for task in tasks]
    for row in rows:
        row.taskgroupv2_id = group_id
    session.add_all(rows)
    await session.flush()
    return rows


async def _get_state(session: AsyncSession, state_id: int) -> CollectionState:
    state = await session.get(CollectionState, state_id)
    if state is None:
        raise NotFound(f"No task collection info with id={state_id}")
    return state


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run `callback` once the session's transaction is committed (never on rollback)."""

    def fire(_: Session) -> None:
        callback()

    event.listen(session.sync_session, "after_commit", fire, once=True)


# -- the endpoints' part ---------------------------------------------------------------------


async def start_pip_collection(
    session: AsyncSession,
    collector: TaskCollector,
    user: CurrentUser,
    body: TaskCollectPip,
    *,
    private: bool = False,
    user_group_id: int | None = None,
) -> CollectionState:
    """`POST task/collect/pip/` as fractal-server 2.6.4 answers it: the collection state."""
    state, _ = await start_collection(
        session, collector, user, body, private=private, user_group_id=user_group_id
    )
    return state


async def start_collection(
    session: AsyncSession,
    collector: TaskCollector,
    user: CurrentUser,
    body: TaskCollectPip,
    *,
    private: bool = False,
    user_group_id: int | None = None,
) -> tuple[CollectionState, TaskGroupActivity]:
    """Check what can be checked at once, record a pending state and a pending `collect`
    activity, start the background work once they are committed.

    An administrator's collection makes tasks without owner, in a group shared with every
    user (fractal-server 2.6.4 makes all collected tasks so); anyone else's makes tasks
    they own, in a group of their own (see `services/task_trust.py`). `private` and
    `user_group_id` (fractal-server 2.7+'s query) choose the group's user group instead:
    `new_group_user_group_id`.
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
    group_owner = GroupOwner(
        user.id,
        await new_group_user_group_id(session, user, private=private, user_group_id=user_group_id),
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
    staging = collector.staging_dir(state)
    activity = TaskGroupActivity(
        user_id=user.id,
        pkg_name=package.name,
        version=package.version or "",
        status="pending",
        action="collect",
        log_file=str(staging / LOG_FILE),
        runner=collector.runner,
    )
    session.add(activity)
    await session.flush()
    state_id, activity_id = state.id, activity.id
    after_commit(
        session,
        lambda: collector.start(state_id, activity_id, staging, package, group_owner),
    )
    return state, activity


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


async def collect_custom(
    session: AsyncSession,
    user: CurrentUser,
    body: TaskCollectCustom,
    *,
    private: bool = False,
    user_group_id: int | None = None,
) -> list[Task]:
    """Register the tasks of a package installed already (no venv, no pip), in a task group
    shared as `new_group_user_group_id` decides (checked first: a refusal creates nothing)."""
    shared_with = await new_group_user_group_id(
        session, user, private=private, user_group_id=user_group_id
    )
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
        try:
            package_root = await venv.find_package_root(body.python_interpreter, body.package_name)
        except CollectionError as error:
            raise Unprocessable(str(error)) from None
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
    group = TaskGroup(
        user_id=user.id,
        user_group_id=shared_with,
        origin="other",
        pkg_name=body.package_name or body.source,
        version=body.version or LEGACY_VERSION,
        path=str(package_root),
    )
    session.add(group)
    await session.flush()
    return await insert_tasks(session, tasks, owner=user.username, group_id=group.id)
