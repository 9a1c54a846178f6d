"""Jobs end to end through HTTP, with the demo task package and a misbehaving task."""

import asyncio
import io
import json
import re
import select
import sys
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import fractal_state_of
from tests.support.cluster import job_backends, slurm_cluster, user_server_for
from tests.support.jobs import (
    make_workflow,
    processes_left,
    processes_mentioning,
    project_with_tasks,
    wait_for_job,
    wait_for_processes,
)

# The end-to-end job tests run on every backend: `slurm` and `slurm_ssh` on the real cluster
# (tests/support/cluster.py), against a `jupyter fractal` running as the cluster's user, so
# that jobs run as that user and never as root.
on_every_backend = pytest.mark.parametrize("backend", job_backends(), indirect=True)
__all__ = ["slurm_cluster"]  # the session fixture, used by the SLURM variants


@pytest.fixture
def backend(request):
    return getattr(request, "param", "local")


@pytest.fixture
def tmp_path(tmp_path, backend, request):
    if backend == "local":
        return tmp_path
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)
    return request.getfixturevalue("slurm_cluster").user_dir(f"test_job-{name}")


@pytest.fixture
def user_server(backend, tmp_path, fractal_config, request):
    if backend == "local":
        yield None
        return
    options = {key: fractal_config[key] for key in ("admin_users", "job_poll_interval")}
    options.update(submit_rate_limit_seconds=0.0)
    server = user_server_for(backend, request.getfixturevalue("slurm_cluster"), tmp_path, options)
    server.start()
    yield server
    server.cancel_slurm_jobs()
    server.stop()


@pytest.fixture
def jp_fetch(jp_fetch, user_server):
    return jp_fetch if user_server is None else user_server.fetch


@pytest.fixture
def env(api, jp_asyncio_loop, tmp_path):
    return jp_asyncio_loop.run_until_complete(project_with_tasks(api, tmp_path / "zarr"))


async def submit(api, project_path, workflow, dataset, body=None, expect=202):
    status, job = await api(
        "POST",
        project_path + "job/submit/",
        body if body is not None else {},
        params={"workflow_id": str(workflow["id"]), "dataset_id": str(dataset["id"])},
    )
    assert status == expect, job
    return job


async def images_of(api, project_path, dataset, body=None):
    _, page = await api("POST", f"{project_path}dataset/{dataset['id']}/images/query/", body)
    return page


PLATE = {"rows": "AB", "columns": 2, "fields": 1}


@on_every_backend
async def test_job_runs_every_task_type(api, env, tmp_path):
    project_path, dataset, tasks = env
    workflow = await make_workflow(
        api,
        project_path,
        "wf",
        [
            (tasks["Create demo plate"], {"args_non_parallel": PLATE}),
            (tasks["Measure intensity"], {"args_parallel": {"threshold": 150}}),
            (tasks["Project image"], {}),
        ],
    )
    job = await submit(api, project_path, workflow, dataset)
    assert job["status"] == "submitted" and job["first_task_index"] == 0
    assert job["last_task_index"] == 2 and job["dataset_dump"]["id"] == dataset["id"]
    job = await wait_for_job(api, project_path, job["id"])
    assert job["status"] == "done", job["log"]
    assert job["end_timestamp"] is not None
    assert 'SUBMIT 2-th task (name="Project image")' in job["log"]
    assert job["log"].startswith("20")  # timestamps

    page = await images_of(api, project_path, dataset)
    zarr = tmp_path / "zarr" / "demo_plate.zarr"
    originals = [f"{zarr}/{row}/{column:02d}/0" for row in "AB" for column in (1, 2)]
    assert [image["zarr_url"] for image in page["images"]] == [
        *originals,
        *(url + "_mip" for url in originals),
    ]
    by_url = {image["zarr_url"]: image for image in page["images"]}
    for url in originals:
        assert by_url[url]["types"] == {"is_3D": True}
        assert by_url[url]["attributes"]["level"] in ("bright", "dim")
        projected = by_url[url + "_mip"]
        assert projected["origin"] == url
        assert projected["types"] == {"is_3D": False}
        assert projected["attributes"] == {**by_url[url]["attributes"], "projected": True}
    _, current = await api("GET", f"{project_path}dataset/{dataset['id']}/")
    assert current["filters"]["types"] == {"is_3D": False}
    assert [item["status"] for item in current["history"]] == ["done", "done", "done"]
    assert [item["workflowtask"]["id"] for item in current["history"]] == [
        entry["id"] for entry in workflow["task_list"]
    ]

    _, answer = await api(
        "GET",
        project_path + "status/",
        params={"dataset_id": str(dataset["id"]), "workflow_id": str(workflow["id"])},
    )
    assert answer == {"status": {str(entry["id"]): "done" for entry in workflow["task_list"]}}
    for path in (
        "api/v2/job/",
        project_path + "job/",
        f"{project_path}workflow/{workflow['id']}/job/",
    ):
        _, jobs = await api("GET", path)
        assert [listed["id"] for listed in jobs] == [job["id"]]
    _, no_logs = await api("GET", "api/v2/job/", params={"log": "false"})
    assert no_logs[0]["log"] is None


