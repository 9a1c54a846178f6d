"""Helpers of bulk statements shared by the services that write many rows at once."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Dialect, Table, insert
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


def insert_rows(
    session: Session, model: type[DeclarativeBase], rows: Sequence[Mapping[str, Any]]
) -> None:
    """INSERT many rows (dicts with the same keys) in one executemany of the driver.

    The ORM's bulk INSERT spends most of its time per row collecting each one as it would an
    object's state, and Core's executemany still builds every row's parameters through the
    compiled statement; for the hundreds of thousands of index rows of an image import both
    cost more than the database's own work. Here the statement is compiled once and each row
    only goes through its columns' bind processors (e.g. JSON to text), as SQLAlchemy would.
    """
    if not rows:
        return
    connection = session.connection()
    sql, order, plan, positional = _compiled_insert(
        table_of(model), tuple(rows[0]), connection.dialect
    )
    values = [
        tuple(row[key] if convert is None else convert(row[key]) for key, convert in plan)
        for row in rows
    ]
    parameters: list[Any] = list(values)
    if not positional:  # named parameters: one dict a row
        parameters = [dict(zip(order, value, strict=True)) for value in values]
    connection.exec_driver_sql(sql, parameters)


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
