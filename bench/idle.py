"""What an idle `jupyter server` costs with fractal_jupyter, against the same server without it.

On JupyterHub most users' servers sit idle. For each variant, in one run and alternating, this
starts `.venv/bin/jupyter server` and measures:

- start-up: seconds from starting the process until `GET /api/status` answers 200;
- RSS: resident memory of the server's process tree once it has settled after start-up,
  before any Fractal request (an idle server of a hub: the extension loads its API with the
  first request under `fractal/`);
- idle CPU: user+system clock ticks of the process tree per minute while nothing calls it
  (from /proc/<pid>/stat), and whether `/api/status`'s `last_activity` moved meanwhile (the
  JupyterHub idle culler reads it: background work must not count as activity);
- then, with the extension: how long the first Fractal request (`GET /fractal/api/alive/`)
  takes, which loads the API, and the RSS once that has settled.

Variants: `bare` (the extension disabled), `fractal` (enabled, on a database that already
exists, as on every start but a user's first) and, once per round, `fractal-new-db` (enabled,
on an empty database: the first start creates the schema). With `--db-url` (a PostgreSQL
database, migrated by this script), also `fractal-postgres` (enabled, on that database, as a
hub's servers on a shared database start).

    .venv/bin/python bench/idle.py                     # 3 rounds, 60 s idle each
    .venv/bin/python bench/idle.py --repeat 1 --idle 20
    url=$(scripts/postgres-test.sh start)
    .venv/bin/python bench/idle.py --db-url "$url"; scripts/postgres-test.sh stop
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    REPO_ROOT,
    START_TIMEOUT_S,
    BenchError,
    OurServer,
    machine_info,
    process_tree,
    progress,
    report_header,
    stop_on_signals,
    tail,
    tree_rss_bytes,
)

SETTLE_S = 5.0
# After the first Fractal request: the database check and the job watcher's first pass.
LOADED_SETTLE_S = 2.0
PROBE_INTERVAL_S = 0.02
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
VARIANTS = ("bare", "fractal", "fractal-new-db")


class IdleServer(OurServer):
    """`jupyter server` as in the other benchmarks, with the extension on or off."""

    def __init__(
        self, extension: bool, database: Path | None = None, db_url: str | None = None
    ) -> None:
        super().__init__()
        self.extension = extension
        self.db_url = db_url
        self.extra_options: list[str] = []
        if database is not None:
            shutil.copy(database, self.workdir / "fractal.db")
        self.status_s = 0.0

    def _command(self) -> list[str]:
        command = super()._command()
        if not self.extension:
            command = [
                part.replace("fractal_jupyter=True", "fractal_jupyter=False") for part in command
            ]
        if self.db_url is not None:
            command = [
                f"--FractalJupyter.db_url={self.db_url}"
                if part.startswith("--FractalJupyter.db_url=")
                else part
                for part in command
            ]
        return [*command, *self.extra_options]

    def _wait_alive(self) -> None:
        """Until Jupyter answers; no request reaches the extension (see `first_request`)."""
        started = time.monotonic()
        deadline = started + START_TIMEOUT_S
        with httpx.Client(timeout=2.0, headers=self.headers) as probe:
            while True:
                if self.process is not None and self.process.poll() is not None:
                    raise BenchError(f"the server ended; log tail:\n{tail(self.log_path)}")
                if time.monotonic() > deadline:
                    raise BenchError(f"no answer at /api/status; log tail:\n{tail(self.log_path)}")
                try:
                    if probe.get(f"http://127.0.0.1:{self.port}/api/status").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(PROBE_INTERVAL_S)
        self.status_s = time.monotonic() - started

    def first_request(self, path: str = "/fractal/api/alive/") -> float:
        """Seconds a Fractal request takes (the first one loads the API)."""
        started = time.monotonic()
        answer = httpx.get(
            f"http://127.0.0.1:{self.port}{path}", headers=self.headers, timeout=START_TIMEOUT_S
        )
        answer.raise_for_status()
        return time.monotonic() - started

    def last_activity(self) -> str:
        answer = httpx.get(
            f"http://127.0.0.1:{self.port}/api/status", headers=self.headers, timeout=5.0
        )
        answer.raise_for_status()
        value: str = answer.json()["last_activity"]
        return value


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process tree, in clock ticks."""
    total = 0
    for member in process_tree(pid):
        try:
            stat = Path(f"/proc/{member}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    return total


def measure(variant: str, database: Path, db_url: str | None, idle_s: float) -> dict[str, Any]:
    server = IdleServer(
        extension=variant != "bare",
        database=database if variant == "fractal" else None,
        db_url=db_url if variant == "fractal-postgres" else None,
    )
    first_request_s = loaded_rss = None
    with server:
        time.sleep(SETTLE_S)
        rss = tree_rss_bytes(server.pid)
        before = server.last_activity()
        ticks = cpu_ticks(server.pid)
        time.sleep(idle_s)
        ticks = cpu_ticks(server.pid) - ticks
        after = server.last_activity()
        if server.extension:
            first_request_s = round(server.first_request(), 3)
            time.sleep(LOADED_SETTLE_S)
            loaded_rss = round(tree_rss_bytes(server.pid) / 2**20, 1)
    return {
        "variant": variant,
        "status_s": round(server.status_s, 3),
        "rss_mib": round(rss / 2**20, 1),
        "idle_ticks_per_min": round(ticks * 60.0 / idle_s, 1),
        "last_activity_moved": before != after,
        "first_request_s": first_request_s,
        "loaded_rss_mib": loaded_rss,
    }


def existing_database(folder: Path) -> Path:
    """A database with the current schema, as a server leaves it (made by one start)."""
    server = IdleServer(extension=True)
    with server:
        server.first_request("/fractal/api/v2/project/")  # waits for the schema
        database = folder / "fractal.db"
        # SQLite's online backup: a consistent copy while the server runs.
        with (
            sqlite3.connect(server.workdir / "fractal.db") as source,
            sqlite3.connect(database) as target,
        ):
            source.backup(target)
    return database


def migrate_postgres(db_url: str) -> None:
    """The schema on the PostgreSQL database, as its administrator would make it."""
    server = IdleServer(extension=True, db_url=db_url)
    server.extra_options = ["--FractalJupyter.migrate_on_start=True"]
    with server:
        server.first_request("/fractal/api/v2/project/")  # waits for the schema


def median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [row[key] for row in rows if row[key] is not None]
    return round(statistics.median(values), 3) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds of all variants")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle per server")
    parser.add_argument(
        "--db-url", help="a PostgreSQL database (postgresql+asyncpg://...) for fractal-postgres"
    )
    args = parser.parse_args()
    variants = (*VARIANTS, "fractal-postgres") if args.db_url else VARIANTS
    stop_on_signals()
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"fractal-bench-idle-{os.getpid()}"
    folder.mkdir()
    rows: list[dict[str, Any]] = []
    load_before = machine_info()["load_average"]
    try:
        database = existing_database(folder)
        if args.db_url:
            migrate_postgres(args.db_url)
        for round_ in range(args.repeat):
            order = variants if round_ % 2 == 0 else tuple(reversed(variants))
            for variant in order:
                progress(f"round {round_ + 1}/{args.repeat}: {variant}")
                row = measure(variant, database, args.db_url, args.idle)
                rows.append({"round": round_ + 1, **row})
                progress(f"  {rows[-1]}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    summary = {
        variant: {
            key: median([row for row in rows if row["variant"] == variant], key)
            for key in (
                "status_s",
                "rss_mib",
                "idle_ticks_per_min",
                "first_request_s",
                "loaded_rss_mib",
            )
        }
        for variant in variants
    }
    print(
        "| variant | start-up to /api/status (s) | RSS idle (MiB) | idle CPU (ticks/min) "
        "| last_activity moved | first Fractal request (s) | RSS after it (MiB) |"
    )
    print("|---|---|---|---|---|---|---|")
    for variant in variants:
        moved = any(row["last_activity_moved"] for row in rows if row["variant"] == variant)
        values = summary[variant]
        print(
            f"| {variant} | {values['status_s']} | {values['rss_mib']} "
            f"| {values['idle_ticks_per_min']} | {'yes' if moved else 'no'} "
            f"| {values['first_request_s'] or '-'} | {values['loaded_rss_mib'] or '-'} |"
        )
    document = {
        **report_header("bench/idle.py", sys.argv[1:], peer="jupyter server without the extension"),
        "clock_ticks_per_s": CLOCK_TICKS,
        "idle_s": args.idle,
        "settle_s": SETTLE_S,
        "load_average_before": load_before,
        "load_average_after": machine_info()["load_average"],
        "medians": summary,
        "rows": rows,
    }
    out = REPO_ROOT / "bench" / "results" / f"idle-{document['date']}.json"
    out.write_text(json.dumps(document, indent=2) + "\n")
    progress(f"written to {out.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