async def test_job_lists_without_logs_do_not_read_them(api, env, statements):
    """The JobList asks for hundreds of jobs with log=false: their logs are not even read."""
    project_path, dataset, tasks = env
    workflow = await make_workflow(
        api, project_path, "wf", [(tasks["Create demo plate"], {"args_non_parallel": PLATE})]
    )
    await wait_for_job(
        api, project_path, (await submit(api, project_path, workflow, dataset))["id"]
    )
    for path in ("api/v2/job/", project_path + "job/"):
        _, with_log = await api("GET", path)
        assert "End of job" in with_log[0]["log"]
        listed_from = len(statements)
        _, no_logs = await api("GET", path, params={"log": "false"})
        assert no_logs == [{**with_log[0], "log": None}]
        job_selects = [sql for sql in statements[listed_from:] if "FROM job" in sql]
        assert job_selects and not any("job.log" in sql for sql in job_selects), job_selects


@on_every_backend
async def test_download_is_a_zip_of_the_job_folder(api, env, jp_fetch):
    project_path, dataset, tasks = env
    workflow = await make_workflow(
        api,
        project_path,
        "wf",
        [
            (tasks["Create demo plate"], {"args_non_parallel": PLATE}),
            (tasks["Measure intensity"], {}),
        ],
    )
    job = await wait_for_job(
        api, project_path, (await submit(api, project_path, workflow, dataset))["id"]
    )
    response = await jp_fetch(
        "fractal", f"{project_path}job/{job['id']}/download/", headers={"X-Test-User": "alice"}
    )
    assert response.headers["Content-Type"] == "application/x-zip-compressed"
    assert "_archive.zip" in response.headers["Content-Disposition"]
    names = set(zipfile.ZipFile(io.BytesIO(response.body)).namelist())
    assert {
        "workflow.log",
        "events.jsonl",
        "job.json",
        "0_create_demo_plate/0.args.json",
        "0_create_demo_plate/0.log",
        "0_create_demo_plate/0.metadiff.json",
        "1_measure_intensity/1_par_0000003.args.json",
        "1_measure_intensity/1_par_0000003.log",
    } <= names


@on_every_backend
@pytest.mark.parametrize(
    "mode, cause",
    [
        ("exit", "exited with code 3"),
        ("malformed", "malformed JSON"),
        ("outside", "/somewhere/else/image"),
        ("killed", "killed by SIGKILL"),
    ],
)
async def test_failures_are_reported_and_earlier_changes_kept(api, env, mode, cause):
    project_path, dataset, tasks = env
    workflow = await make_workflow(
        api,
        project_path,
        "wf",
        [
            (tasks["Create demo plate"], {"args_non_parallel": PLATE}),
            (tasks["Measure intensity"], {}),
            (tasks["Misbehave"], {"args_parallel": {"mode": mode, "victim": "B/01/0"}}),
            (tasks["Project image"], {}),
        ],
    )
    job = await wait_for_job(
        api, project_path, (await submit(api, project_path, workflow, dataset))["id"]
    )
    assert job["status"] == "failed"
    assert "Misbehave" in job["log"] and cause in job["log"], job["log"]
    assert "Misbehave: warm start, " in job["log"]  # its calls forked from a warm starter
    if mode != "outside":  # that one is a rule of the engine, found after all calls ended
        assert "demo_plate.zarr/B/01/0" in job["log"]
    if mode == "exit":
        assert "ValueError: the image is corrupt" in job["log"]
    page = await images_of(api, project_path, dataset)
    assert page["total_count"] == 4  # no projection happened
    assert all("level" in image["attributes"] for image in page["images"])
    _, current = await api("GET", f"{project_path}dataset/{dataset['id']}/")
    assert [item["status"] for item in current["history"]] == ["done", "done", "failed"]
    _, answer = await api(
        "GET",
        project_path + "status/",
        params={"dataset_id": str(dataset["id"]), "workflow_id": str(workflow["id"])},
    )
    assert list(answer["status"].values()) == ["done", "done", "failed"]


