"""Run history, per-image status and "rerun the failed images", end to end through HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from tests import test_job
from tests.support.jobs import make_workflow, register_tasks, wait_for_job

# The main test runs on every backend, with test_job.py's fixtures (SLURM: a server as the
# cluster's user, data in its folder).
on_every_backend = test_job.on_every_backend
backend = test_job.backend
tmp_path = test_job.tmp_path
user_server = test_job.user_server
jp_fetch = test_job.jp_fetch
slurm_cluster = test_job.slurm_cluster

STATUS = "__wftask_dataset_image_status__"
WELLS = ["A01", "A02", "B01", "B02"]
VICTIMS = ["/B01", "/B02"]


@pytest.fixture
def fractal_config(fractal_config: dict[str, Any]) -> dict[str, Any]:
    # Every call of a task runs at once: a failure cancels no sibling that has not started.
    return {**fractal_config, "local_max_workers": len(WELLS)}


@pytest.fixture
def env(api, jp_asyncio_loop, tmp_path):
    async def make() -> dict[str, Any]:
        _, project = await api("POST", "api/v2/project/", {"name": "p"})
        project_path = f"api/v2/project/{project['id']}/"
        zarr_dir = tmp_path / "zarr"
        _, dataset = await api(
            "POST", project_path + "dataset/", {"name": "d", "zarr_dir": str(zarr_dir)}
        )
        for well in WELLS:
            status, answer = await api(
                "POST",
                f"{project_path}dataset/{dataset['id']}/images/",
                {"zarr_url": f"{zarr_dir}/plate.zarr/{well}", "attributes": {"row": well[0]}},
            )
            assert status == 201, answer
        tasks = await register_tasks(api)
        workflow = await make_workflow(
            api,
            project_path,
            "wf",
            [(tasks["Misbehave"], {"args_parallel": {"mode": "exit", "victims": VICTIMS}})],
        )
        return {
            "project_path": project_path,
            "dataset": dataset,
            "workflow": workflow,
            "wftask": workflow["task_list"][0],
            "urls": [f"{zarr_dir}/plate.zarr/{well}" for well in WELLS],
        }

    return jp_asyncio_loop.run_until_complete(make())


async def submit(api, env, body: dict[str, Any], expect: int = 202) -> dict[str, Any]:
    status, job = await api(
        "POST",
        env["project_path"] + "job/submit/",
        body,
        params={"workflow_id": str(env["workflow"]["id"]), "dataset_id": str(env["dataset"]["id"])},
    )
    assert status == expect, job
    return dict(job)


def ids(env) -> dict[str, str]:
    return {"dataset_id": str(env["dataset"]["id"]), "workflowtask_id": str(env["wftask"]["id"])}


async def status_images(api, env, statuses: list[str] | None = None) -> dict[str, Any]:
    body = {"attribute_filters": {STATUS: statuses}} if statuses else {}
    status, page = await api("POST", env["project_path"] + "status/images/", body, params=ids(env))
    assert status == 200, page
    return dict(page)


@on_every_backend
async def test_failed_images_are_named_with_their_logs_and_rerun_alone(api, env):
    project_path, urls = env["project_path"], env["urls"]
    job = await wait_for_job(api, project_path, (await submit(api, env, {}))["id"], timeout=180)
    assert job["status"] == "failed"

    failed = await status_images(api, env, ["failed"])
    assert failed["total_count"] == 2
    assert [image["zarr_url"] for image in failed["items"]] == urls[2:]
    assert all(image["attributes"][STATUS] == "failed" for image in failed["items"])
    assert failed["items"][0]["attributes"]["row"] == "B"
    everything = await status_images(api, env)
    assert [image["attributes"][STATUS] for image in everything["items"]] == [
        "done",
        "done",
        "failed",
        "failed",
    ]
    assert everything["attributes"][STATUS] == ["done", "failed"]
    assert everything["attributes"]["row"] == ["A", "B"]

    status, log = await api(
        "POST",
        project_path + "status/image-log/",
        {
            "workflowtask_id": env["wftask"]["id"],
            "dataset_id": env["dataset"]["id"],
            "zarr_url": urls[2],
        },
    )
    assert status == 200 and f"misbehaving (exit) on {urls[2]}" in log
    assert "the image is corrupt" in log

    status, runs = await api("GET", project_path + "status/run/", params=ids(env))
    assert status == 200, runs
    [run] = runs
    assert (run["num_done_units"], run["num_failed_units"], run["num_submitted_units"]) == (2, 2, 0)
    assert run["workflowtask_dump"]["args_parallel"]["victims"] == VICTIMS
    status, units = await api(
        "GET",
        f"{project_path}status/run/{run['id']}/units/",
        params={**ids(env), "unit_status": "failed", "page_size": "1", "page": "2"},
    )
    assert status == 200, units
    assert (units["total_count"], units["current_page"], units["page_size"]) == (2, 2, 1)
    [unit] = units["items"]
    assert unit["zarr_urls"] == [urls[3]] and unit["status"] == "failed"
    status, unit_log = await api(
        "GET",
        project_path + "status/unit-log/",
        params={**ids(env), "history_run_id": str(run["id"]), "history_unit_id": str(unit["id"])},
    )
    assert status == 200 and f"misbehaving (exit) on {urls[3]}" in unit_log

    status, latest = await api(
        "GET",
        project_path + "latest-job/",
        params={"workflow_id": str(env["workflow"]["id"]), "dataset_id": ids(env)["dataset_id"]},
    )
    assert status == 200, latest
    assert latest["id"] == job["id"] and latest["status"] == "failed"
    counts = latest["task_statuses"][str(env["wftask"]["id"])]
    assert counts["status"] == "failed"
    assert (counts["num_done_images"], counts["num_failed_images"]) == (2, 2)
    assert counts["num_available_images"] == 4

    # The user fixes the cause, then reruns the failed images only.
    status, answer = await api(
        "PATCH",
        f"{project_path}workflow/{env['workflow']['id']}/wftask/{env['wftask']['id']}/",
        {"args_parallel": {"mode": "exit", "victims": ["/nothing"]}},
    )
    assert status == 200, answer
    rerun = await submit(api, env, {"attribute_filters": {STATUS: ["failed"]}})
    rerun = await wait_for_job(api, project_path, rerun["id"], timeout=180)
    assert rerun["status"] == "done", rerun["log"]

    _, runs = await api("GET", project_path + "status/run/", params=ids(env))
    assert len(runs) == 2 and runs[1]["num_done_units"] == 2
    assert runs[1]["workflowtask_dump"]["args_parallel"]["victims"] == ["/nothing"]
    _, units = await api("GET", f"{project_path}status/run/{runs[1]['id']}/units/", params=ids(env))
    assert sorted(unit["zarr_urls"][0] for unit in units["items"]) == urls[2:]
    assert (await status_images(api, env, ["failed"]))["total_count"] == 0
    assert (await status_images(api, env, ["done"]))["total_count"] == 4
    assert (await status_images(api, env, ["unset", "submitted"]))["total_count"] == 0
    _, latest = await api(
        "GET",
        project_path + "latest-job/",
        params={"workflow_id": str(env["workflow"]["id"]), "dataset_id": ids(env)["dataset_id"]},
    )
    assert latest["attribute_filters"] == {STATUS: ["failed"]}
    assert latest["task_statuses"][str(env["wftask"]["id"])]["num_done_images"] == 4

    # A deleted image leaves the status counts.
    status, _ = await api(
        "DELETE",
        f"{project_path}dataset/{env['dataset']['id']}/images/",
        params={"zarr_url": urls[0]},
    )
    assert status == 204
    done = await status_images(api, env, ["done"])
    assert done["total_count"] == 3 and done["attributes"][STATUS] == ["done"]
    assert (await status_images(api, env, ["unset"]))["total_count"] == 0


async def test_status_of_images_never_run_is_unset_and_filters_combine(api, env):
    page = await status_images(api, env, ["unset"])
    assert page["total_count"] == 4 and page["attributes"][STATUS] == ["unset"]
    status, page = await api(
        "POST",
        env["project_path"] + "status/images/",
        {"attribute_filters": {"row": ["B", "C"], STATUS: ["unset", "done"]}},
        params={**ids(env), "page_size": "1"},
    )
    assert status == 200, page
    assert page["total_count"] == 2 and page["items"][0]["zarr_url"] == env["urls"][2]


async def test_bad_input_is_refused_with_a_detail_and_writes_nothing(api, env):
    project_path = env["project_path"]
    for params, expected in [
        ({**ids(env), "workflowtask_id": "999"}, 404),
        ({**ids(env), "dataset_id": "999"}, 404),
    ]:
        status, answer = await api("GET", project_path + "status/run/", params=params)
        assert status == expected and answer["detail"], answer
        status, answer = await api("POST", project_path + "status/images/", {}, params=params)
        assert status == expected and answer["detail"], answer
    for body in [
        {"attribute_filters": {"row": "B"}},
        {"attribute_filters": {STATUS: ["broken"]}},
        {"attribute_filters": {"row": []}},
        {"type_filters": {"is_3D": "yes"}},
    ]:
        status, answer = await api("POST", project_path + "status/images/", body, params=ids(env))
        assert status == 422 and answer["detail"], (body, answer)
        await submit(api, env, body, expect=422)
    _, jobs = await api("GET", project_path + "job/")
    assert jobs == []

    # A workflow task of another workflow.
    other = await make_workflow(api, project_path, "other", [])
    status, answer = await api(
        "POST",
        f"{project_path}dataset/{env['dataset']['id']}/images/non-processed/",
        {},
        params={"workflow_id": str(other["id"]), "workflowtask_id": str(env["wftask"]["id"])},
    )
    assert status == 422 and "is not a task of workflow" in answer["detail"]


async def test_non_processed_and_unique_types_and_squeue(api, env):
    project_path, dataset_id = env["project_path"], env["dataset"]["id"]
    status, answer = await api(
        "POST",
        f"{project_path}dataset/{dataset_id}/images/non-processed/",
        {},
        params={
            "workflow_id": str(env["workflow"]["id"]),
            "workflowtask_id": str(env["wftask"]["id"]),
        },
    )
    assert (status, answer) == (200, [])  # the first task has no predecessor
    await api(
        "PATCH",
        f"{project_path}dataset/{dataset_id}/images/",
        {"zarr_url": env["urls"][0], "types": {"is_3D": True}},
    )
    status, answer = await api(
        "POST",
        f"{project_path}dataset/{dataset_id}/images/verify-unique-types/",
        {},
        params={"workflowtask_id": str(env["wftask"]["id"])},
    )
    assert (status, answer) == (200, ["is_3D"])
    status, answer = await api(
        "POST",
        f"{project_path}dataset/{dataset_id}/images/verify-unique-types/",
        {"attribute_filters": {"row": ["A"]}, "type_filters": {"is_3D": True}},
        params={"workflowtask_id": str(env["wftask"]["id"])},
    )
    assert (status, answer) == (200, [])
    assert await api("GET", "api/v2/job/squeue/") == (200, [])


async def test_job_attribute_filters_select_the_images_it_runs_on(api, env):
    status, answer = await api(
        "PATCH",
        f"{env['project_path']}workflow/{env['workflow']['id']}/wftask/{env['wftask']['id']}/",
        {"args_parallel": {"mode": "exit", "victims": ["/nothing"]}},
    )
    assert status == 200, answer
    job = await submit(api, env, {"attribute_filters": {"row": ["A", "C"]}})
    job = await wait_for_job(api, env["project_path"], job["id"])
    assert job["status"] == "done", job["log"]
    page = await status_images(api, env)
    assert [image["attributes"][STATUS] for image in page["items"]] == [
        "done",
        "done",
        "unset",
        "unset",
    ]


async def test_more_than_30_filters_of_a_kind_are_refused_in_status_queries_and_jobs(api, env):
    too_many = {f"k{index}": [index] for index in range(31)}
    status, answer = await api(
        "POST",
        env["project_path"] + "status/images/",
        {"attribute_filters": too_many},
        params=ids(env),
    )
    assert status == 422 and "at most 30 attribute filters, not 31" in str(answer["detail"])
    _, jobs_before = await api("GET", env["project_path"] + "job/")
    status, answer = await api(
        "POST",
        f"{env['project_path']}job/submit/",
        {"type_filters": {key: True for key in too_many}},
        params={"workflow_id": str(env["workflow"]["id"]), "dataset_id": str(env["dataset"]["id"])},
    )
    assert status == 422 and "at most 30 type filters, not 31" in str(answer["detail"])
    _, jobs_after = await api("GET", env["project_path"] + "job/")
    assert jobs_after == jobs_before
