"""Property-based fuzzing of the whole API from our own OpenAPI document (schemathesis).

For every operation of `<base_url>fractal/openapi.json`, schemathesis generates requests that
fit the document and requests that do not (its positive and negative modes); each is sent as
alice, bob or (on admin routes) admin, with the ids of path and query parameters drawn from the
seeded worlds (tests/support/fuzz_world.py); a third of the requests get one edge value that
schemathesis seldom makes (tests/support/fuzz_mutations.py). Every answer is checked:

- `server-error`: the status is below 500;
- `error-detail`: a 4xx is a JSON object with a `detail`;
- `state-changed`: a refused write (4xx, or 5xx) leaves every database table as it was;
- `no-answer`: every request gets an answer (a hang or a dropped connection stops the run);
- `invalid-accepted`: a request made invalid by an edge value (tests/support/fuzz_mutations.py:
  not JSON, not an integer, a text/plain body) is not answered with a 2xx.

The run is seeded (`FRACTAL_FUZZ_SEED`) and bounded (`FRACTAL_FUZZ_EXAMPLES` per operation).
Failures are collected, not raised, so that one run lists them all; the test asserts at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis.core.result import Err

from .fuzz_mutations import Applied, mutate
from .fuzz_world import World

SEED_VARIABLE = "FRACTAL_FUZZ_SEED"
EXAMPLES_VARIABLE = "FRACTAL_FUZZ_EXAMPLES"
DEFAULT_EXAMPLES = 60
ADMIN_PREFIXES = ("/fractal/admin/", "/fractal/auth/users/", "/fractal/auth/group/")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ANSWER_EXCERPT = 300
ANONYMOUS_SHARE = 1 / 16  # requests sent without credentials
ANSWER_TIMEOUT = 60.0  # seconds; the large bodies take well under one
MUTATION_SHARE = 1 / 3  # requests that get an edge value (fuzz_mutations.py)


def fuzz_seed() -> int:
    """The seed from `FRACTAL_FUZZ_SEED`, or a new one (printed, so that a run can be repeated)."""
    given_seed = os.environ.get(SEED_VARIABLE)
    return int(given_seed) if given_seed else random.SystemRandom().randrange(2**32)


def examples_per_operation() -> int:
    return int(os.environ.get(EXAMPLES_VARIABLE) or DEFAULT_EXAMPLES)


class TableFingerprints:
    """A hash of every table's rows, read straight from the SQLite file (a few ms in all)."""

    def __init__(self, database_path: Path) -> None:
        self.connection = sqlite3.connect(f"file:{database_path}?mode=ro", uri=True)
        tables = [
            name
            for (name,) in self.connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        # Rows in the order of all their columns: some tables have no rowid (migration 0010).
        self.queries = {
            table: f'SELECT * FROM "{table}" ORDER BY '
            + ", ".join(map(str, range(1, self._column_count(table) + 1)))
            for table in tables
        }

    def _column_count(self, table: str) -> int:
        return len(self.connection.execute(f'PRAGMA table_info("{table}")').fetchall())

    def take(self) -> dict[str, str]:
        fingerprints = {}
        for table, query in self.queries.items():
            digest = hashlib.blake2b(digest_size=16)
            for row in self.connection.execute(query):
                digest.update(repr(row).encode())
            fingerprints[table] = digest.hexdigest()
        return fingerprints

    def close(self) -> None:
        self.connection.close()


@dataclass(frozen=True)
class Failure:
    """One check that one answer failed, with the request as it was sent."""

    check: str
    method: str
    template: str  # the operation's path in the document
    caller: str
    mutation: Applied | None  # which edge value was put in (fuzz_mutations.py), if any
    request: str
    status: int
    answer: str

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.method, self.template, self.check, self.mutation.kind if self.mutation else "")

    def describe(self) -> str:
        mutation = f" [{self.mutation}]" if self.mutation else ""
        return (
            f"[{self.check}] {self.request} as {self.caller}{mutation}"
            f" -> {self.status} {self.answer[:ANSWER_EXCERPT]}"
        )


def describe_request(request: dict[str, Any], base_url: str) -> str:
    """`METHOD /fractal/... query={...} body=...` of a request as requests is given it."""
    text = f"{request['method']} {request['url'].removeprefix(base_url)}"
    if request.get("params"):
        text += f" query={_short(request['params'])}"
    for kind in ("json", "data"):
        if kind in request:
            text += f" body={_short(request[kind])}"
    content_type = request["headers"].get("Content-Type")
    if content_type and content_type != "application/json":
        text += f" ({content_type})"
    return text


def _short(value: Any, limit: int = 400) -> str:
    if isinstance(value, bytes):
        text = value.decode(errors="backslashreplace")
    else:
        try:
            text = json.dumps(value, default=repr)
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


