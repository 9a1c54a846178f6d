"""Jobs outlive the Jupyter server: a real `jupyter fractal` process stopped and started again."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from fractal_jupyter.demo import DemoServer
from fractal_jupyter.demo_tasks.manifest import demo_task_bodies
from tests.support.jobs import MISBEHAVE_TASK, processes_mentioning
from tests.support.server import ServerProcess


@pytest.fixture
def server(tmp_path):
    running = ServerProcess(tmp_path)
    running.start()
    yield running
    if running.process is not None:
        running.stop()


def setup_job(
    api: DemoServer, tmp_path: Path, sleep_seconds: float, columns: int = 2
) -> dict[str, Any]:
    project = api.call("POST", "api/v2/project/", {"name": "p"})
    path = f"api/v2/project/{project['id']}/"
    dataset = api.call("POST", path + "dataset/", {"name": "d", "zarr_dir": str(tmp_path / "z")})
    tasks = {}
    for body in [*demo_task_bodies(), MISBEHAVE_TASK]:
        tasks[body["name"]] = api.call("POST", "api/v2/task/", body)
    workflow = api.call("POST", path + "workflow/", {"name": "wf"})
    for name, body in [
        (
            "Create demo plate",
            {"args_non_parallel": {"rows": "A", "columns": columns, "fields": 1}},
        ),
        ("Misbehave", {"args_parallel": {"mode": "sleep", "seconds": sleep_seconds}}),
        ("Measure intensity", {}),
    ]:
        api.call(
            "POST", f"{path}workflow/{workflow['id']}/wftask/?task_id={tasks[name]['id']}", body
        )
    job = api.call(
        "POST", f"{path}job/submit/?workflow_id={workflow['id']}&dataset_id={dataset['id']}", {}
    )
    return {"path": path, "dataset": dataset, "job": job}


def events(job: dict[str, Any]) -> list[dict[str, Any]]:
    events_file = Path(job["working_dir"]) / "events.jsonl"
    if not events_file.exists():
        return []
    return [json.loads(line) for line in events_file.read_text().splitlines()]


def wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


def wait_for_end(api: DemoServer, path: str, job_id: int, timeout: float = 60.0) -> dict[str, Any]:
    result: dict[str, Any] = {}

    def ended() -> bool:
        result.update(api.call("GET", f"{path}job/{job_id}/"))
        return result["status"] != "submitted"

    wait_until(ended, timeout)
    return result


def history(api: DemoServer, made: dict[str, Any]) -> list[tuple[list[int], list[str]]]:
    """Per workflow task: its runs' units (done, failed, submitted), its images' statuses."""
    path, dataset_id = made["path"], made["dataset"]["id"]
    workflow = api.call("GET", f"{path}workflow/{made['job']['workflow_id']}/")
    found = []
    for wftask in workflow["task_list"]:
        query = f"dataset_id={dataset_id}&workflowtask_id={wftask['id']}"
        runs = api.call("GET", f"{path}status/run/?{query}")
        units = [
            count
            for run in runs
            for count in (
                run["num_done_units"],
                run["num_failed_units"],
                run["num_submitted_units"],
            )
        ]
        page = api.call("POST", f"{path}status/images/?{query}", {})
        statuses = [
            image["attributes"]["__wftask_dataset_image_status__"] for image in page["items"]
        ]
        found.append((units, statuses))
    return found


def test_job_finishes_while_the_server_is_down(server, tmp_path):
    made = setup_job(server.api, tmp_path, sleep_seconds=3)
    job = made["job"]
    wait_until(lambda: sum(e["type"] == "task_started" for e in events(job)) == 2)
    server.stop()
    # The job goes on without any server and reaches its end.
    wait_until(lambda: events(job)[-1]["type"] == "job_done")
    server.start()
    ended = wait_for_end(server.api, made["path"], job["id"])
    assert ended["status"] == "done", ended["log"]
    page = server.api.call(
        "POST", f"{made['path']}dataset/{made['dataset']['id']}/images/query/", {}
    )
    assert page["total_count"] == 2
    assert all(image["attributes"]["level"] in ("bright", "dim") for image in page["images"])
    dataset = server.api.call("GET", f"{made['path']}dataset/{made['dataset']['id']}/")
    assert [item["status"] for item in dataset["history"]] == ["done", "done", "done"]
    # Each unit once, whether its events were applied before or after the restart.
    assert history(server.api, made) == [
        ([1, 0, 0], ["done", "done"]),
        ([2, 0, 0], ["done", "done"]),
        ([2, 0, 0], ["done", "done"]),
    ]


def test_job_whose_process_died_is_failed_with_a_reason(server, tmp_path):
    made = setup_job(server.api, tmp_path, sleep_seconds=300)
    job = made["job"]
    wait_until(lambda: sum(e["type"] == "task_started" for e in events(job)) == 2)
    # Two task processes, forked from the job's warm starter (started by the first task: its
    # folder is on the starter's command line, each call's own on the call's)
    wait_until(lambda: len(processes_mentioning(f"{job['working_dir']}/1_misbehave")) == 2)
    assert len(processes_mentioning(f"{job['working_dir']}/0_")) == 1
    server.stop()
    job_pid = next(e["pid"] for e in events(job) if e["type"] == "job_started")
    os.kill(job_pid, signal.SIGKILL)
    server.start()
    ended = wait_for_end(server.api, made["path"], job["id"])
    assert ended["status"] == "failed"
    assert "ended without reporting the end of the job" in ended["log"]
    # The task processes it left behind are gone too, and the first task's images are kept.
    wait_until(lambda: processes_mentioning(job["working_dir"]) == [], timeout=10)
    page = server.api.call(
        "POST", f"{made['path']}dataset/{made['dataset']['id']}/images/query/", {}
    )
    assert page["total_count"] == 2
    # The calls that never reported are failed with the job; the third task never ran.
    assert history(server.api, made) == [
        ([1, 0, 0], ["done", "done"]),
        ([0, 2, 0], ["failed", "failed"]),
        ([], ["unset", "unset"]),
    ]


def test_a_kept_warm_starter_outlives_the_server_and_serves_the_next_job(tmp_path):
    server = ServerProcess(tmp_path, "--FractalJupyter.warm_start_keep_seconds=60")
    server.start()
    starter_pid = None
    try:
        made = setup_job(server.api, tmp_path, sleep_seconds=2)
        job = made["job"]
        wait_until(lambda: sum(e["type"] == "task_started" for e in events(job)) == 2)
        server.stop()  # mid-call: the calls' starter is no child of the server
        wait_until(lambda: events(job)[-1]["type"] == "job_done")
        server.start()
        first = wait_for_end(server.api, made["path"], job["id"])
        assert first["status"] == "done", first["log"]
        note = re.search(r"Misbehave: warm start, .* stays 60 s after its last call", first["log"])
        assert note is not None, first["log"]
        # The same workflow on a new dataset, after the restart.
        path = made["path"]
        dataset = server.api.call(
            "POST", path + "dataset/", {"name": "d2", "zarr_dir": str(tmp_path / "z2")}
        )
        query = f"workflow_id={job['workflow_id']}&dataset_id={dataset['id']}"
        submitted = server.api.call("POST", f"{path}job/submit/?{query}", {})
        second = wait_for_end(server.api, path, submitted["id"])
        assert second["status"] == "done", second["log"]
        kept = re.search(
            r"Misbehave: warm start, .* kept from an earlier job \(pid (\d+)", second["log"]
        )
        assert kept is not None, second["log"]
        starter_pid = int(kept.group(1))
        assert (
            "warm_starter.py --listen"
            in Path(f"/proc/{starter_pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        )
    finally:
        server.stop()
        if starter_pid is not None:
            os.kill(starter_pid, signal.SIGKILL)