@on_every_backend
async def test_stop_ends_the_job_and_its_processes(api, env, backend):
    project_path, dataset, tasks = env
    workflow = await make_workflow(
        api,
        project_path,
        "wf",
        [
            (tasks["Create demo plate"], {"args_non_parallel": PLATE}),
            (tasks["Misbehave"], {"args_parallel": {"mode": "sleep", "seconds": 120}}),
        ],
    )
    job = await submit(api, project_path, workflow, dataset)
    await wait_for_processes(api, project_path, job["id"], f"{job['working_dir']}/1_misbehave")
    status, body = await api("GET", f"{project_path}job/{job['id']}/stop/")
    assert (status, body) == (202, None)
    job = await wait_for_job(api, project_path, job["id"], timeout=30)
    assert job["status"] == "failed" and "stopped by the user" in job["log"]
    if backend == "local":  # on SLURM, how the calls started comes with results: none here
        assert "Misbehave: warm start, " in job["log"]
    assert await processes_left(job["working_dir"]) == {}
    status, body = await api("GET", f"{project_path}job/{job['id']}/stop/")
    assert status == 422 and "not running" in body["detail"]


async def test_submission_checks(api, env, jp_serverapp):
    project_path, dataset, tasks = env
    _, empty = await api("POST", project_path + "workflow/", {"name": "empty"})
    body = await submit(api, project_path, empty, dataset, expect=422)
    assert body["detail"] == f"Workflow {empty['id']} has empty task list"
    workflow = await make_workflow(
        api,
        project_path,
        "wf",
        [
            (tasks["Create demo plate"], {"args_non_parallel": {"rows": "A"}}),
            (tasks["Misbehave"], {"args_parallel": {"mode": "sleep", "seconds": 30}}),
        ],
    )
    body = await submit(api, project_path, workflow, dataset, {"last_task_index": 5}, expect=422)
    assert "last_task_index=5" in body["detail"]
    body = await submit(
        api,
        project_path,
        workflow,
        dataset,
        {"first_task_index": 1, "last_task_index": 0},
        expect=422,
    )
    assert body["detail"][0]["loc"] == ["body"]
    body = await submit(api, project_path, workflow, dataset, {"extra": 1}, expect=422)
    assert body["detail"][0]["loc"] == ["body", "extra"]
    # Required arguments missing: every problem listed (converter's zarr_dir is supplied).
    _, projection = await api(
        "POST",
        "api/v2/task/",
        {
            "name": "needs args",
            "source": "needs",
            "command_parallel": "true",
            "args_schema_parallel": {
                "type": "object",
                "required": ["zarr_url", "sigma", "label"],
                "properties": {"sigma": {"type": "number"}},
            },
        },
    )
    needy = await make_workflow(api, project_path, "needy", [(projection, {})])
    body = await submit(api, project_path, needy, dataset, expect=422)
    assert [item["loc"] for item in body["detail"]] == [
        ["workflow_task", 0, "args_parallel", "sigma"],
        ["workflow_task", 0, "args_parallel", "label"],
    ]
    _, jobs = await api("GET", project_path + "job/")
    assert jobs == []

    running = await submit(api, project_path, workflow, dataset)
    body = await submit(api, project_path, workflow, dataset, expect=422)
    assert body["detail"] == f"Dataset {dataset['id']} is already in use in submitted job(s)."
    status, body = await api("DELETE", f"{project_path}dataset/{dataset['id']}/")
    assert status == 422 and "active job(s)" in body["detail"]
    status, body = await api("DELETE", f"{project_path}workflow/{workflow['id']}/")
    assert status == 422
    status, body = await api("DELETE", project_path)
    assert status == 422
    await api("GET", f"{project_path}job/{running['id']}/stop/")
    stopped = await wait_for_job(api, project_path, running["id"])
    assert stopped["status"] == "failed"

    state = fractal_state_of(jp_serverapp)
    state.runner = replace(state.runner, submit_rate_limit_seconds=60)
    body = await submit(api, project_path, workflow, dataset, expect=429)
    assert "too often" in body["detail"]