@dataclass
class FuzzReport:
    seed: int
    examples: int
    requests: int = 0
    seconds: float = 0.0
    # Where the time goes: answering (the server) and fingerprinting the database.
    seconds_answering: float = 0.0
    seconds_fingerprinting: float = 0.0
    # Failures that fixes under way will close (see `KnownFailure`): tolerated, but listed.
    known: list[KnownFailure] = field(default_factory=list)
    # The first failure of each (method, template, check, mutation), and how often each
    # occurred; the known ones apart.
    failures: dict[tuple[str, str, str, str], Failure] = field(default_factory=dict)
    known_failures: dict[tuple[str, str, str, str], Failure] = field(default_factory=dict)
    counts: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    statuses: dict[str, dict[int, int]] = field(default_factory=dict)
    stopped: bool = False  # a request went unanswered: the run ends there

    def add(self, failure: Failure) -> None:
        known = any(entry.matches(failure) for entry in self.known)
        (self.known_failures if known else self.failures).setdefault(failure.key, failure)
        self.counts[failure.key] = self.counts.get(failure.key, 0) + 1

    def lines(self, *, known: bool = False) -> list[str]:
        failures = self.known_failures if known else self.failures
        return [
            f"{self.counts[key]:4d}x {failure.describe()}"
            for key, failure in sorted(failures.items())
        ]


@dataclass(frozen=True)
class KnownFailure:
    """A kind of failure that a fix under way elsewhere will close: every field given must
    match (`template` as a substring of the operation's path, `answer` of the answer,
    `request` as a regular expression searched in the request's description)."""

    check: str
    why: str
    mutation: str | None = None
    methods: frozenset[str] | None = None
    template: str | None = None
    answer: str | None = None
    request: str | None = None

    def matches(self, failure: Failure) -> bool:
        return (
            failure.check == self.check
            and (
                self.mutation is None
                or (failure.mutation and failure.mutation.kind) == self.mutation
            )
            and (self.methods is None or failure.method in self.methods)
            and (self.template is None or self.template in failure.template)
            and (self.answer is None or self.answer in failure.answer)
            and (self.request is None or re.search(self.request, failure.request) is not None)
        )


@dataclass
class FuzzTarget:
    base_url: str  # what the document's paths (/fractal/...) are appended to
    token: str
    database_path: Path
    worlds: list[World]


def operation_order(method: str, path: str) -> tuple[int, int, str]:
    """Deletions last, the deepest first, so that the seeded objects serve every other route."""
    if method == "DELETE":
        return (1, -path.count("/"), path)
    return (0, 0, f"{path} {method}")


def load_operations(target: FuzzTarget) -> list[Any]:
    """The operations of the served document, without their security requirements.

    Knowing that `Authorization` is required, schemathesis' negative mode would leave it out
    of many requests (a third of them on routes without parameters): credentials are ours
    to send or not (see `fuzz_operation`), so that most requests reach the handlers.
    """
    answer = requests.get(
        f"{target.base_url}/fractal/openapi.json",
        headers={"Authorization": f"token {target.token}"},
        timeout=30,
    )
    answer.raise_for_status()
    document = answer.json()
    for operations in document["paths"].values():
        for operation in operations.values():
            operation.pop("security", None)
    schema = schemathesis.openapi.from_dict(document)
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # our document must be usable whole
        operations.append(result.ok())
    return sorted(operations, key=lambda op: operation_order(op.method.upper(), op.path))


def _case_strategy(operation: Any) -> st.SearchStrategy[Any]:
    modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
    return st.one_of(*(operation.as_strategy(generation_mode=mode) for mode in modes))


def _aim_ids(
    rng: random.Random, case: Any, worlds: list[World], caller_world: World | None
) -> None:
    """Put seeded ids into the id parameters: mostly the caller's own, often another's."""
    for container in (case.path_parameters, case.query):
        if not isinstance(container, dict):
            continue
        for name in list(container):
            if not any(name in world.ids for world in worlds):
                continue
            choice = rng.choice(["own", "own", "other", "generated"])
            if choice == "generated":
                continue
            if choice == "own" and caller_world is not None:
                world = caller_world
            else:
                world = rng.choice([w for w in worlds if w is not caller_world])
            if name in world.ids:
                container[name] = world.ids[name]


# Body fields that must be absolute paths, which generated text almost never is.
PATH_FIELDS = ("zarr_dir", "zarr_url", "origin")


# A task needs a command, which the document cannot say (both are optional there).
COMMAND_FIELDS = ("command_non_parallel", "command_parallel")
COMMAND = "/bin/true"


