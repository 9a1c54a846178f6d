"""Property-based fuzzing of every operation of our OpenAPI document (tests/support/fuzz.py).

Seeded and bounded: the seed is printed when the test starts (`FRACTAL_FUZZ_SEED=<seed>` repeats
a run), `FRACTAL_FUZZ_EXAMPLES` sets the examples per operation and `FRACTAL_FUZZ_ONLY` keeps
the operations whose `METHOD /path` contains it (to chase one failure), and
`FRACTAL_FUZZ_VERBOSE=1` prints the statuses each operation answered.

Every operation is fuzzed, none is left out. Those whose success would start processes are
refused to the fuzz callers instead: the server's owner (JupyterHub's rule, `server_owner`) is
set to nobody once the seed jobs are over, so job submission and task collection (pip, custom)
answer 403 after their input is validated, and a refused request must leave no trace like any
other. Deletions run last, so that the seeded objects serve every other operation first.
The test runs in the quick suite only: its state check reads the SQLite file, so the
PostgreSQL run (make pytest-postgres) skips it.
"""

from __future__ import annotations

import os
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import TEST_DB_URL, fractal_state_of
from tests.support.fuzz import (
    SEED_VARIABLE,
    FuzzReport,
    FuzzTarget,
    KnownFailure,
    TableFingerprints,
    examples_per_operation,
    fuzz_seed,
    has_json_detail,
    run_fuzz,
)
from tests.support.fuzz_mutations import mutate, mutate_body_leaf, mutate_parameter
from tests.support.fuzz_world import make_worlds

# Failures tolerated while a fix is under way: each is matched by check and request, never
# skipped (every operation is still fuzzed, any other failure counts). Empty: keep it so.
KNOWN_FAILURES: list[KnownFailure] = []


@pytest.mark.skipif(
    TEST_DB_URL is not None,
    reason="the API fuzzing runs once, on SQLite (make pytest); its checks read the SQLite file",
)
async def test_fuzz_whole_api(
    api: Any,
    jp_serverapp: Any,
    jp_http_port: int,
    jp_base_url: str,
    fractal_config: dict[str, Any],
    tmp_path: Path,
    in_thread: Any,
    capsys: Any,
) -> None:
    report = FuzzReport(seed=fuzz_seed(), examples=examples_per_operation(), known=KNOWN_FAILURES)
    with capsys.disabled():
        print(
            f"\n[fuzz] seed {report.seed} ({SEED_VARIABLE}={report.seed} repeats this run), "
            f"{report.examples} examples per operation"
        )
    worlds = await make_worlds(api, tmp_path / "zarr")
    # Nobody the fuzzer calls as owns the server from now on: job submission and task
    # collection (pip) are refused with 403 after validation, so no fuzzed request starts
    # processes or changes the database in the background.
    fractal_state_of(jp_serverapp).server_owner = "nobody-fuzzed"
    target = FuzzTarget(
        base_url=f"http://127.0.0.1:{jp_http_port}{jp_base_url.rstrip('/')}",
        token=jp_serverapp.identity_provider.token,
        database_path=Path(fractal_config["db_url"].split("///", 1)[1]),
        worlds=worlds,
    )
    await in_thread(run_fuzz, target, report, os.environ.get("FRACTAL_FUZZ_ONLY"))

    known = report.lines(known=True)
    new = report.lines()
    with capsys.disabled():
        print(
            f"\n[fuzz] seed {report.seed}: {report.requests} requests in {report.seconds:.0f} s, "
            f"{len(new)} failures, {len(known)} known ones"
        )
        for entry in KNOWN_FAILURES:
            matched = [f for f in report.known_failures.values() if entry.matches(f)]
            if matched:
                print(f"[fuzz] known, on {len(matched)} operations: {entry.why}")
        if os.environ.get("FRACTAL_FUZZ_VERBOSE"):
            for line in known:
                print(f"[fuzz] known: {line}")
            print(
                f"[fuzz] {report.seconds_answering:.1f} s sending and answering, "
                f"{report.seconds_fingerprinting:.1f} s fingerprinting the database"
            )
            for operation, statuses in report.statuses.items():
                print(f"[fuzz] {operation}: {dict(sorted(statuses.items()))}")
    assert report.requests > 0
    assert not new, f"seed {report.seed} ({SEED_VARIABLE}):\n" + "\n".join(new)


# The harness's own parts, without a server: each check must be able to fail.


def test_table_fingerprints_see_any_changed_row(tmp_path: Path) -> None:
    database = tmp_path / "fingerprints.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE project (id INTEGER PRIMARY KEY, name TEXT)")
        connection.execute("INSERT INTO project (name) VALUES ('p'), ('q')")
    fingerprints = TableFingerprints(database)
    try:
        before = fingerprints.take()
        assert fingerprints.take() == before
        with sqlite3.connect(database) as connection:
            connection.execute("UPDATE project SET name = 'r' WHERE id = 2")
        assert fingerprints.take()["project"] != before["project"]
    finally:
        fingerprints.close()


def _answer(status: int, content_type: str, body: bytes) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers["Content-Type"] = content_type
    response._content = body
    return response


def test_error_detail_check() -> None:
    assert has_json_detail(_answer(404, "application/json", b'{"detail": "Project not found"}'))
    assert has_json_detail(_answer(200, "text/html", b"<html></html>"))  # not an error
    assert not has_json_detail(_answer(403, "text/html", b"<html>403: Forbidden</html>"))
    assert not has_json_detail(_answer(422, "application/json", b'{"message": "no"}'))
    assert not has_json_detail(_answer(400, "application/json", b"[1]"))


def test_mutations_are_seeded_and_flag_invalid_requests() -> None:
    def request() -> dict[str, Any]:
        return {
            "method": "PATCH",
            "url": "http://127.0.0.1:1/base/fractal/api/v2/project/1/",
            "headers": {"Content-Type": "application/json"},
            "params": {},
            "json": {"name": "p", "args": {"x": 1.5}},
        }

    first, second = request(), request()
    assert mutate(random.Random(7), first) == mutate(random.Random(7), second)
    assert first == second

    invalid = request()
    applied = mutate_body_leaf(_ChooseFloats(), invalid)
    assert applied is not None and applied.invalid
    assert b"NaN" in invalid["data"]

    path = request()
    applied = mutate_parameter(random.Random(1), path)
    assert applied is not None and applied.kind == "path id"
    assert path["url"] != request()["url"]


class _ChooseFloats(random.Random):
    """Picks the float leaf, then NaN: the one way to make a body that is not JSON."""

    def choice(self, seq: Any) -> Any:
        for item in seq:
            if isinstance(item, tuple) and isinstance(item[1], float):
                return item
            if isinstance(item, float) and item != item:
                return item
        return seq[0]