async def test_other_users_see_no_jobs(api, env):
    project_path, dataset, tasks = env
    workflow = await make_workflow(
        api,
        project_path,
        "wf",
        [(tasks["Create demo plate"], {"args_non_parallel": {"rows": "A", "columns": 1}})],
    )
    job = await wait_for_job(
        api, project_path, (await submit(api, project_path, workflow, dataset))["id"]
    )
    project_id = project_path.split("/")[-2]
    for method, path in [
        ("GET", f"{project_path}job/{job['id']}/"),
        ("GET", f"{project_path}job/{job['id']}/download/"),
        ("GET", f"{project_path}job/{job['id']}/stop/"),
        ("GET", project_path + "job/"),
    ]:
        status, body = await api(method, path, user="bob")
        assert (status, body) == (403, {"detail": f"Not allowed on project {project_id}"})
    body = await api(
        "POST",
        project_path + "job/submit/",
        {},
        user="bob",
        params={"workflow_id": str(workflow["id"]), "dataset_id": str(dataset["id"])},
    )
    assert body[0] == 403
    _, jobs = await api("GET", "api/v2/job/", user="bob")
    assert jobs == []


@on_every_backend
async def test_non_parallel_and_converter_compound_tasks(api, env):
    project_path, dataset, _ = env
    folder = Path(__file__).parent / "tasks"
    bodies = [
        {
            "name": "Import wells",
            "source": "t:import",
            "type": "converter_compound",
            "command_non_parallel": f"{sys.executable} {folder / 'import_wells.py'}",
            "command_parallel": f"{sys.executable} {folder / 'import_wells.py'}",
        },
        {
            "name": "Tag images",
            "source": "t:tag",
            "command_non_parallel": f"{sys.executable} {folder / 'tag_images.py'}",
        },
    ]
    tasks = [(await api("POST", "api/v2/task/", body))[1] for body in bodies]
    workflow = await make_workflow(
        api,
        project_path,
        "wf",
        [
            (tasks[0], {"args_non_parallel": {"wells": ["A01", "B02", "A01"]}}),
            (tasks[1], {"args_non_parallel": {"tag": "seen"}}),
        ],
    )
    job = await wait_for_job(
        api, project_path, (await submit(api, project_path, workflow, dataset))["id"]
    )
    assert job["status"] == "done", job["log"]
    page = await images_of(api, project_path, dataset)
    zarr_dir = dataset["zarr_dir"]
    # The duplicate planned item is run once; the non-parallel task saw both images.
    assert page["images"] == [
        {
            "zarr_url": f"{zarr_dir}/imported/{well}",
            "origin": None,
            "attributes": {"well": well, "tag": "seen"},
            "types": {"imported": True},
        }
        for well in ("A01", "B02")
    ]
    _, current = await api("GET", f"{project_path}dataset/{dataset['id']}/")
    assert current["filters"] == {"attributes": {"tag": "seen"}, "types": {}}
    args = (Path(job["working_dir"]) / "1_tag_images" / "1.args.json").read_text()
    assert sorted(json.loads(args)["zarr_urls"]) == [
        f"{zarr_dir}/imported/A01",
        f"{zarr_dir}/imported/B02",
    ]


# -- the job process starts only once its row is committed (issue 22) --


def fractal_state(jp_serverapp):
    return fractal_state_of(jp_serverapp)


async def plate_workflow(api, project_path, tasks):
    return await make_workflow(
        api, project_path, "wf", [(tasks["Create demo plate"], {"args_non_parallel": PLATE})]
    )


