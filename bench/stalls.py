"""Event-loop stalls: how long other requests wait while the server handles a heavy one.

From the repository root:

    .venv/bin/python bench/stalls.py [--images 50000] [--folder-mb 150] [--body-mb 9]

One server (bench/common.py's `OurServer`, default configuration). While each heavy request
runs, a second client asks `GET api/alive/` (no database) in a loop on its own connection; the
longest of those answers is the stall the heavy request caused to everyone else.

Heavy requests: an image query whose body is `--body-mb` MB of type filters with an invalid
`zarr_url` (parsed and validated whole, then refused: nothing else is done), the download of a
job folder of `--folder-mb` MB (random bytes, a few files; the job row is written straight
into the database), and the export of a dataset of `--images` images (imported first).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import OurServer, progress, report_header, stop_on_signals

RESULTS = Path(__file__).resolve().parent / "results"


def during(server: OurServer, heavy: Callable[[], None]) -> dict[str, float]:
    """Run `heavy` while another client asks `alive`; its duration and the alive latencies."""
    latencies: list[float] = []
    done = threading.Event()

    def ping() -> None:
        with httpx.Client(headers=server.headers, timeout=120.0) as client:
            while not done.is_set():
                start = time.perf_counter()
                client.get(f"{server.url}/api/alive/").raise_for_status()
                latencies.append(time.perf_counter() - start)
                time.sleep(0.005)

    pinger = threading.Thread(target=ping)
    pinger.start()
    time.sleep(0.2)  # a few answers before: the idle latency
    start = time.perf_counter()
    try:
        heavy()
    finally:
        duration = time.perf_counter() - start
        done.set()
        pinger.join()
    return {
        "heavy_s": round(duration, 3),
        "alive_answers": len(latencies),
        "alive_max_ms": round(max(latencies) * 1000, 1),
        "alive_median_ms": round(sorted(latencies)[len(latencies) // 2] * 1000, 1),
    }


def insert_job(server: OurServer, project_id: int, folder: Path) -> int:
    """A finished job of the project whose folder is `folder`, written into the database."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from fractal_jupyter.db.models import Job

    engine = create_engine(f"sqlite:///{server.workdir}/fractal.db")
    with Session(engine) as session, session.begin():
        job = Job(
            project_id=project_id,
            user_email="bench@example.org",
            owner="bench",
            project_dump={},
            workflow_dump={},
            dataset_dump={},
            working_dir=str(folder),
            first_task_index=0,
            last_task_index=0,
            status="done",
        )
        session.add(job)
        session.flush()
        job_id = job.id
    engine.dispose()
    return job_id


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--folder-mb", type=int, default=150)
    parser.add_argument("--body-mb", type=int, default=9)
    options = parser.parse_args(argv)
    stop_on_signals()
    results: dict[str, Any] = report_header("bench/stalls.py", argv, peer="none")
    with OurServer() as server, httpx.Client(headers=server.headers, timeout=600.0) as client:
        project = client.post(f"{server.url}/api/v2/project/", json={"name": "bench"}).json()
        project_url = f"{server.url}/api/v2/project/{project['id']}"

        progress(f"query body of {options.body_mb} MB")
        types: dict[str, bool] = {}
        size = 0
        while size < options.body_mb * 1_000_000:
            key = f"type-{len(types)}"
            types[key] = True
            size += len(key) + 10
        dataset = client.post(
            f"{project_url}/dataset/", json={"name": "d", "zarr_dir": "/bench"}
        ).json()
        body = json.dumps({"zarr_url": 5, "filters": {"types": types}}).encode()

        def query() -> None:
            answer = client.post(
                f"{project_url}/dataset/{dataset['id']}/images/query/",
                content=body,
                headers={"Content-Type": "application/json"},
            )
            assert answer.status_code in (413, 422), answer.text

        results["query_body"] = {"bytes": len(body), **during(server, query)}
        progress(f"  {results['query_body']}")

        progress(f"job folder of {options.folder_mb} MB")
        folder = server.workdir / "job_000001"
        folder.mkdir()
        for index in range(options.folder_mb // 10):
            (folder / f"{index}.bin").write_bytes(os.urandom(10_000_000))
        job_id = insert_job(server, project["id"], folder)

        def download() -> None:
            answer = client.get(f"{project_url}/job/{job_id}/download/")
            assert answer.status_code == 200 and len(answer.content) > 0, answer.status_code

        results["job_download"] = {"folder_mb": options.folder_mb, **during(server, download)}
        progress(f"  {results['job_download']}")

        progress(f"export of {options.images} images (importing them first)")
        images = [
            {
                "zarr_url": f"/bench/plate.zarr/{i // 1000}/{i % 1000}/0",
                "attributes": {"well": f"W{i // 1000}", "row": i % 10},
                "types": {"is_3D": i % 2 == 0},
            }
            for i in range(options.images)
        ]
        imported = client.post(
            f"{project_url}/dataset/import/",
            json={"name": "big", "zarr_dir": "/bench", "images": images},
        )
        imported.raise_for_status()

        def export() -> None:
            answer = client.get(f"{project_url}/dataset/{imported.json()['id']}/export/")
            assert len(answer.json()["images"]) == options.images

        results["dataset_export"] = {"images": options.images, **during(server, export)}
        progress(f"  {results['dataset_export']}")

    RESULTS.mkdir(exist_ok=True)
    revision = results["servers"]["ours"].split("(")[1].rstrip(")")
    path = RESULTS / f"stalls-{results['date']}-{revision}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