def _aim_body(rng: random.Random, body: Any, world: World) -> None:
    """Often make path fields of a body (and of its `images`) paths in the caller's zarr_dir,
    and give a new task (a body with a `source`) the command it needs."""
    if not isinstance(body, dict):
        return
    needs_command = "source" in body and not any(body.get(name) for name in COMMAND_FIELDS)
    if needs_command and rng.random() < 0.5:
        body[rng.choice(COMMAND_FIELDS)] = COMMAND
    for name in PATH_FIELDS:
        if isinstance(body.get(name), str) and rng.random() < 0.5:
            made = world.zarr_dir + "/" + "".join(rng.choices("ab/._-", k=rng.randrange(8)))
            body[name] = rng.choice([str(world.ids["zarr_url"]), made])
    images = body.get("images")
    if isinstance(images, list):
        for image in images:
            _aim_body(rng, image, world)


def fuzz_operation(
    operation: Any,
    target: FuzzTarget,
    report: FuzzReport,
    fingerprints: TableFingerprints,
    session: requests.Session,
) -> None:
    method = operation.method.upper()
    template = operation.path
    callers = ["alice", "bob"]
    if template.startswith(ADMIN_PREFIXES):
        callers.append("admin")
    writes = method in WRITE_METHODS or template.endswith("/stop/")
    statuses = report.statuses.setdefault(f"{method} {template}", {})
    # Which ids are aimed at is chosen evenly, which hypothesis' own draws are not (they
    # favour the first choice): from a generator seeded per run and operation.
    rng = random.Random(f"{report.seed} {method} {template}")

    @seed(report.seed)
    @settings(
        max_examples=report.examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=_case_strategy(operation), caller=st.sampled_from(callers))
    def run(case: Any, caller: str) -> None:
        if report.stopped:
            return
        caller_world = next((w for w in target.worlds if w.user == caller), None)
        _aim_ids(rng, case, target.worlds, caller_world)
        _aim_body(rng, case.body, caller_world or target.worlds[0])
        headers = {"X-Test-User": caller}
        if rng.random() >= ANONYMOUS_SHARE:
            headers["Authorization"] = f"token {target.token}"
        request = case.as_transport_kwargs(base_url=target.base_url, headers=headers)
        mutation = mutate(rng, request) if rng.random() < MUTATION_SHARE else None

        def record(check: str, status: int, answer: str) -> None:
            sent = describe_request(request, target.base_url)
            report.add(Failure(check, method, template, caller, mutation, sent, status, answer))

        started = time.perf_counter()
        before = fingerprints.take() if writes else None
        report.seconds_fingerprinting += time.perf_counter() - started
        session.cookies.clear()  # each request stands alone, as a REST client's does
        started = time.perf_counter()
        try:
            response = session.request(**request, timeout=ANSWER_TIMEOUT)
        except requests.RequestException as error:
            # No answer (a hang, a dropped connection) is as bad as a 500; the server may be
            # stuck, so the run stops here rather than wait on every later request.
            report.stopped = True
            record("no-answer", 0, repr(error))
            return
        report.seconds_answering += time.perf_counter() - started
        report.requests += 1
        status = response.status_code
        statuses[status] = statuses.get(status, 0) + 1

        failed_checks = [check.name for check in CHECKS if not check.passes(response)]
        if mutation is not None and mutation.invalid and status < 300:
            failed_checks.append("invalid-accepted")
        note = ""
        if before is not None and status >= 400:
            started = time.perf_counter()
            after = fingerprints.take()
            report.seconds_fingerprinting += time.perf_counter() - started
            changed = sorted(table for table in after if after[table] != before.get(table))
            if changed:
                failed_checks.append("state-changed")
                note = f"(tables changed: {', '.join(changed)}) "
        for check in failed_checks:
            record(check, status, note + response.text)

    run()


@dataclass(frozen=True)
class Check:
    name: str
    passes: Callable[[Any], bool]


def has_json_detail(response: requests.Response) -> bool:
    if not 400 <= response.status_code < 500:
        return True
    if not response.headers.get("Content-Type", "").startswith("application/json"):
        return False
    try:
        body = json.loads(response.content)
    except ValueError:
        return False
    return isinstance(body, dict) and "detail" in body


CHECKS = [
    Check("server-error", lambda response: response.status_code < 500),
    Check("error-detail", has_json_detail),
]


def run_fuzz(target: FuzzTarget, report: FuzzReport, only: str | None = None) -> None:
    """Fuzz every operation (or those whose `METHOD path` contains `only`)."""
    started = time.monotonic()
    fingerprints = TableFingerprints(target.database_path)
    try:
        with requests.Session() as session:
            for operation in load_operations(target):
                label = f"{operation.method.upper()} {operation.path}"
                if only and only not in label:
                    continue
                if report.stopped:
                    break
                fuzz_operation(operation, target, report, fingerprints, session)
    finally:
        fingerprints.close()
        report.seconds = time.monotonic() - started