async def test_a_submission_whose_commit_fails_starts_no_process(
    api, env, jp_serverapp, monkeypatch
):
    from sqlalchemy import event
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.orm import Session

    from fractal_jupyter.db.models import Job

    project_path, dataset, tasks = env
    workflow = await plate_workflow(api, project_path, tasks)
    started = []
    monkeypatch.setattr(fractal_state(jp_serverapp).launcher, "start", started.append)

    def fail_commit_of_a_job(session):
        if any(isinstance(item, Job) for item in session.identity_map.values()):
            raise OperationalError("COMMIT", {}, Exception("disk I/O error"))

    event.listen(Session, "before_commit", fail_commit_of_a_job)
    try:
        job = await submit(api, project_path, workflow, dataset, expect=503)
    finally:
        event.remove(Session, "before_commit", fail_commit_of_a_job)
    assert "nothing was changed" in job["detail"]
    await asyncio.sleep(0.3)  # a few passes of the job watcher
    assert started == []
    assert await api("GET", project_path + "job/") == (200, [])


async def test_a_job_whose_process_cannot_start_fails_with_the_reason(
    api, env, jp_serverapp, monkeypatch
):
    project_path, dataset, tasks = env
    workflow = await plate_workflow(api, project_path, tasks)

    def cannot_start(job_dir, **options):
        raise FileNotFoundError(2, "No such file or directory", "/gone/python")

    monkeypatch.setattr(fractal_state(jp_serverapp).launcher, "start", cannot_start)
    job = await submit(api, project_path, workflow, dataset)
    job = await wait_for_job(api, project_path, job["id"], timeout=10)
    assert job["status"] == "failed"
    assert "The job process could not start" in job["log"] and "/gone/python" in job["log"]
    assert job["end_timestamp"] is not None


async def test_a_committed_job_whose_process_never_started_is_failed(
    api, env, jp_serverapp, monkeypatch
):
    from datetime import timedelta

    from fractal_jupyter.services import job as job_service

    project_path, dataset, tasks = env
    workflow = await plate_workflow(api, project_path, tasks)

    # The server stops between the commit and the start of the process.
    async def not_started(*args, **options):
        return None

    monkeypatch.setattr(job_service, "start_job_process", not_started)
    job = await submit(api, project_path, workflow, dataset)
    await asyncio.sleep(0.4)  # job watcher passes: within the grace period it may still start
    status, job = await api("GET", f"{project_path}job/{job['id']}/")
    assert (status, job["status"]) == (200, "submitted")
    status, body = await api("GET", f"{project_path}job/{job['id']}/stop/")
    assert status == 422 and "has not started yet" in body["detail"]
    assert processes_mentioning(job["working_dir"]) == []

    monkeypatch.setattr(job_service, "START_GRACE", timedelta(0))
    job = await wait_for_job(api, project_path, job["id"], timeout=10)
    assert job["status"] == "failed"
    assert "The job process never started" in job["log"] and "submit the job again" in job["log"]
    assert processes_mentioning(job["working_dir"]) == []


async def test_running_jobs_are_activity_for_jupyter_and_the_hub(api, env, jp_serverapp):
    """jupyterhub-singleuser reports `web_app.last_activity()` to the hub, whose idle culler
    then leaves the server alone; only running jobs count."""
    project_path, dataset, tasks = env
    jobs_activity = "fractal_running_jobs"
    times = jp_serverapp.web_app.settings["last_activity_times"]
    await asyncio.sleep(0.3)  # job watcher passes without jobs
    assert jobs_activity not in times
    workflow = await make_workflow(
        api,
        project_path,
        "wf",
        [
            (tasks["Create demo plate"], {"args_non_parallel": PLATE}),
            (tasks["Misbehave"], {"args_parallel": {"mode": "sleep", "seconds": 4}}),
        ],
    )
    job = await submit(api, project_path, workflow, dataset)
    await wait_for_processes(api, project_path, job["id"], f"{job['working_dir']}/1_misbehave")
    # The watcher's pass that sees the job running may still be applying the first task's
    # images (seconds on a loaded machine); it reports the job when it ends.
    deadline = time.monotonic() + 15
    while jobs_activity not in times:
        assert time.monotonic() < deadline, "no pass of the job watcher reported the job"
        await asyncio.sleep(0.05)
    first = times[jobs_activity]
    await asyncio.sleep(0.5)
    assert times[jobs_activity] > first
    assert jp_serverapp.web_app.last_activity() >= times[jobs_activity]
    job = await wait_for_job(api, project_path, job["id"], timeout=30)
    assert job["status"] == "done", job["log"]
    await asyncio.sleep(0.3)
    last = times[jobs_activity]
    await asyncio.sleep(0.5)
    assert times[jobs_activity] == last  # no job runs: no activity


