"""Helpers of bulk statements shared by the services that write many rows at once."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import CursorResult, Dialect, Select, Table, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Session

# Multi-row statements stay below SQLite's limit on bound parameters.
IDS_PER_STATEMENT = 5_000
T = TypeVar("T")


def dialect_insert(session: AsyncSession | Session) -> Any:
    """The INSERT of the session's database, which has ON CONFLICT (an upsert)."""
    name = session.get_bind().dialect.name
    return postgresql.insert if name == "postgresql" else sqlite.insert


def chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def table_of(model: type[DeclarativeBase]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def insert_columns(
    session: Session,
    model: type[DeclarativeBase],
    columns: Mapping[str, Sequence[Any]],
    encoded: frozenset[str] = frozenset(),
) -> CursorResult[Any] | None:
    """INSERT rows given column by column (sequences of one length) in one executemany of
    the driver; on PostgreSQL in one statement, over one array per column (`unnest`).

    The ORM's bulk INSERT spends most of its time per row collecting each one as it would an
    object's state, and Core's executemany still builds every row's parameters through the
    compiled statement; for the hundreds of thousands of index rows of an image import both
    cost more than the database's own work. Here the statement is compiled once and each
    column only goes through its bind processor (e.g. JSON to text), as SQLAlchemy would,
    except the `encoded` ones, whose values are already what the driver takes. The loops run
    in C (`map`, `zip`): row by row in Python they cost more than SQLite's inserts. On
    PostgreSQL an executemany still runs the INSERT once per row, each time with its
    row-security check (db/row_security.py); one INSERT ... SELECT FROM unnest(...) checks a
    chunk's rows in one statement (bench/row_security.py).
    """
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        unnested, plan = _unnested_insert(table_of(model), tuple(columns), connection.dialect)
        arrays = _converted(columns, plan, encoded)
        if not arrays or not arrays[0]:
            return None
        return connection.exec_driver_sql(unnested, tuple(arrays))
    sql, order, plan, positional = _compiled_insert(
        table_of(model), tuple(columns), connection.dialect
    )
    parameters: list[Any] = list(zip(*_converted(columns, plan, encoded), strict=True))
    if not parameters:
        return None
    if not positional:  # named parameters: one dict a row
        parameters = [dict(zip(order, value, strict=True)) for value in parameters]
    # One row is an execute, not an executemany: its result knows the new row's id.
    return connection.exec_driver_sql(sql, parameters)


def insert_columns_numbered(
    session: Session,
    model: type[DeclarativeBase],
    columns: Mapping[str, Sequence[Any]],
    read_back_ids: Callable[[], Sequence[int]],
) -> Sequence[int]:
    """`insert_columns` into a table with an integer primary key `id`; the new rows' ids, in
    the order of the rows.

    executemany without RETURNING is the fast path of both drivers (with RETURNING, SQLite
    inserts row by row). SQLite gives each new row the largest id so far plus one: when the
    largest id afterwards is the one before plus the number of rows, the new ids are those
    in between, in order; one row's id is the one its insert reports (no other statement).
    Otherwise (PostgreSQL's sequences, SQLite past its largest id), `read_back_ids` finds
    them, e.g. by a unique column.
    """
    largest_id = _largest_id(table_of(model))
    rows = len(next(iter(columns.values()), ()))
    connection = session.connection()
    if connection.dialect.name == "sqlite" and rows == 1:  # adding one image
        result = insert_columns(session, model, columns)
        if result is not None and result.lastrowid:
            return [result.lastrowid]
    elif connection.dialect.name == "sqlite":
        before = connection.scalar(largest_id) or 0
        insert_columns(session, model, columns)
        if connection.scalar(largest_id) == before + rows:
            return range(before + 1, before + rows + 1)
    else:
        insert_columns(session, model, columns)
    return read_back_ids()


@functools.lru_cache(maxsize=8)
def _largest_id(table: Table) -> Select[int | None]:
    """SELECT max(id): built once per table, it is not built again for each one-image write."""
    return select(func.max(table.c.id))


def _converted(
    columns: Mapping[str, Sequence[Any]],
    plan: Sequence[tuple[str, Any]],
    encoded: frozenset[str],
) -> list[Sequence[Any]]:
    """The columns in the plan's order, each through its bind processor (unless `encoded`)."""
    ordered = []
    for key, convert in plan:
        column = columns[key]
        if convert is not None and key not in encoded:
            column = list(map(convert, column))
        ordered.append(column)
    return ordered


@functools.lru_cache(maxsize=32)
def _unnested_insert(
    table: Table, keys: tuple[str, ...], dialect: Dialect
) -> tuple[str, list[tuple[str, Any]]]:
    """PostgreSQL's INSERT of `keys` into `table` from one array parameter per column, and
    each column's bind processor."""
    quote = dialect.identifier_preparer.quote
    names = ", ".join(quote(table.c[key].name) for key in keys)
    arrays = ", ".join(
        f"${number}::{table.c[key].type.compile(dialect)}[]"
        for number, key in enumerate(keys, start=1)
    )
    sql = f"INSERT INTO {quote(table.name)} ({names}) SELECT * FROM unnest({arrays})"
    plan = [(key, table.c[key].type.dialect_impl(dialect).bind_processor(dialect)) for key in keys]
    return sql, plan


@functools.lru_cache(maxsize=32)
def _compiled_insert(
    table: Table, keys: tuple[str, ...], dialect: Dialect
) -> tuple[str, list[str], list[tuple[str, Any]], bool]:
    """The INSERT of `keys` into `table` for `dialect`: its SQL, the order of its parameters,
    each with its column's bind processor (None: the value as it is), and whether the
    parameters are positional."""
    compiled = insert(table).compile(dialect=dialect, column_keys=list(keys))
    order = list(compiled.positiontup or []) if compiled.positional else list(keys)
    plan = [(key, table.c[key].type.dialect_impl(dialect).bind_processor(dialect)) for key in order]
    return compiled.string, order, plan, compiled.positional
