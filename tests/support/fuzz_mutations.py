"""Edge values that schemathesis seldom or never generates, put into its requests.

Generation from the document finds what the schemas allow; the inputs that broke servers like
ours are at the edges of what JSON, URLs and the database carry: integers past 64 bits, NaN and
Infinity (Python's JSON reads them), NUL and lone surrogates in text, ids like `+1`, quotes
that never close, a path without its trailing slash, a body sent as text/plain, a big body.
A share of the generated requests gets one such mutation, chosen by a seeded generator.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Integers the database cannot hold (SQLite and PostgreSQL stop at 64 bits), and ints that
# Python reads but a URL id should not be.
BIG_INTEGERS = [2**63, -(2**63) - 1, 10**30, -(10**30)]
# Not integers as the document writes them (Python's int() takes "+1", " 1", "1_0" and
# "\u0661", an Arabic-Indic digit), so that a 2xx to a path with one of them is wrong.
NOT_INTEGERS = ["+1", " 1", "1_0", "0x1", "1e3", "\u0661", "1.0"]
ODD_IDS = [*NOT_INTEGERS, "-0", "00001", ""]
# Floats that JSON has no words for: Python's `json` writes and reads them all the same.
ODD_FLOATS = [float("nan"), float("inf"), float("-inf"), 1e308]
ODD_TEXTS = [
    "a\x00b",  # NUL: PostgreSQL refuses it in text
    "\ud800",  # a lone surrogate: valid in JSON escapes, not encodable as UTF-8
    'python -c "unbalanced',  # a command line shlex cannot split
    "'",
    "\\",
    "../../etc/passwd",
    " ",
]
# A URL cannot carry a lone surrogate (it is not encodable as UTF-8).
QUERY_TEXTS = [text for text in ODD_TEXTS if text != "\ud800"]
LARGE_TEXT_BYTES = 2_000_000


@dataclass(frozen=True)
class Applied:
    """What a mutation did: its kind (to group failures), the value it put where."""

    kind: str
    detail: str
    # The request is invalid by the document whatever else it holds (not JSON, not an
    # integer, a media type the operation does not take): a 2xx answer to it is a failure.
    invalid: bool = False

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}" if self.detail else self.kind


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    """Every (path, value) of a JSON document, the containers too (a leaf may be replaced
    by a container value and the other way round)."""
    found = [(path, value)]
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(_leaves(item, (*path, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_leaves(item, (*path, index)))
    return found


def _replace(document: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = new
    return document


def _edge_value_for(rng: random.Random, value: Any) -> Any:
    if isinstance(value, bool):
        return rng.choice([0, 1, "true", None])
    if isinstance(value, int):
        return rng.choice(BIG_INTEGERS)
    if isinstance(value, float):
        return rng.choice([*ODD_FLOATS, *BIG_INTEGERS])
    if isinstance(value, str):
        return rng.choice(ODD_TEXTS)
    return rng.choice([*BIG_INTEGERS, *ODD_FLOATS, *ODD_TEXTS])


def _json_bytes(document: Any) -> bytes:
    # `allow_nan`: NaN and Infinity go out as the bare words Python's own parser accepts.
    return json.dumps(document, allow_nan=True).encode()


def mutate_body_leaf(rng: random.Random, request: dict[str, Any]) -> Applied | None:
    if "json" not in request:
        return None
    document = request.pop("json")
    path, value = rng.choice(_leaves(document))
    new = _edge_value_for(rng, value)
    document = _replace(document, path, new)
    request["data"] = _json_bytes(document)
    not_json = isinstance(new, float) and not math.isfinite(new)
    return Applied("body value", f"{new!r} at {list(path)}"[:120], invalid=not_json)


def mutate_parameter(rng: random.Random, request: dict[str, Any]) -> Applied | None:
    """An edge value for a query parameter, or for a number in the URL's path.

    Only in the path is a value that is no integer certainly invalid: every path parameter is
    an id, while query parameters are parsed as pydantic's lax mode does (as fractal-server's
    are), which takes "+1", " 1", "1_0" and "1.0" for integers.
    """
    params = request.get("params")
    numbers = [
        index for index, part in enumerate(request["url"].split("/")) if part.lstrip("-").isdigit()
    ]
    if params and (not numbers or rng.random() < 0.5):
        name = rng.choice(sorted(params))
        params[name] = rng.choice([*BIG_INTEGERS, *ODD_IDS, "nan", "inf", *QUERY_TEXTS])
        return Applied("query value", f"{name}={params[name]!r}")
    if numbers:
        parts = request["url"].split("/")
        index = rng.choice(numbers)
        new = rng.choice([*BIG_INTEGERS, *ODD_IDS[:-1]])
        parts[index] = str(new)
        request["url"] = "/".join(parts)
        return Applied("path id", repr(new), invalid=new in NOT_INTEGERS)
    return None


def drop_trailing_slash(rng: random.Random, request: dict[str, Any]) -> Applied | None:
    if not request["url"].endswith("/"):
        return None
    request["url"] = request["url"].rstrip("/")
    return Applied("no trailing slash", "")


def send_as_text_plain(rng: random.Random, request: dict[str, Any]) -> Applied | None:
    if "json" not in request and "data" not in request:
        return None
    request["headers"]["Content-Type"] = "text/plain"
    return Applied("text/plain body", "", invalid=True)


def enlarge_body(rng: random.Random, request: dict[str, Any]) -> Applied | None:
    """A body of a few megabytes: one text of the document made big."""
    if "json" not in request:
        return None
    document = request.pop("json")
    texts = [(path, value) for path, value in _leaves(document) if isinstance(value, str)]
    big = "x" * LARGE_TEXT_BYTES
    if texts:
        document = _replace(document, rng.choice(texts)[0], big)
    elif isinstance(document, dict):
        document["padding"] = big
    else:
        document = [document, big]
    request["data"] = _json_bytes(document)
    return Applied("large body", f"{len(request['data'])} bytes")


Mutation = Callable[[random.Random, dict[str, Any]], Applied | None]

# Weighted by how many kinds of bug each reaches; the large body is costly, hence rare.
MUTATIONS: list[Mutation] = [
    mutate_body_leaf,
    mutate_body_leaf,
    mutate_body_leaf,
    mutate_parameter,
    mutate_parameter,
    mutate_parameter,
    drop_trailing_slash,
    send_as_text_plain,
]
RARE_MUTATIONS: list[Mutation] = [enlarge_body]


def mutate(rng: random.Random, request: dict[str, Any]) -> Applied | None:
    """Apply one mutation that fits the request (in place); say which, or None."""
    pool = MUTATIONS + (RARE_MUTATIONS if rng.random() < 0.05 else [])
    for mutation in rng.sample(pool, len(pool)):
        applied = mutation(rng, request)
        if applied is not None:
            return applied
    return None
