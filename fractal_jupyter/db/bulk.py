"""Helpers of bulk statements shared by the services that write many rows at once."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

# Multi-row statements stay below SQLite's limit on bound parameters.
IDS_PER_STATEMENT = 5_000
T = TypeVar("T")


def dialect_insert(session: AsyncSession) -> Any:
    """The INSERT of the session's database, which has ON CONFLICT (an upsert)."""
    name = session.get_bind().dialect.name
    return postgresql.insert if name == "postgresql" else sqlite.insert


def chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
