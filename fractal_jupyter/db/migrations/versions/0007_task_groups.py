"""task groups: every task belongs to a group (a collected package version, or a custom task)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04

Existing tasks are put into groups:
- collected tasks (source `pip_remote|pip_local:<name>:<version>:<extras>:py<X.Y>:<slug>`):
  one group per package source and owner, with the folder and venv their commands point at,
  and the freeze of the collection that made them (`collection_state`);
- every other task (made by hand, or by a custom collection): a group of its own, origin
  `other`.
A group of owner-less tasks (an administrator's collection) belongs to the first
administrator and is shared with the group "All", as every user's jobs could run those tasks;
so is a group of an administrator's tasks. Other users' groups are private to them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

DEFAULT_GROUP = "All"
PIP_KINDS = {"pip_remote": "pypi", "pip_local": "wheel-file"}
LEGACY_VERSION = "0"


def upgrade() -> None:
    op.create_table(
        "task_group",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("user_group_id", sa.Integer(), nullable=True),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("pkg_name", sa.Text(), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("python_version", sa.Text(), nullable=True),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("venv_path", sa.Text(), nullable=True),
        sa.Column("wheel_path", sa.Text(), nullable=True),
        sa.Column("pip_extras", sa.Text(), nullable=True),
        sa.Column("pinned_package_versions", sa.JSON(), nullable=False),
        sa.Column("pip_freeze", sa.Text(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("timestamp_created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("timestamp_last_used", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["user_account.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["user_group_id"], ["user_group.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("task_group", schema=None) as batch_op:
        batch_op.create_index("ix_task_group_pkg_version", ["pkg_name", "version"], unique=False)
        batch_op.create_index(batch_op.f("ix_task_group_user_id"), ["user_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_task_group_user_group_id"), ["user_group_id"], unique=False
        )
    op.create_table(
        "task_group_activity",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("taskgroupv2_id", sa.Integer(), nullable=True),
        sa.Column("timestamp_started", sa.DateTime(timezone=True), nullable=False),
        sa.Column("timestamp_ended", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pkg_name", sa.Text(), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("log", sa.Text(), nullable=True),
        sa.Column("log_file", sa.Text(), nullable=True),
        sa.Column("runner", sa.String(length=300), nullable=True),
        sa.ForeignKeyConstraint(["taskgroupv2_id"], ["task_group.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["user_id"], ["user_account.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("task_group_activity", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_task_group_activity_taskgroupv2_id"), ["taskgroupv2_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_task_group_activity_user_id"), ["user_id"], unique=False
        )
    # Not a batch (a copy of `task` on SQLite): other tables' foreign keys point at `task`.
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "ALTER TABLE task ADD COLUMN taskgroupv2_id INTEGER "
            "REFERENCES task_group (id) ON DELETE SET NULL"
        )
    else:
        op.add_column("task", sa.Column("taskgroupv2_id", sa.Integer(), nullable=True))
        op.create_foreign_key(
            "fk_task_taskgroupv2_id_task_group",
            "task",
            "task_group",
            ["taskgroupv2_id"],
            ["id"],
            ondelete="SET NULL",
        )
    op.add_column("task", sa.Column("timestamp_updated", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_task_taskgroupv2_id", "task", ["taskgroupv2_id", "timestamp_updated"])
    _group_existing_tasks(op.get_bind())


def _group_existing_tasks(connection: sa.Connection) -> None:
    task = sa.table(
        "task",
        sa.column("id", sa.Integer),
        sa.column("name", sa.Text),
        sa.column("source", sa.Text),
        sa.column("owner", sa.Text),
        sa.column("version", sa.Text),
        sa.column("command_non_parallel", sa.Text),
        sa.column("command_parallel", sa.Text),
        sa.column("taskgroupv2_id", sa.Integer),
    )
    users = {
        row.username: (row.id, bool(row.is_superuser))
        for row in connection.execute(
            sa.text("SELECT id, username, is_superuser FROM user_account ORDER BY id")
        )
    }
    first_admin = next((uid for uid, admin in users.values() if admin), None)
    everyone = connection.scalar(
        sa.text("SELECT id FROM user_group WHERE name = :name").bindparams(name=DEFAULT_GROUP)
    )
    collections = _collections_by_task(connection)

    groups: dict[tuple[str, str | None], dict[str, Any]] = {}
    members: dict[tuple[str, str | None], list[int]] = {}
    for row in connection.execute(sa.select(task).order_by(task.c.id)):
        owner: str | None = row.owner
        if owner is None:
            user_id, shared = first_admin, True
        else:
            user_id, admin = users.get(owner, (None, False))
            shared = admin
        parts = row.source.split(":")
        if parts[0] in PIP_KINDS and len(parts) >= 6:
            key = (":".join(parts[:5]), owner)
            if key not in groups:
                groups[key] = _pip_group(row, parts, collections.get(row.id))
        else:
            key = (f"task:{row.id}", owner)
            groups[key] = {
                "origin": "other",
                "pkg_name": row.name,
                "version": row.version or LEGACY_VERSION,
                "pinned_package_versions": {},
                "timestamp_created": datetime.now(UTC),
            }
        groups[key].update(user_id=user_id, user_group_id=everyone if shared else None)
        members.setdefault(key, []).append(row.id)

    task_group = sa.table(
        "task_group",
        *(
            sa.column(name)
            for name in (
                "user_id",
                "user_group_id",
                "origin",
                "pkg_name",
                "version",
                "python_version",
                "path",
                "venv_path",
                "pip_extras",
                "pip_freeze",
            )
        ),
        sa.column("active", sa.Boolean),
        sa.column("timestamp_created", sa.DateTime(timezone=True)),
        sa.column("timestamp_last_used", sa.DateTime(timezone=True)),
        sa.column("pinned_package_versions", sa.JSON),
        sa.column("id", sa.Integer),
    )
    for key, values in groups.items():
        values = {
            **values,
            "active": True,
            "timestamp_last_used": values["timestamp_created"],
        }
        group_id = connection.scalar(
            sa.insert(task_group).values(**values).returning(task_group.c.id)
        )
        connection.execute(
            sa.update(task).where(task.c.id.in_(members[key])).values(taskgroupv2_id=group_id)
        )


def _collections_by_task(connection: sa.Connection) -> dict[int, tuple[dict[str, Any], Any]]:
    """The data and timestamp of the collection that made each collected task."""
    found: dict[int, tuple[dict[str, Any], Any]] = {}
    for row in connection.execute(sa.text("SELECT data, timestamp FROM collection_state")):
        data = row.data
        if isinstance(data, str):  # SQLite's text (PostgreSQL's driver decodes JSON itself)
            try:
                data = json.loads(data or "{}")
            except ValueError:
                continue  # not a collection's record
        if not isinstance(data, dict) or data.get("status") != "OK":
            continue
        for entry in data.get("task_list") or []:
            if isinstance(entry, dict) and isinstance(entry.get("id"), int):
                found[entry["id"]] = (data, row.timestamp)
    return found


def _pip_group(
    row: Any, parts: list[str], collection: tuple[dict[str, Any], Any] | None
) -> dict[str, Any]:
    kind, name, version, extras, python = parts[:5]
    command = row.command_non_parallel or row.command_parallel or ""
    interpreter = PurePosixPath(command.split()[0]) if command.split() else None
    venv_path = path = None
    if interpreter is not None and interpreter.parts[-3:-1] == ("venv", "bin"):
        venv = interpreter.parent.parent
        venv_path, path = str(venv), str(venv.parent)
    pins: dict[str, str] = {}
    freeze: str | None = None
    created = datetime.now(UTC)
    if collection is not None:
        data, timestamp = collection
        freeze = data.get("freeze") or None
        created = _as_datetime(timestamp) or created
    if path is not None:
        pins = _pins_on_disk(PurePosixPath(path) / "collection.json")
    return {
        "origin": PIP_KINDS[kind],
        "pkg_name": name.replace("_", "-"),
        "version": version or LEGACY_VERSION,
        "pip_extras": extras or None,
        "python_version": python.removeprefix("py") or None,
        "path": path,
        "venv_path": venv_path,
        "pinned_package_versions": pins,
        "pip_freeze": freeze,
        "timestamp_created": created,
    }


def _pins_on_disk(collection_file: PurePosixPath) -> dict[str, str]:
    """The pins of the collection, from the file it left in its folder (none when unreadable)."""
    try:
        with open(collection_file) as file:
            request = json.load(file).get("install_request", {})
    except (OSError, ValueError, AttributeError):
        return {}
    pins = request.get("pinned_package_versions") if isinstance(request, dict) else None
    return dict(pins) if isinstance(pins, dict) else {}


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def downgrade() -> None:
    op.drop_index("ix_task_taskgroupv2_id", table_name="task")
    op.drop_column("task", "timestamp_updated")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint("fk_task_taskgroupv2_id_task_group", "task", type_="foreignkey")
    op.drop_column("task", "taskgroupv2_id")
    op.drop_table("task_group_activity")
    op.drop_table("task_group")
