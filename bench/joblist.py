"""The JobList widget with many jobs: how long until its first page is shown.

From the repository root:

    .venv/bin/python bench/joblist.py [--jobs 1000] [--repeat 20]

One server (bench/common.py's `OurServer`); a project made over HTTP, then `--jobs` ended jobs
written straight into its database (a realistic row each: dumps of a workflow with three
tasks, a 4 KB log, start and end times), every tenth one failed. One timing is
`JobList(client)` from scratch in this process, as a notebook cell runs it: the request for
the caller's jobs (without their logs), the sort by start time, the rows of the first page.
The widgets are built without a kernel (no comm messages): the browser's own rendering is
not in the number. Target: under 0.5 s for 1,000 jobs. Results are printed and written to
`bench/results/joblist-<date>.json`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    OurServer,
    latency_dict,
    progress,
    report_header,
    stop_on_signals,
    summarize,
)

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_S = 0.5
LOG = "".join(
    f"2026-12-04 10:00:{i % 60:02d},000 - INFO - task {i % 3}: call {i} of 200 ended well\n"
    for i in range(60)
)


def insert_jobs(server: OurServer, project_id: int, count: int) -> None:
    """`count` ended jobs of the project, one a minute, written into the database."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from fractal_jupyter.db.models import Job

    tasks = [{"id": i, "order": i, "task": {"name": f"task {i}"}} for i in range(3)]
    first = datetime(2026, 1, 1, tzinfo=UTC)
    engine = create_engine(f"sqlite:///{server.workdir}/fractal.db")
    with Session(engine) as session, session.begin():
        for index in range(count):
            start = first + timedelta(minutes=index)
            session.add(
                Job(
                    project_id=project_id,
                    user_email="bench@example.org",
                    owner="bench",
                    project_dump={"id": project_id, "name": "bench"},
                    workflow_dump={
                        "id": index % 7,
                        "name": f"workflow {index % 7}",
                        "task_list": tasks,
                    },
                    dataset_dump={"id": 1, "name": f"plate {index % 5}", "zarr_dir": "/data"},
                    working_dir=f"/jobs/job_{index}",
                    first_task_index=0,
                    last_task_index=2,
                    start_timestamp=start,
                    end_timestamp=start + timedelta(seconds=37 + index % 300),
                    status="failed" if index % 10 == 0 else "done",
                    log=LOG,
                )
            )
    engine.dispose()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=20)
    options = parser.parse_args(argv)
    stop_on_signals()
    from fractal_jupyter.client import FractalClient
    from fractal_jupyter.widgets import JobList

    results: dict[str, Any] = report_header("bench/joblist.py", argv, peer="none")
    with OurServer() as server:
        with httpx.Client(headers=server.headers, timeout=60.0) as http:
            answer = http.post(f"{server.url}/api/v2/project/", json={"name": "bench"})
            answer.raise_for_status()
            project_id = answer.json()["id"]
        progress(f"{options.jobs} jobs")
        insert_jobs(server, project_id, options.jobs)
        client = FractalClient(url=f"http://127.0.0.1:{server.port}/", token=server.token)
        first = JobList(client)  # imports, the connection: not timed
        if len(first.jobs) != options.jobs or len(first.rows.lines) != first.page_size:
            raise SystemExit(f"the list shows {len(first.jobs)} jobs, not {options.jobs}")
        timings = []
        for _ in range(options.repeat):
            start = time.perf_counter()
            JobList(client)
            timings.append(time.perf_counter() - start)
        client.close()
    latency = summarize(timings)
    results["joblist_first_page"] = {
        "jobs": options.jobs,
        "page_size": first.page_size,
        **latency_dict(latency),
        "target_s": TARGET_S,
    }
    print(json.dumps(results["joblist_first_page"], indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"joblist-{results['date']}.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0 if latency.p50_ms < TARGET_S * 1000 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
