"""SQLAlchemy ORM models.

Images are rows, not a JSON list on the dataset: every image has one row in `image`, plus one
row per attribute in `image_attribute` and per type in `image_type`, so that filters run as
index look-ups. `attribute_summary` and `type_summary` hold, per dataset, how many images carry
each attribute value and each type key; they are kept up to date on every write so that the
summary that every image query returns costs a few rows instead of a scan of the dataset.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utc_now() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp; SQLite drops the zone, so it is put back on read."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None:
            value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        list[Any]: JSON,
        datetime: UTCDateTime,
    }


class User(Base):
    __tablename__ = "user_account"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(255), unique=True)
    email: Mapped[str] = mapped_column(String(320))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_superuser: Mapped[bool] = mapped_column(Boolean, default=False)
    is_verified: Mapped[bool] = mapped_column(Boolean, default=True)
    timestamp_created: Mapped[datetime] = mapped_column(default=utc_now)


class LinkUserProject(Base):
    __tablename__ = "link_user_project"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Project(Base):
    __tablename__ = "project"
    # No INSERT ... RETURNING (the id comes from the sequence first): under row-level security
    # (row_security.py) a project is visible only once its creator's membership row exists,
    # and PostgreSQL checks a returned row against the visibility policy.
    __table_args__ = ({"implicit_returning": False},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    timestamp_created: Mapped[datetime] = mapped_column(default=utc_now)


class Dataset(Base):
    __tablename__ = "dataset"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), index=True
    )
    zarr_dir: Mapped[str] = mapped_column(Text)
    filters: Mapped[dict[str, Any]] = mapped_column(default=lambda: {"attributes": {}, "types": {}})
    history: Mapped[list[Any]] = mapped_column(default=list)
    timestamp_created: Mapped[datetime] = mapped_column(default=utc_now)
    # Kept up to date with every image write, like the summaries: the total of an unfiltered
    # query is then read, not counted.
    image_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    project: Mapped[Project] = relationship(lazy="joined")


class Image(Base):
    __tablename__ = "image"
    __table_args__ = (
        UniqueConstraint("dataset_id", "zarr_url", name="uq_image_dataset_zarr_url"),
        Index("ix_image_dataset_order", "dataset_id", "id"),
    )

    # Insertion order within a dataset is the order of `id`.
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset.id", ondelete="CASCADE"))
    zarr_url: Mapped[str] = mapped_column(Text)
    origin: Mapped[str | None] = mapped_column(Text)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    types: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ImageAttribute(Base):
    """One attribute of one image; `value_key` is the value in its matching form."""

    __tablename__ = "image_attribute"
    __table_args__ = (
        Index("ix_image_attribute_lookup", "dataset_id", "key", "value_key", "image_id"),
        # One B-tree less per row on SQLite (migration 0010); nothing reads a rowid.
        {"sqlite_with_rowid": False},
    )

    image_id: Mapped[int] = mapped_column(
        ForeignKey("image.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(Integer)
    value_key: Mapped[str] = mapped_column(Text)


class ImageType(Base):
    __tablename__ = "image_type"
    __table_args__ = (
        Index("ix_image_type_lookup", "dataset_id", "key", "value", "image_id"),
        {"sqlite_with_rowid": False},
    )

    image_id: Mapped[int] = mapped_column(
        ForeignKey("image.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(Integer)
    value: Mapped[bool] = mapped_column(Boolean)


class AttributeSummary(Base):
    """How many images of a dataset carry each attribute value (rows with 0 are deleted)."""

    __tablename__ = "attribute_summary"

    dataset_id: Mapped[int] = mapped_column(
        ForeignKey("dataset.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    value_key: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    image_count: Mapped[int] = mapped_column(Integer)


class TypeSummary(Base):
    """How many images of a dataset carry each type key (whatever its value, and true)."""

    __tablename__ = "type_summary"

    dataset_id: Mapped[int] = mapped_column(
        ForeignKey("dataset.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    image_count: Mapped[int] = mapped_column(Integer)
    true_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Task(Base):
    """A task of the catalogue. `source` is unique; `owner` is None for collected tasks."""

    __tablename__ = "task"
    # Covers the fingerprint of a group's tasks (count, largest id, latest update) without
    # reading the rows, whose argument schemas make them long.
    __table_args__ = (Index("ix_task_taskgroupv2_id", "taskgroupv2_id", "timestamp_updated"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(Text, unique=True)
    owner: Mapped[str | None] = mapped_column(Text)
    version: Mapped[str | None] = mapped_column(Text)
    command_non_parallel: Mapped[str | None] = mapped_column(Text)
    command_parallel: Mapped[str | None] = mapped_column(Text)
    meta_non_parallel: Mapped[dict[str, Any]] = mapped_column(default=dict)
    meta_parallel: Mapped[dict[str, Any]] = mapped_column(default=dict)
    args_schema_non_parallel: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    args_schema_parallel: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    args_schema_version: Mapped[str | None] = mapped_column(Text)
    docs_info: Mapped[str | None] = mapped_column(Text)
    docs_link: Mapped[str | None] = mapped_column(Text)
    input_types: Mapped[dict[str, Any]] = mapped_column(default=dict)
    output_types: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Manifest fields newer than fractal-server 2.6.4, kept for the task catalogue.
    category: Mapped[str | None] = mapped_column(Text)
    modality: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    authors: Mapped[str | None] = mapped_column(Text)
    # fractal-server 2.26's core tasks: an administrator's choice, per task group (0009).
    is_core: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # The package (or custom collection) the task came with; None only for rows made behind
    # the API's back (tests, old tools), to which the pre-group rules apply.
    taskgroupv2_id: Mapped[int | None] = mapped_column(
        ForeignKey("task_group.id", ondelete="SET NULL")
    )
    # Set on every insert and update through SQLAlchemy (None for rows older than 0007): with
    # the count and the largest id, it tells whether a group's tasks changed (listing cache).
    timestamp_updated: Mapped[datetime | None] = mapped_column(default=utc_now, onupdate=utc_now)


class TaskGroup(Base):
    """One collected package version, or one custom collection / hand-made task (fractal-server
    2.7+'s `TaskGroupV2`): whose it is, who else may use it, and where its venv lives.

    `user_id` is None only for groups migrated from owner-less tasks when the database had no
    administrator yet. `pip_freeze` is kept when the venv is removed (deactivation), so that
    reactivation reinstalls the same versions.
    """

    __tablename__ = "task_group"
    __table_args__ = (Index("ix_task_group_pkg_version", "pkg_name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), index=True
    )
    user_group_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_group.id", ondelete="SET NULL"), index=True
    )
    origin: Mapped[str] = mapped_column(String(16))
    pkg_name: Mapped[str] = mapped_column(Text)
    version: Mapped[str] = mapped_column(Text)
    python_version: Mapped[str | None] = mapped_column(Text)
    path: Mapped[str | None] = mapped_column(Text)
    venv_path: Mapped[str | None] = mapped_column(Text)
    wheel_path: Mapped[str | None] = mapped_column(Text)
    pip_extras: Mapped[str | None] = mapped_column(Text)
    # 2.6.4's pins, installed after the package (fractal-server 2.9+'s `_post`).
    pinned_package_versions: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # fractal-server 2.9+'s pins installed before the package (0009), as collected; a record
    # only: reactivation installs `pip_freeze`, which has every package at its version.
    pinned_package_versions_pre: Mapped[dict[str, Any]] = mapped_column(
        default=dict, server_default="{}"
    )
    pip_freeze: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    timestamp_created: Mapped[datetime] = mapped_column(default=utc_now)
    timestamp_last_used: Mapped[datetime] = mapped_column(default=utc_now)

    task_list: Mapped[list[Task]] = relationship(order_by="Task.id", lazy="raise")


class TaskGroupActivity(Base):
    """One collection, deactivation, reactivation or deletion of a task group, with its log.

    `runner` is `host:pid` of the server process that runs it (as for `CollectionState`), so
    that an activity whose server died can be told from one still running; `log` is written
    when it ends.
    """

    __tablename__ = "task_group_activity"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), index=True
    )
    taskgroupv2_id: Mapped[int | None] = mapped_column(
        ForeignKey("task_group.id", ondelete="SET NULL"), index=True
    )
    timestamp_started: Mapped[datetime] = mapped_column(default=utc_now)
    timestamp_ended: Mapped[datetime | None] = mapped_column()
    pkg_name: Mapped[str] = mapped_column(Text)
    version: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(16))
    log: Mapped[str | None] = mapped_column(Text)
    # While it runs: the file its log grows in, and `host:pid` of the server running it.
    log_file: Mapped[str | None] = mapped_column(Text)
    runner: Mapped[str | None] = mapped_column(String(300))


class Workflow(Base):
    __tablename__ = "workflow"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_workflow_project_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    # fractal-server 2.26's free text about the workflow (none: not described).
    description: Mapped[str | None] = mapped_column(Text)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), index=True
    )
    timestamp_created: Mapped[datetime] = mapped_column(default=utc_now)

    project: Mapped[Project] = relationship(lazy="joined")
    task_list: Mapped[list[WorkflowTask]] = relationship(
        order_by="WorkflowTask.order",
        cascade="all, delete-orphan",
        passive_deletes=True,
        lazy="selectin",
    )


class WorkflowTask(Base):
    __tablename__ = "workflow_task"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workflow_id: Mapped[int] = mapped_column(
        ForeignKey("workflow.id", ondelete="CASCADE"), index=True
    )
    order: Mapped[int] = mapped_column(Integer)
    task_id: Mapped[int] = mapped_column(ForeignKey("task.id"), index=True)
    task_type: Mapped[str] = mapped_column(String(32))
    meta_non_parallel: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    meta_parallel: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    args_non_parallel: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    args_parallel: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    input_filters: Mapped[dict[str, Any]] = mapped_column(
        default=lambda: {"attributes": {}, "types": {}}
    )

    task: Mapped[Task] = relationship(lazy="joined")


class Job(Base):
    """A workflow slice applied to a dataset, run by a detached job process.

    The process reports through `<working_dir>/events.jsonl`; `events_applied` is the sequence
    number of the last event the server applied, which makes re-reading the file harmless.
    """

    __tablename__ = "job"
    __table_args__ = (Index("ix_job_dataset_status", "dataset_id", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("project.id", ondelete="SET NULL"), index=True
    )
    workflow_id: Mapped[int | None] = mapped_column(
        ForeignKey("workflow.id", ondelete="SET NULL"), index=True
    )
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("dataset.id", ondelete="SET NULL"))
    user_email: Mapped[str] = mapped_column(String(320))
    owner: Mapped[str] = mapped_column(String(255), index=True)
    slurm_account: Mapped[str | None] = mapped_column(Text)
    project_dump: Mapped[dict[str, Any]] = mapped_column()
    workflow_dump: Mapped[dict[str, Any]] = mapped_column()
    dataset_dump: Mapped[dict[str, Any]] = mapped_column()
    worker_init: Mapped[str | None] = mapped_column(Text)
    working_dir: Mapped[str | None] = mapped_column(Text)
    working_dir_user: Mapped[str | None] = mapped_column(Text)
    first_task_index: Mapped[int] = mapped_column(Integer)
    last_task_index: Mapped[int] = mapped_column(Integer)
    start_timestamp: Mapped[datetime] = mapped_column(default=utc_now)
    end_timestamp: Mapped[datetime | None] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default="submitted")
    log: Mapped[str | None] = mapped_column(Text)
    backend: Mapped[str] = mapped_column(String(32), default="local")
    # "<host>:<uid>" of the job process: only servers running there, as that OS user, can
    # read its files and signal it, so only they follow the job.
    runner: Mapped[str] = mapped_column(String(300), default="", index=True)
    pid: Mapped[int | None] = mapped_column(Integer)
    events_applied: Mapped[int] = mapped_column(Integer, default=0)
    # {workflow task id: {"status": ..., "calls": n}}, for status and progress views.
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Job-level filters (fractal-server 2.11+): {key: [values]} and {key: bool}, applied to the
    # images before the first task; the image status pseudo-attribute is one of the keys.
    attribute_filters: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    type_filters: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    executor_error_log: Mapped[str | None] = mapped_column(Text)


class HistoryRun(Base):
    """One run of a workflow task on a dataset by a job, with the task as it ran (frozen)."""

    __tablename__ = "history_run"
    __table_args__ = (
        Index("ix_history_run_dataset_wftask", "dataset_id", "workflowtask_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int | None] = mapped_column(
        ForeignKey("job.id", ondelete="SET NULL"), index=True
    )
    dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset.id", ondelete="CASCADE"))
    workflowtask_id: Mapped[int | None] = mapped_column(
        ForeignKey("workflow_task.id", ondelete="SET NULL")
    )
    task_id: Mapped[int | None] = mapped_column(ForeignKey("task.id", ondelete="SET NULL"))
    # The workflow task (arguments and meta included) and its task, as the job ran them.
    workflowtask_dump: Mapped[dict[str, Any]] = mapped_column()
    task_dump: Mapped[dict[str, Any]] = mapped_column()
    timestamp_started: Mapped[datetime] = mapped_column(default=utc_now)
    status: Mapped[str] = mapped_column(String(16), default="submitted")
    num_available_images: Mapped[int | None] = mapped_column(Integer)


class HistoryUnit(Base):
    """One unit of work of a run: a task call, with the images it was given and its log."""

    __tablename__ = "history_unit"
    __table_args__ = (
        Index("ix_history_unit_run_status", "history_run_id", "status", "id"),
        Index("ix_history_unit_run_logfile", "history_run_id", "logfile"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    history_run_id: Mapped[int] = mapped_column(ForeignKey("history_run.id", ondelete="CASCADE"))
    logfile: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="submitted")
    zarr_urls: Mapped[list[Any]] = mapped_column(default=list)
    has_warnings: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")


class ImageStatus(Base):
    """Each image's latest status for a workflow task (fractal-server's `HistoryImageCache`).

    Keyed by image row, so the image query joins it like an attribute; the index serves a
    status filter in image order.
    """

    __tablename__ = "image_status"
    __table_args__ = (
        Index("ix_image_status_lookup", "dataset_id", "workflowtask_id", "status", "image_id"),
    )

    image_id: Mapped[int] = mapped_column(
        ForeignKey("image.id", ondelete="CASCADE"), primary_key=True
    )
    workflowtask_id: Mapped[int] = mapped_column(
        ForeignKey("workflow_task.id", ondelete="CASCADE"), primary_key=True
    )
    dataset_id: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    latest_history_unit_id: Mapped[int | None] = mapped_column(
        ForeignKey("history_unit.id", ondelete="SET NULL")
    )


class ImageStatusSummary(Base):
    """How many images of a dataset have each status for a workflow task (rows with 0 are
    deleted): the status values of the attribute summary, and the totals of status filters,
    without counting `image_status` rows. Images without a row are `unset`."""

    __tablename__ = "image_status_summary"

    dataset_id: Mapped[int] = mapped_column(
        ForeignKey("dataset.id", ondelete="CASCADE"), primary_key=True
    )
    workflowtask_id: Mapped[int] = mapped_column(
        ForeignKey("workflow_task.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    image_count: Mapped[int] = mapped_column(Integer)


class UserGroup(Base):
    """A group of users (fractal-server 2.6.4: no access meaning; it feeds viewer paths)."""

    __tablename__ = "user_group"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    timestamp_created: Mapped[datetime] = mapped_column(default=utc_now)
    viewer_paths: Mapped[list[Any]] = mapped_column(default=list)


class LinkUserGroup(Base):
    __tablename__ = "link_user_group"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("user_group.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class UserSettings(Base):
    """A user's SLURM and SSH settings (fractal-server 2.6.4's `user_settings`), one per user."""

    __tablename__ = "user_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), unique=True
    )
    slurm_accounts: Mapped[list[Any]] = mapped_column(default=list)
    slurm_user: Mapped[str | None] = mapped_column(Text)
    cache_dir: Mapped[str | None] = mapped_column(Text)
    ssh_host: Mapped[str | None] = mapped_column(Text)
    ssh_username: Mapped[str | None] = mapped_column(Text)
    ssh_private_key_path: Mapped[str | None] = mapped_column(Text)
    ssh_tasks_dir: Mapped[str | None] = mapped_column(Text)
    ssh_jobs_dir: Mapped[str | None] = mapped_column(Text)


class CollectionState(Base):
    """A task collection (fractal-server 2.6.4's `CollectionStateV2`): `data` holds its status,
    package, venv path, info, log, freeze and task list, as 2.6.4's API shows them.

    `runner` is `host:pid` of the server process that runs the collection in its background,
    so that a collection whose server died can be told from one still running.
    """

    __tablename__ = "collection_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    timestamp: Mapped[datetime] = mapped_column(default=utc_now)
    runner: Mapped[str | None] = mapped_column(String(300))
