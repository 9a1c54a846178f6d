"""Field types and validators shared by the resource schemas."""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StringConstraints,
    WithJsonSchema,
)

# Longer values would not fit in a PostgreSQL b-tree index entry (about 2.7 kB), and nobody
# needs a path, a name or a filter key of that size; a 422 beats a database error.
MAX_NAME_CHARS = 1_000
MAX_PATH_BYTES = 2_000
MAX_KEY_BYTES = 500
MAX_VALUE_BYTES = 1_000
# Integers are 64-bit in the database (and in JSON as most readers decode it); a larger one
# is refused, never stored rounded to a float that no filter finds again.
MAX_INTEGER = 2**63 - 1
TOO_BIG_INTEGER = "Input should be an integer of at most 64 bits"


class RequestModel(BaseModel):
    """Request bodies: strict types ("123" is no int, 123 no str), unknown keys refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


class LenientRequestModel(BaseModel):
    """Request bodies that fractal-server 2.6.4 accepts with unknown keys (ignored)."""

    model_config = ConfigDict(extra="ignore", strict=True)


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class RenderedResponse(ABC):
    """An answer that renders its own JSON, which must be what its declared model would give.

    For a hot path whose values the database already holds as JSON text: decoding them into
    models and encoding them again would cost more than the query.
    """

    @abstractmethod
    def to_json(self) -> bytes: ...


def _utf8_at_most(limit: int, what: str) -> AfterValidator:
    def check(value: str) -> str:
        if len(value.encode()) > limit:
            raise ValueError(f"{what} is longer than {limit} bytes")
        return value

    return AfterValidator(check)


NonEmptyStr = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NAME_CHARS),
    _utf8_at_most(MAX_PATH_BYTES, "text"),
]


# Free text (a workflow's description): longer than a name, still bounded.
MAX_DESCRIPTION_CHARS = 10_000
Description = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_DESCRIPTION_CHARS)
]


def is_normal_zarr_path(value: str) -> bool:
    """Whether `ZarrPath` keeps `value` as it is (an absolute, normalised, short path)."""
    return (
        value.startswith("/")
        and not value[-1].isspace()
        # Without these, no step is empty, "." or "..": nothing for normpath to change.
        and (
            ("/." not in value and "//" not in value and not value.endswith("/"))
            or os.path.normpath(value) == value
        )
        and (len(value) <= MAX_PATH_BYTES // 4 or len(value.encode()) <= MAX_PATH_BYTES)
    )


def normalize_zarr_path(value: str) -> str:
    """Absolute local paths only, normalised as fractal-server does (`os.path.normpath`)."""
    value = value.strip()
    if value.startswith("/"):
        return os.path.normpath(value)
    if value.startswith("s3"):
        raise ValueError("S3 paths are not supported yet")
    raise ValueError(f"'{value}' is not an absolute path (it must begin with '/')")


ZarrPath = Annotated[
    str,
    AfterValidator(normalize_zarr_path),
    _utf8_at_most(MAX_PATH_BYTES, "path"),
]


# A key of at most this many characters is at most MAX_KEY_BYTES bytes of UTF-8.
_SURELY_SHORT_KEY_CHARS = MAX_KEY_BYTES // 4


def keys_are_plain(value: dict[str, Any]) -> bool:
    """Whether `check_dict_keys` keeps every key as it is (short, no blanks at either end)."""
    for key in value:
        if not key or key[0].isspace() or key[-1].isspace() or len(key) > _SURELY_SHORT_KEY_CHARS:
            return False
    return True


def check_dict_keys(value: dict[str, Any]) -> dict[str, Any]:
    """Keys are stripped and must stay non-empty and distinct (fractal-server's `valdictkeys`)."""
    # The usual dict is returned as it is: the check runs twice per image, and building a
    # new dict was half of an import's validation.
    return value if keys_are_plain(value) else _strip_dict_keys(value)


def _strip_dict_keys(value: dict[str, Any]) -> dict[str, Any]:
    stripped: dict[str, Any] = {}
    for key, item in value.items():
        new_key = key.strip()
        if not new_key:
            raise ValueError("keys must not be empty or blank")
        if new_key in stripped:
            raise ValueError(f"key '{new_key}' appears twice once blanks are stripped")
        if len(new_key.encode()) > MAX_KEY_BYTES:
            raise ValueError(f"key '{new_key[:40]}...' is longer than {MAX_KEY_BYTES} bytes")
        stripped[new_key] = item
    return stripped


# Each filter of an image query is a clause of its SQL statement, and planning grows faster
# than linearly with them: on PostgreSQL 15, 50 attribute plus 50 type filters took 1.6 s, 80
# took 8.8 s, 100 over 20 s (30: 0.35 s); 500 of each passed SQLite's expression depth.
MAX_QUERY_FILTERS = 30


def check_filter_counts(**filters_by_kind: dict[str, Any]) -> None:
    """Refuses more than MAX_QUERY_FILTERS filters of one kind (`attribute=..., type=...`)."""
    for kind, given in filters_by_kind.items():
        if len(given) > MAX_QUERY_FILTERS:
            raise ValueError(
                f"a query has at most {MAX_QUERY_FILTERS} {kind} filters, not {len(given)}"
            )


def _non_finite_at(value: Any) -> list[str | int] | None:
    """Where in a JSON value a NaN or an infinity is (`[]`: the value itself), else None."""
    pending: list[tuple[list[str | int], Any]] = [([], value)]
    while pending:  # no recursion: a deeply nested body must not overflow the stack
        path, item = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return path
        if isinstance(item, dict):
            pending.extend(([*path, key], child) for key, child in item.items())
        elif isinstance(item, list):
            pending.extend(([*path, index], child) for index, child in enumerate(item))
    return None


def refuse_non_finite(value: Any) -> Any:
    """JSON has no NaN nor Infinity, yet Python's and pydantic's parsers read them; stored,
    they would come back as null or break the answers that include them."""
    path = _non_finite_at(value)
    if path is not None:
        where = "the value" + "".join(f"[{step!r}]" for step in path)
        raise ValueError(f"{where} is NaN or infinite; JSON numbers must be finite")
    return value


# Free-form JSON objects of a request (task meta and schemas, workflow-task arguments).
JsonObject = Annotated[dict[str, Any], AfterValidator(refuse_non_finite)]


def is_plain_scalar(value: Any) -> bool:
    """Whether `AttributeScalar` accepts `value` (as it is: it never changes one)."""
    kind = type(value)
    if kind is str:
        return len(value) <= MAX_VALUE_BYTES // 4 or len(value.encode()) <= MAX_VALUE_BYTES
    if kind is int:
        return bool(-MAX_INTEGER <= value <= MAX_INTEGER)
    return kind is bool or (kind is float and math.isfinite(value))


def _check_scalar(value: Any) -> int | float | str | bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not -MAX_INTEGER <= value <= MAX_INTEGER:
            raise ValueError(TOO_BIG_INTEGER)
        return value
    if isinstance(value, float):
        refuse_non_finite(value)
        return value
    if isinstance(value, str):
        if len(value.encode()) > MAX_VALUE_BYTES:
            raise ValueError(f"attribute value is longer than {MAX_VALUE_BYTES} bytes")
        return value
    raise ValueError(
        f"attribute values must be a string, a number or a boolean, not {type(value).__name__}"
    )


def _check_scalar_or_none(value: Any) -> int | float | str | bool | None:
    return None if value is None else _check_scalar(value)


_SCALAR_SCHEMA = {"type": ["string", "number", "integer", "boolean"]}
AttributeScalar = Annotated[Any, PlainValidator(_check_scalar), WithJsonSchema(_SCALAR_SCHEMA)]
NullableAttributeScalar = Annotated[
    Any,
    PlainValidator(_check_scalar_or_none),
    WithJsonSchema({"type": ["string", "number", "integer", "boolean", "null"]}),
]
AttributeDict = Annotated[dict[str, AttributeScalar], AfterValidator(check_dict_keys)]
NullableAttributeDict = Annotated[
    dict[str, NullableAttributeScalar], AfterValidator(check_dict_keys)
]
TypeDict = Annotated[dict[str, bool], AfterValidator(check_dict_keys)]


class Filters(RequestModel):
    """Image filters: attribute values (None matches anything) and type flags."""

    attributes: NullableAttributeDict = Field(default_factory=dict)
    types: TypeDict = Field(default_factory=dict)


def refuse_null(value: Any) -> Any:
    """For PATCH fields that may be left out but not set to null (there is nothing to unset)."""
    if value is None:
        raise ValueError("may be left out, but not set to null")
    return value


# fractal-server 2.6.4 writes timestamps as ISO 8601 with "+00:00"; pydantic 2 would write "Z".
Timestamp = Annotated[datetime, PlainSerializer(lambda value: value.isoformat(), return_type=str)]
