"""What an idle `jupyter server` costs with fractal_jupyter, against the same server without it.

On JupyterHub most users' servers sit idle. For each variant, in one run and alternating, this
starts `.venv/bin/jupyter server` and measures:

- start-up: seconds from starting the process until `GET /api/status` answers 200, and (with
  the extension) until `GET /fractal/api/alive/` answers 200;
- RSS: resident memory of the server's process tree once it has settled after start-up;
- idle CPU: user+system clock ticks of the process tree per minute while nothing calls it
  (from /proc/<pid>/stat), and whether `/api/status`'s `last_activity` moved meanwhile (the
  JupyterHub idle culler reads it: background work must not count as activity).

Variants: `bare` (the extension disabled), `fractal` (enabled, on a database that already
exists, as on every start but a user's first) and, once per round, `fractal-new-db` (enabled,
on an empty database: the first start creates the schema).

    .venv/bin/python bench/idle.py                     # 3 rounds, 60 s idle each
    .venv/bin/python bench/idle.py --repeat 1 --idle 20
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
PROBE_INTERVAL_S = 0.02
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
VARIANTS = ("bare", "fractal", "fractal-new-db")


class IdleServer(OurServer):
    """`jupyter server` as in the other benchmarks, with the extension on or off."""

    def __init__(self, extension: bool, database: Path | None = None) -> None:
        super().__init__()
        self.extension = extension
        if database is not None:
            shutil.copy(database, self.workdir / "fractal.db")
        self.status_s = 0.0
        self.alive_s: float | None = None

    def _command(self) -> list[str]:
        command = super()._command()
        if not self.extension:
            command = [
                part.replace("fractal_jupyter=True", "fractal_jupyter=False") for part in command
            ]
        return command

    def _wait_alive(self) -> None:
        started = time.monotonic()
        deadline = started + START_TIMEOUT_S
        root = f"http://127.0.0.1:{self.port}"
        with httpx.Client(timeout=2.0, headers=self.headers) as probe:
            for path in (
                ("/api/status", "/fractal/api/alive/") if self.extension else ("/api/status",)
            ):
                while True:
                    if self.process is not None and self.process.poll() is not None:
                        raise BenchError(f"the server ended; log tail:\n{tail(self.log_path)}")
                    if time.monotonic() > deadline:
                        raise BenchError(f"no answer at {path}; log tail:\n{tail(self.log_path)}")
                    try:
                        if probe.get(root + path).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    time.sleep(PROBE_INTERVAL_S)
                if path == "/api/status":
                    self.status_s = time.monotonic() - started
                else:
                    self.alive_s = time.monotonic() - started

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


def measure(variant: str, database: Path, idle_s: float) -> dict[str, Any]:
    server = IdleServer(
        extension=variant != "bare", database=database if variant == "fractal" else None
    )
    with server:
        time.sleep(SETTLE_S)
        rss = tree_rss_bytes(server.pid)
        before = server.last_activity()
        ticks = cpu_ticks(server.pid)
        time.sleep(idle_s)
        ticks = cpu_ticks(server.pid) - ticks
        after = server.last_activity()
    return {
        "variant": variant,
        "status_s": round(server.status_s, 3),
        "alive_s": None if server.alive_s is None else round(server.alive_s, 3),
        "rss_mib": round(rss / 2**20, 1),
        "idle_ticks_per_min": round(ticks * 60.0 / idle_s, 1),
        "last_activity_moved": before != after,
    }


def existing_database(folder: Path) -> Path:
    """A database with the current schema, as a server leaves it (made by one start)."""
    server = IdleServer(extension=True)
    with server:
        database = folder / "fractal.db"
        # SQLite's online backup: a consistent copy while the server runs.
        with (
            sqlite3.connect(server.workdir / "fractal.db") as source,
            sqlite3.connect(database) as target,
        ):
            source.backup(target)
    return database


def median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [row[key] for row in rows if row[key] is not None]
    return round(statistics.median(values), 3) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds of all variants")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle per server")
    args = parser.parse_args()
    stop_on_signals()
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"fractal-bench-idle-{os.getpid()}"
    folder.mkdir()
    rows: list[dict[str, Any]] = []
    load_before = machine_info()["load_average"]
    try:
        database = existing_database(folder)
        for round_ in range(args.repeat):
            order = VARIANTS if round_ % 2 == 0 else tuple(reversed(VARIANTS))
            for variant in order:
                progress(f"round {round_ + 1}/{args.repeat}: {variant}")
                rows.append({"round": round_ + 1, **measure(variant, database, args.idle)})
                progress(f"  {rows[-1]}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    summary = {
        variant: {
            key: median([row for row in rows if row["variant"] == variant], key)
            for key in ("status_s", "alive_s", "rss_mib", "idle_ticks_per_min")
        }
        for variant in VARIANTS
    }
    print(
        "| variant | start-up to /api/status (s) | to /fractal/api/alive/ (s) | RSS (MiB) "
        "| idle CPU (ticks/min) | last_activity moved |"
    )
    print("|---|---|---|---|---|---|")
    for variant in VARIANTS:
        moved = any(row["last_activity_moved"] for row in rows if row["variant"] == variant)
        values = summary[variant]
        print(
            f"| {variant} | {values['status_s']} | {values['alive_s'] or '-'} "
            f"| {values['rss_mib']} | {values['idle_ticks_per_min']} | {'yes' if moved else 'no'} |"
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
