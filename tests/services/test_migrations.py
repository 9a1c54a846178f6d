"""Schema migrations on data: a database filled under an earlier revision keeps its rows.

On SQLite by default; with `FRACTAL_TEST_DB_URL` (PostgreSQL) each test makes a database of its
own on that server (`tests.support.databases`), so the shared test database is not touched.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Connection, MetaData, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from fractal_jupyter.cli.db import upgrade
from fractal_jupyter.db.engine import Database, alembic_config
from fractal_jupyter.db.models import ImageAttribute, Task, TaskGroup, Workflow
from tests.support.databases import fresh_database_url

PREVIOUS_REVISION = "0005"


def _upgrade_to(revision: str):  # type: ignore[no-untyped-def]
    def run(connection: Connection) -> None:
        command.upgrade(alembic_config(connection), revision)

    return run


async def _filled_at(connection: AsyncConnection, revision: str, statements: list[str]) -> None:
    """The schema of `revision`, then rows inserted in SQL (the models know only the newest)."""
    await connection.run_sync(_upgrade_to(revision))
    for statement in statements:
        await connection.execute(text(statement))


def _downgrade_to(revision: str):  # type: ignore[no-untyped-def]
    def run(connection: Connection) -> None:
        command.downgrade(alembic_config(connection), revision)

    return run


FILL = [
    "INSERT INTO user_account (id, username, email, is_active, is_superuser, is_verified, "
    "timestamp_created) VALUES (1, 'alice', 'alice@x', true, false, true, '2026-01-01')",
    "INSERT INTO project (id, name, timestamp_created) VALUES (1, 'p', '2026-01-01')",
    "INSERT INTO dataset (id, name, project_id, zarr_dir, filters, history, timestamp_created, "
    "image_count) VALUES (1, 'd', 1, '/z', '{\"attributes\": {}, \"types\": {}}', '[]', "
    "'2026-01-01', 1)",
    "INSERT INTO image (id, dataset_id, zarr_url, origin, attributes, types) "
    "VALUES (1, 1, '/z/a', NULL, '{\"well\": \"A01\"}', '{}')",
    "INSERT INTO workflow (id, name, project_id, timestamp_created) "
    "VALUES (1, 'w', 1, '2026-01-01')",
    "INSERT INTO job (id, project_id, workflow_id, dataset_id, user_email, owner, project_dump, "
    "workflow_dump, dataset_dump, first_task_index, last_task_index, start_timestamp, status, "
    "backend, runner, events_applied, progress) VALUES (1, 1, 1, 1, 'alice@x', 'alice', '{}', "
    "'{}', '{}', 0, 0, '2026-01-01', 'done', 'local', 'h:1', 3, '{}')",
]


def test_upgrade_to_history_keeps_jobs_and_images(tmp_path):
    async def run() -> tuple[list[object], list[object]]:
        async with fresh_database_url(tmp_path) as url:
            database = Database(url)
            async with database.engine.begin() as connection:
                await connection.run_sync(_upgrade_to(PREVIOUS_REVISION))
                for statement in FILL:
                    await connection.execute(text(statement))
            await database.upgrade()
            async with database.engine.connect() as connection:
                jobs = (
                    await connection.execute(
                        text(
                            "SELECT id, status, events_applied, attribute_filters, type_filters, "
                            "executor_error_log FROM job"
                        )
                    )
                ).all()
                images = (await connection.execute(text("SELECT id, zarr_url FROM image"))).all()
                # The new tables take rows that point at the old ones.
                await connection.execute(
                    text(
                        "INSERT INTO history_run (id, job_id, dataset_id, workflowtask_dump, "
                        "task_dump, timestamp_started, status) "
                        "VALUES (1, 1, 1, '{}', '{}', '2026-01-02', 'done')"
                    )
                )
                await connection.commit()
            await database.dispose()
            return [tuple(row) for row in jobs], [tuple(row) for row in images]

    jobs, images = asyncio.run(run())
    assert images == [(1, "/z/a")]
    assert len(jobs) == 1
    job_id, status, applied, attribute_filters, type_filters, error_log = jobs[0]  # type: ignore[misc]
    assert (job_id, status, applied, error_log) == (1, "done", 3, None)
    assert attribute_filters in ({}, "{}") and type_filters in ({}, "{}")


def _earlier_revisions() -> list[str]:
    """Every revision but the newest, from the migration scripts themselves (a new one is
    tested as soon as it exists)."""
    scripts = ScriptDirectory.from_config(alembic_config())
    head = scripts.get_current_head()
    return sorted(script.revision for script in scripts.walk_revisions() if script.revision != head)


# Values a generic row cannot make up (a column checked against a set of words).
KNOWN_VALUES: dict[str, object] = {"status": "done"}


def _value_for(column: Column[Any], inserted: dict[tuple[str, str], object]) -> object:
    for key in column.foreign_keys:
        return inserted.get((key.column.table.name, key.column.name))
    if column.name in KNOWN_VALUES:
        return KNOWN_VALUES[column.name]
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        python_type = str
    if python_type is bool:
        return True
    if python_type is int:
        return 1
    if python_type is float:
        return 1.5
    if python_type is datetime:
        return datetime(2026, 1, 1, tzinfo=UTC)
    if python_type in (dict, list):
        return {}
    text_value = f"{column.table.name}.{column.name}"
    length = getattr(column.type, "length", None)  # VARCHAR(n): PostgreSQL refuses longer
    return text_value[:length] if length else text_value


def _fill_every_table(connection: Connection) -> dict[str, list[tuple[Any, ...]]]:
    """One row in every table of the schema as it is (reflected), every column set,
    foreign keys pointing at the rows of the other tables: what the rows are after."""
    metadata = MetaData()
    metadata.reflect(connection)
    inserted: dict[tuple[str, str], object] = {}
    rows = {}
    for table in metadata.sorted_tables:
        if table.name == "alembic_version":
            continue
        row = {column.name: _value_for(column, inserted) for column in table.columns}
        for column in table.primary_key.columns:
            if not column.foreign_keys and column.name in row and row[column.name] == 1:
                # After the rows a migration made (the default group).
                top = connection.execute(select(func.max(column))).scalar()
                row[column.name] = (top or 0) + 1
        connection.execute(table.insert().values(row))
        inserted.update({(table.name, name): value for name, value in row.items()})
        rows[table.name] = [tuple(r) for r in connection.execute(select(table)).all()]
    return rows


def _rows_of(
    connection: Connection, columns: dict[str, list[str]]
) -> dict[str, list[tuple[Any, ...]]]:
    metadata = MetaData()
    metadata.reflect(connection, only=list(columns))
    return {
        name: [
            tuple(r)
            for r in connection.execute(
                select(*(metadata.tables[name].c[c] for c in column_names))
            ).all()
        ]
        for name, column_names in columns.items()
    }


@pytest.mark.parametrize("revision", _earlier_revisions())
def test_upgrade_from_every_earlier_revision_keeps_its_rows(tmp_path, revision):
    """A database filled under any earlier revision migrates to the newest one (as `jupyter
    fractal db upgrade` does) without losing a row or changing a kept column; then it
    serves: a server checking the schema finds it current."""

    async def run() -> tuple[dict[str, list[tuple[Any, ...]]], dict[str, list[tuple[Any, ...]]]]:
        async with fresh_database_url(tmp_path) as url:
            database = Database(url)
            async with database.engine.begin() as connection:
                await connection.run_sync(_upgrade_to(revision))
                before = await connection.run_sync(_fill_every_table)
                columns = await connection.run_sync(_column_names)
            status = await database.schema_status()
            assert status.revision == revision and not status.is_newer
            mismatch = status.mismatch()
            assert mismatch is not None and "run jupyter fractal db upgrade" in str(mismatch)
            await upgrade(url)
            await database.check_schema()  # raises unless current
            async with database.engine.connect() as connection:
                kept = await connection.run_sync(_column_names)
                after = await connection.run_sync(
                    _rows_of,
                    {
                        table: [c for c in names if c in kept.get(table, [])]
                        for table, names in columns.items()
                        if table in kept
                    },
                )
            await database.dispose()
            # Only the columns that are still there are compared.
            expected = {}
            for table, names in columns.items():
                if table not in kept:
                    continue
                positions = [i for i, c in enumerate(names) if c in kept[table]]
                expected[table] = [tuple(row[i] for i in positions) for row in before[table]]
            return expected, after

    expected, after = asyncio.run(run())
    assert after == expected
    assert all(rows for rows in after.values()), after


def _column_names(connection: Connection) -> dict[str, list[str]]:
    metadata = MetaData()
    metadata.reflect(connection)
    return {
        table.name: [column.name for column in table.columns]
        for table in metadata.sorted_tables
        if table.name != "alembic_version"
    }


# Under 0006: alice (user) and root (administrator) exist, with the group "All" (made by
# 0005, id 1); an
# administrator's collection (owner-less tasks, with its collection state), alice's own
# collection of another package, a task made by hand by alice, and a workflow using them.
COLLECTED = "pip_remote:fractal_tasks_core:2.1.0::py3.11"
MINE = "pip_local:my_tasks:0.1.0:extra1:py3.12"
FILL_0006 = [
    "INSERT INTO user_account (id, username, email, is_active, is_superuser, is_verified, "
    "timestamp_created) VALUES (1, 'alice', 'alice@x', true, false, true, '2026-01-01'), "
    "(2, 'root', 'root@x', true, true, true, '2026-01-01')",
    "INSERT INTO link_user_group (group_id, user_id) "
    "SELECT id, 1 FROM user_group WHERE name = 'All'",
    "INSERT INTO project (id, name, timestamp_created) VALUES (1, 'p', '2026-01-01')",
    "INSERT INTO workflow (id, name, project_id, timestamp_created) "
    "VALUES (1, 'w', 1, '2026-01-01')",
    *(
        "INSERT INTO task (id, name, type, source, owner, version, command_non_parallel, "
        "meta_non_parallel, meta_parallel, input_types, output_types, tags) VALUES "
        f"({task_id}, '{name}', 'non_parallel', '{source}', {owner}, {version}, "
        f"'{command}', '{{}}', '{{}}', '{{}}', '{{}}', '[]')"
        for task_id, name, source, owner, version, command in [
            (
                1,
                "Import",
                f"{COLLECTED}:import",
                "NULL",
                "'2.1.0'",
                "/t/.fractal/fractal-tasks-core2.1.0/venv/bin/python /t/s/import.py",
            ),
            (
                2,
                "Project",
                f"{COLLECTED}:project",
                "NULL",
                "'2.1.0'",
                "/t/.fractal/fractal-tasks-core2.1.0/venv/bin/python /t/s/project.py",
            ),
            (
                3,
                "Mine",
                f"{MINE}:mine",
                "'alice'",
                "'0.1.0'",
                "/t/.fractal/my-tasks0.1.0/venv/bin/python /t/m/mine.py",
            ),
            (4, "By hand", "alice:by-hand", "'alice'", "NULL", "/usr/bin/true"),
            (5, "Roots", "root:roots", "'root'", "'1'", "/usr/bin/true"),
        ]
    ),
    'INSERT INTO workflow_task (id, workflow_id, "order", task_id, task_type, '
    "input_filters) VALUES (1, 1, 0, 1, 'non_parallel', '{}'), "
    "(2, 1, 1, 4, 'non_parallel', '{}')",
    "INSERT INTO collection_state (id, data, timestamp) VALUES (1, "
    '\'{"status": "OK", "freeze": "fractal-tasks-core==2.1.0\\nnumpy==2.0.0\\n", '
    '"task_list": [{"id": 1}, {"id": 2}]}\', \'2026-02-03 04:05:06\')',
]


def test_upgrade_to_task_groups_groups_every_task(tmp_path):
    async def run() -> tuple[list[Any], list[Any], list[Any]]:
        async with fresh_database_url(tmp_path) as url:
            database = Database(url)
            async with database.engine.begin() as connection:
                await connection.run_sync(_upgrade_to("0006"))
                for statement in FILL_0006:
                    await connection.execute(text(statement))
            await database.upgrade()
            async with database.engine.connect() as connection:
                groups = (
                    await connection.execute(
                        text(
                            "SELECT id, user_id, user_group_id, origin, pkg_name, version, "
                            "python_version, path, venv_path, pip_extras, pip_freeze, active, "
                            "timestamp_created FROM task_group ORDER BY id"
                        )
                    )
                ).all()
                tasks = (
                    await connection.execute(
                        text("SELECT id, taskgroupv2_id FROM task ORDER BY id")
                    )
                ).all()
                workflow = (
                    await connection.execute(
                        text('SELECT task_id FROM workflow_task ORDER BY "order"')
                    )
                ).all()
            await database.dispose()
            return [tuple(row) for row in groups], [tuple(row) for row in tasks], workflow

    groups, tasks, workflow = asyncio.run(run())
    by_id = {group[0]: group for group in groups}
    group_of = dict(tasks)
    assert [tuple(row) for row in workflow] == [(1,), (4,)]
    assert len(groups) == 4 and set(group_of.values()) == set(by_id)
    # The administrator's collection: one group, the first administrator's, shared with All.
    assert group_of[1] == group_of[2]
    collected = by_id[group_of[1]]
    assert collected[1:12] == (
        2,
        1,
        "pypi",
        "fractal-tasks-core",
        "2.1.0",
        "3.11",
        "/t/.fractal/fractal-tasks-core2.1.0",
        "/t/.fractal/fractal-tasks-core2.1.0/venv",
        None,
        "fractal-tasks-core==2.1.0\nnumpy==2.0.0\n",
        True,
    )
    assert str(collected[12]).startswith("2026-02-03 04:05:06")
    # alice's collection: hers, private, a wheel, with its extras.
    mine = by_id[group_of[3]]
    assert mine[1:10] == (
        1,
        None,
        "wheel-file",
        "my-tasks",
        "0.1.0",
        "3.12",
        "/t/.fractal/my-tasks0.1.0",
        "/t/.fractal/my-tasks0.1.0/venv",
        "extra1",
    )
    assert mine[10] is None
    # Tasks made by hand: a group each, origin other; an administrator's is shared.
    assert by_id[group_of[4]][1:7] == (1, None, "other", "By hand", "0", None)
    assert by_id[group_of[5]][1:7] == (2, 1, "other", "Roots", "1", None)


def test_upgrade_to_workflow_description_keeps_workflows(tmp_path):
    """0008: workflows made under 0007 keep their rows and tasks, with no description; the
    new column then takes one (and the ORM reads it)."""

    async def run() -> tuple[list[Any], list[Any], list[Any]]:
        async with fresh_database_url(tmp_path) as url:
            database = Database(url)
            async with database.engine.begin() as connection:
                await _filled_at(
                    connection,
                    "0007",
                    [
                        *FILL[:2],
                        "INSERT INTO workflow (id, name, project_id, timestamp_created) "
                        "VALUES (1, 'w', 1, '2026-01-01'), (2, 'v', 1, '2026-01-02')",
                        "INSERT INTO task (id, name, type, source, version, command_non_parallel, "
                        "meta_non_parallel, meta_parallel, input_types, output_types, tags) VALUES "
                        "(1, 't', 'non_parallel', 'alice:t', '1', '/usr/bin/true', '{}', '{}', "
                        "'{}', '{}', '[]')",
                        'INSERT INTO workflow_task (id, workflow_id, "order", task_id, task_type, '
                        "input_filters) VALUES (1, 1, 0, 1, 'non_parallel', '{}')",
                    ],
                )
            await database.upgrade()
            async with database.engine.begin() as connection:
                before = (
                    await connection.execute(
                        text("SELECT id, name, project_id, description FROM workflow ORDER BY id")
                    )
                ).all()
                await connection.execute(
                    text("UPDATE workflow SET description = 'Segment nuclei' WHERE id = 2")
                )
            async with database.session() as session:
                described = [
                    (row.id, row.description)
                    for row in (await session.scalars(select(Workflow).order_by(Workflow.id)))
                ]
                steps = (
                    await session.execute(text("SELECT workflow_id, task_id FROM workflow_task"))
                ).all()
            await database.dispose()
            return [tuple(row) for row in before], described, [tuple(row) for row in steps]

    before, described, steps = asyncio.run(run())
    assert before == [(1, "w", 1, None), (2, "v", 1, None)]
    assert described == [(1, None), (2, "Segment nuclei")]
    assert steps == [(1, 1)]


def test_upgrade_to_task_core_makes_no_task_core_and_no_pre_pins(tmp_path):
    """0009: tasks and task groups made under 0008 keep their rows; every task is not core
    and every group has no pins before its package (NOT NULL columns, filled by the
    migration); the ORM then reads and writes them."""

    async def run() -> tuple[list[Any], list[Any], list[Any]]:
        async with fresh_database_url(tmp_path) as url:
            database = Database(url)
            async with database.engine.begin() as connection:
                await _filled_at(
                    connection,
                    "0008",
                    [
                        *FILL[:1],
                        "INSERT INTO task_group (id, user_id, origin, pkg_name, version, "
                        "pinned_package_versions, active, timestamp_created, timestamp_last_used) "
                        "VALUES (1, 1, 'pypi', 'pkg', '1.0', '{\"numpy\": \"2.0.0\"}', true, "
                        "'2026-01-01', '2026-01-01')",
                        "INSERT INTO task (id, name, type, source, version, command_non_parallel, "
                        "meta_non_parallel, meta_parallel, input_types, output_types, tags, "
                        "taskgroupv2_id) VALUES (1, 't', 'non_parallel', 'alice:t', '1', "
                        "'/usr/bin/true', '{}', '{}', '{}', '{}', '[]', 1), (2, 'u', "
                        "'non_parallel', 'alice:u', '1', '/usr/bin/true', '{}', '{}', '{}', '{}', "
                        "'[]', 1)",
                    ],
                )
            await database.upgrade()
            async with database.engine.begin() as connection:
                tasks = (
                    await connection.execute(
                        text("SELECT id, name, taskgroupv2_id, is_core FROM task ORDER BY id")
                    )
                ).all()
            async with database.session() as session:
                group = await session.get(TaskGroup, 1)
                assert group is not None
                pins = (group.pinned_package_versions_pre, group.pinned_package_versions)
                group.pinned_package_versions_pre = {"setuptools": "70.0"}
                task = await session.get(Task, 2)
                assert task is not None
                task.is_core = True
                await session.commit()
            async with database.session() as session:
                group = await session.get(TaskGroup, 1)
                assert group is not None
                after = [
                    group.pinned_package_versions_pre,
                    *(
                        (row.id, row.is_core)
                        for row in await session.scalars(select(Task).order_by(Task.id))
                    ),
                ]
            await database.dispose()
            return [(i, n, g, bool(c)) for i, n, g, c in tasks], list(pins), after

    tasks, pins, after = asyncio.run(run())
    assert tasks == [(1, "t", 1, False), (2, "u", 1, False)]
    assert pins == [{}, {"numpy": "2.0.0"}]
    assert after == [{"setuptools": "70.0"}, (1, False), (2, True)]


def test_upgrade_to_index_tables_without_rowid_keeps_the_index_and_its_filters(tmp_path):
    """0010: the index rows of images stored under 0009 are kept (on SQLite copied into
    tables without a rowid), a filter still finds its images through them, a deleted image
    still takes its index rows along (ON DELETE CASCADE), and a downgrade gives the rows back
    in rowid tables."""
    index_rows = {
        "image_attribute": "SELECT image_id, key, dataset_id, value_key FROM image_attribute",
        "image_type": "SELECT image_id, key, dataset_id, value FROM image_type",
    }

    def definitions(connection: Connection) -> list[str]:
        if connection.dialect.name != "sqlite":
            return []
        return [
            connection.execute(
                text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :name"),
                {"name": name},
            ).scalar_one()
            for name in index_rows
        ]

    def rows(connection: Connection) -> dict[str, list[tuple[Any, ...]]]:
        return {
            name: sorted(tuple(row) for row in connection.execute(text(query)))
            for name, query in index_rows.items()
        }

    async def run() -> tuple[Any, ...]:
        async with fresh_database_url(tmp_path) as url:
            database = Database(url)
            async with database.engine.begin() as connection:
                await _filled_at(
                    connection,
                    "0009",
                    [
                        *FILL[:3],
                        "INSERT INTO image (id, dataset_id, zarr_url, origin, attributes, types) "
                        'VALUES (1, 1, \'/z/a\', NULL, \'{"well": "A01", "row": 1}\', '
                        "'{\"is_3D\": true}'), (2, 1, '/z/b', NULL, '{\"well\": \"B01\"}', '{}')",
                        "INSERT INTO image_attribute (image_id, key, dataset_id, value_key) VALUES "
                        "(1, 'well', 1, 's:A01'), (1, 'row', 1, 'n:1'), (2, 'well', 1, 's:B01')",
                        "INSERT INTO image_type (image_id, key, dataset_id, value) "
                        "VALUES (1, 'is_3D', 1, true)",
                    ],
                )
                before = await connection.run_sync(rows)
            await database.upgrade()
            async with database.engine.begin() as connection:
                upgraded = await connection.run_sync(definitions)
                after = await connection.run_sync(rows)
            async with database.session() as session:
                found = (
                    await session.scalars(
                        select(ImageAttribute.image_id).where(
                            ImageAttribute.dataset_id == 1,
                            ImageAttribute.key == "well",
                            ImageAttribute.value_key == "s:B01",
                        )
                    )
                ).all()
            async with database.engine.begin() as connection:
                await connection.execute(text("DELETE FROM image WHERE id = 2"))
                after_delete = await connection.run_sync(rows)
                await connection.run_sync(_downgrade_to("0009"))
                downgraded = await connection.run_sync(definitions)
                after_downgrade = await connection.run_sync(rows)
            await database.dispose()
            return before, upgraded, after, found, after_delete, downgraded, after_downgrade

    before, upgraded, after, found, after_delete, downgraded, after_downgrade = asyncio.run(run())
    assert after == before and found == [2]
    assert (
        after_delete
        == after_downgrade
        == {
            "image_attribute": [(1, "row", 1, "n:1"), (1, "well", 1, "s:A01")],
            "image_type": [(1, "is_3D", 1, True)],
        }
    )
    if upgraded:  # SQLite
        assert all(sql.rstrip().endswith("WITHOUT ROWID") for sql in upgraded), upgraded
        assert not any("WITHOUT ROWID" in sql for sql in downgraded), downgraded