WARM_TASKS = Path(__file__).resolve().parent / "tasks"


@on_every_backend
@pytest.mark.parametrize("case", ["fresh state", "over its memory limit", "import fails"])
async def test_warm_calls_end_as_spawned_ones_and_the_log_says_how_they_started(api, env, case):
    """The four calls of a `<python> <script.py>` task fork from a warm starter, locally and
    in each SLURM job (two calls per SLURM job on the test cluster)."""
    project_path, dataset, tasks = env
    script = "warm_import_fails.py" if case == "import fails" else "warm_probe.py"
    status, task = await api(
        "POST",
        "api/v2/task/",
        {
            "name": "Warm probe",
            "source": f"test:{script}",
            "command_parallel": f"{sys.executable} {WARM_TASKS / script}",
        },
    )
    assert status == 201, task
    probe: dict = {}
    if case == "over its memory limit":  # 1 GB in a 200 MB address space
        probe = {
            "args_parallel": {"mode": "allocate", "blocks": 16},
            "meta_parallel": {"address_space_limit": "200M"},
        }
    workflow = await make_workflow(
        api,
        project_path,
        "wf",
        [(tasks["Create demo plate"], {"args_non_parallel": PLATE}), (task, probe)],
    )
    job = await wait_for_job(
        api, project_path, (await submit(api, project_path, workflow, dataset))["id"]
    )
    if case == "fresh state":
        assert job["status"] == "done", job["log"]
        assert "Warm probe: warm start, " in job["log"]
        # A module global of the task that each call appends to is new in every call.
        page = await images_of(api, project_path, dataset)
        assert [image["attributes"]["calls_seen"] for image in page["images"]] == [1] * 4
    elif case == "over its memory limit":
        assert job["status"] == "failed"
        assert "Warm probe: warm start, " in job["log"]
        assert "the task exited with code 1" in job["log"] and "MemoryError" in job["log"]
    else:
        assert job["status"] == "done", job["log"]
        assert (
            "Warm probe: one new process per call (the warm start failed: importing "
            f"{WARM_TASKS / script} failed: RuntimeError: this task refuses to be imported)"
        ) in job["log"]


def job_process_pid(job: dict) -> int:
    events_file = Path(job["working_dir"]) / "events.jsonl"
    for line in events_file.read_text().splitlines():
        event = json.loads(line)
        if event["type"] == "job_started":
            return int(event["pid"])
    raise AssertionError("no job_started event")


async def test_later_jobs_fork_from_the_job_starter_and_outlive_it(api, env, jp_serverapp):
    """The first job of a server spawns its job process and starts the job starter; the next
    jobs fork from it (runner/job_starter.py) and go on when it ends with the server."""
    project_path, dataset, tasks = env
    launcher = fractal_state_of(jp_serverapp).launcher
    quick = await make_workflow(
        api, project_path, "quick", [(tasks["Create demo plate"], {"args_non_parallel": PLATE})]
    )
    first = await wait_for_job(
        api, project_path, (await submit(api, project_path, quick, dataset))["id"]
    )
    assert first["status"] == "done", first["log"]
    starter = launcher._starter
    assert starter is not None
    first_pid = job_process_pid(first)
    slow = await make_workflow(
        api,
        project_path,
        "slow",
        [(tasks["Misbehave"], {"args_parallel": {"mode": "sleep", "seconds": 1.5}})],
    )
    for _ in range(100):  # the starter imports for a few tenths of a second
        if select_ready(starter):
            break
        await asyncio.sleep(0.05)
    job = await submit(api, project_path, slow, dataset)
    await wait_for_processes(api, project_path, job["id"], f"{job['working_dir']}/0_misbehave")
    pid = job_process_pid(job)
    assert pid != first_pid
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    assert int(stat[1]) == starter.pid  # its parent: the job starter
    assert int(stat[3]) == pid  # its own session
    assert b"fractal_jupyter.runner.job" in Path(f"/proc/{pid}/cmdline").read_bytes()
    launcher.close()  # as when the server ends: the starter goes, the job goes on
    assert starter.poll() is not None
    job = await wait_for_job(api, project_path, job["id"])
    assert job["status"] == "done", job["log"]
    assert "Misbehave: warm start" in job["log"]


def select_ready(process) -> bool:
    return bool(select.select([process.stdout], [], [], 0)[0])
