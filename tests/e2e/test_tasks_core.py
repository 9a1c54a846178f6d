"""The real fractal-tasks-core from PyPI: collected through the API, run as a job on a
synthetic 3D plate, results checked (recipe: ../shared/recipes/tasks-core-smoke/).

* 2.1.0: Import OME-Zarr (converter) -> Project Image (HCS Plate) -> Threshold Segmentation
  -> Measure Features;
* 1.3.4 (the generation of fractal-server 2.6.4, pandas pinned to 2.3.3): Import OME-Zarr ->
  Project Image (HCS Plate) (copy the plate, then project). 1.3.4 has no threshold
  segmentation nor feature measurement (its segmentation is Cellpose, with torch and model
  weights), so its run stops at the projection.

The venvs live in a tasks_dir that outlives the test run (`~/.cache/fractal-jupyter/e2e-tasks`,
or `$FRACTAL_E2E_TASKS_DIR`): the first run installs (minutes), later runs collect the same
packages again into a new database and the server reuses the complete environments it finds
there (seconds).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.jobs import make_workflow, wait_for_job
from tests.support.tasks_core import (
    EXPECTED_LABEL_PIXELS,
    EXPECTED_MIP_MAX,
    EXPECTED_MIP_MIN,
    INSPECT_IMAGE,
    write_synthetic_plate,
)
from tests.test_task_collection import COLLECT, PY, wait_for_collection

# Outside the checkout, so that a fresh clone on the same machine (CI) finds the venvs too.
TASKS_DIR = Path(
    os.environ.get(
        "FRACTAL_E2E_TASKS_DIR",
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "fractal-jupyter"
        / "e2e-tasks",
    )
)
COLLECTION_TIMEOUT = 1200.0
JOB_TIMEOUT = 600.0


@pytest.fixture
def fractal_config(fractal_config: dict[str, Any]) -> dict[str, Any]:
    return {**fractal_config, "tasks_dir": str(TASKS_DIR)}


@pytest.fixture(autouse=True)
def _no_pythonpath(jp_environ: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """pytest-jupyter puts the test process's sys.path in PYTHONPATH; the job process hands
    its environment to the task processes, whose venv's packages it would then shadow."""
    monkeypatch.delenv("PYTHONPATH", raising=False)


async def collect(api: Any, body: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    # As an administrator: owner-less tasks, which alice's jobs below may run (a user's own
    # collection would be theirs, and the cached venvs hold administrators' collections).
    status, state = await api("POST", COLLECT + "pip/", body, user="admin")
    assert status == 201, state
    final, _ = await wait_for_collection(api, state["id"], timeout=COLLECTION_TIMEOUT)
    data = final["data"]
    assert data["status"] == "OK", data.get("info", "") + "\n" + data.get("log", "")[-5000:]
    reused = "reusing it" in data["log"]
    print(
        f"\ncollection of {body['package']} {body['package_version']}: "
        f"{time.monotonic() - started:.0f} s ({'reused' if reused else 'installed'})"
    )
    return dict(data)


async def run_workflow(
    api: Any, tmp_path: Path, tasks: dict[str, dict[str, Any]], steps: list[tuple[str, dict]]
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A project, a dataset on a fresh synthetic plate, the workflow, one job (done)."""
    zarr_dir = tmp_path / "zarr"
    write_synthetic_plate(zarr_dir)
    _, project = await api("POST", "api/v2/project/", {"name": "tasks-core"})
    project_path = f"api/v2/project/{project['id']}/"
    _, dataset = await api(
        "POST", project_path + "dataset/", {"name": "plate", "zarr_dir": str(zarr_dir)}
    )
    workflow = await make_workflow(
        api, project_path, "smoke", [(tasks[name], body) for name, body in steps]
    )
    started = time.monotonic()
    status, job = await api(
        "POST",
        project_path + "job/submit/",
        {},
        params={"workflow_id": str(workflow["id"]), "dataset_id": str(dataset["id"])},
    )
    assert status == 202, job
    job = await wait_for_job(api, project_path, job["id"], timeout=JOB_TIMEOUT)
    assert job["status"] == "done", job["log"]
    print(f"job of {len(steps)} tasks: {time.monotonic() - started:.0f} s")
    return project_path, dataset, job


async def images_and_filters(
    api: Any, project_path: str, dataset: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    _, page = await api("POST", f"{project_path}dataset/{dataset['id']}/images/query/", {})
    _, current = await api("GET", f"{project_path}dataset/{dataset['id']}/")
    return page["images"], current["filters"]


async def inspect_image(python: str, image: str) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        python,
        "-c",
        INSPECT_IMAGE,
        image,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    return dict(json.loads(stdout.decode().strip().splitlines()[-1]))


def check_collected(data: dict[str, Any], version: str, expected: list[str]) -> dict[str, Any]:
    tasks = {task["name"]: task for task in data["task_list"]}
    assert set(expected) <= set(tasks), sorted(tasks)
    venv = TASKS_DIR / ".fractal" / f"fractal-tasks-core{version}"
    assert data["venv_path"] == f".fractal/fractal-tasks-core{version}"
    python = f"{venv}/venv/bin/python"
    for task in tasks.values():
        slug = task["name"].replace(" ", "_").lower()
        assert task["source"] == f"pip_remote:fractal_tasks_core:{version}::py{PY}:{slug}"
        assert task["owner"] is None and task["version"] == version
        for command in (task["command_non_parallel"], task["command_parallel"]):
            if command is not None:
                interpreter, script = command.split()
                assert interpreter == python
                assert "/site-packages/fractal_tasks_core/" in script and Path(script).is_file()
    assert f"fractal-tasks-core=={version}" in data["freeze"]
    return tasks


def plate_urls(zarr_dir: Path) -> tuple[str, str]:
    return f"{zarr_dir}/synthetic.zarr/B/03/0", f"{zarr_dir}/synthetic_mip.zarr/B/03/0"


async def test_fractal_tasks_core_2_1_0(api, tmp_path):
    data = await collect(api, {"package": "fractal-tasks-core", "package_version": "2.1.0"})
    steps = [
        ("Import OME-Zarr", {"args_non_parallel": {"zarr_name": "synthetic.zarr"}}),
        ("Project Image (HCS Plate)", {}),
        (
            "Threshold Segmentation",
            {"args_parallel": {"channel": {"mode": "label", "identifier": "DAPI"}}},
        ),
        ("Measure Features", {"args_parallel": {"input_label_name": "DAPI_segmented"}}),
    ]
    tasks = check_collected(data, "2.1.0", [name for name, _ in steps])
    # Manifest fields newer than 2.6.4 are kept.
    assert tasks["Import OME-Zarr"]["type"] == "converter_non_parallel"
    projection = tasks["Project Image (HCS Plate)"]
    assert projection["type"] == "compound" and projection["category"] == "Image Processing"
    assert projection["modality"] == "HCS" and "3D" in projection["tags"]
    assert projection["args_schema_version"] == "fractal_schema_v1"
    assert projection["docs_link"].startswith("https://")

    project_path, dataset, job = await run_workflow(api, tmp_path, tasks, steps)
    assert all(f'task (name="{name}")' in job["log"] for name, _ in steps), job["log"]
    # Warm: the five commands (the compound task has two) of the package's one Python fork
    # from one starter, which imported the first script and then each other one on top.
    warm = [line for line in job["log"].splitlines() if ": warm start, " in line]
    assert len(warm) == 5, job["log"]
    assert sum("by the starter of " in line for line in warm) == 4, job["log"]
    assert "one new process per call" not in job["log"], job["log"]
    original, mip = plate_urls(tmp_path / "zarr")
    images, filters = await images_and_filters(api, project_path, dataset)
    assert [image["zarr_url"] for image in images] == [original, mip]
    assert images[0]["types"] == {"is_3D": True} and images[0]["origin"] is None
    assert images[0]["attributes"] == {"plate": "synthetic.zarr", "well": "B03"}
    assert images[1]["types"] == {"is_3D": False} and images[1]["origin"] == original
    assert images[1]["attributes"] == {"plate": "synthetic_mip.zarr", "well": "B03"}
    assert filters["types"] == {"is_3D": False}

    found = await inspect_image(projection["command_parallel"].split()[0], mip)
    assert found["shape"] == [2, 1, 64, 64] and found["dtype"] == "uint16"
    assert found["max"] == EXPECTED_MIP_MAX and found["min"] == EXPECTED_MIP_MIN
    assert found["labels"] == ["DAPI_segmented"]
    assert found["label_ids"] == [0, 1] and found["label_pixels"] == EXPECTED_LABEL_PIXELS
    assert "region_props_features" in found["tables"]
    assert found["features_rows"] == 1, found["features"]
    feature = found["features"][0]
    assert feature["label"] == 1 and feature["num_pixels"] == EXPECTED_LABEL_PIXELS, feature
    # Areas are physical: 0.65 um pixels.
    assert feature["area"] == pytest.approx(EXPECTED_LABEL_PIXELS * 0.65**2), feature


async def test_fractal_tasks_core_1_3_4(api, tmp_path):
    data = await collect(
        api,
        {
            "package": "fractal-tasks-core",
            "package_version": "1.3.4",
            "pinned_package_versions": {"pandas": "2.3.3"},
        },
    )
    steps = [
        ("Import OME-Zarr", {"args_non_parallel": {"zarr_name": "synthetic.zarr"}}),
        ("Project Image (HCS Plate)", {}),
    ]
    tasks = check_collected(data, "1.3.4", [name for name, _ in steps])
    assert "pandas==2.3.3" in data["freeze"]
    # 1.3.4's manifest has no task types: 2.6.4's rule (commands) makes them.
    assert tasks["Import OME-Zarr"]["type"] == "non_parallel"
    projection = tasks["Project Image (HCS Plate)"]
    assert projection["type"] == "compound"
    assert projection["command_non_parallel"].endswith("/tasks/copy_ome_zarr_hcs_plate.py")
    assert projection["command_parallel"].endswith("/tasks/projection.py")
    assert projection["args_schema_version"] == "pydantic_v2"

    project_path, dataset, job = await run_workflow(api, tmp_path, tasks, steps)
    assert all(f'task (name="{name}")' in job["log"] for name, _ in steps), job["log"]
    # Warm: the three commands (the compound task has two) of the package's one Python fork
    # from one starter, which imported the first script and then each other one on top.
    warm = [line for line in job["log"].splitlines() if ": warm start, " in line]
    assert len(warm) == 3, job["log"]
    assert sum("by the starter of " in line for line in warm) == 2, job["log"]
    assert "one new process per call" not in job["log"], job["log"]
    original, mip = plate_urls(tmp_path / "zarr")
    images, filters = await images_and_filters(api, project_path, dataset)
    assert [image["zarr_url"] for image in images] == [original, mip]
    assert images[0]["types"] == {"is_3D": True}
    assert images[0]["attributes"] == {"plate": "synthetic.zarr", "well": "B03"}
    # 1.3.4's projection adds no attributes: the new image inherits its origin's.
    assert images[1]["types"] == {"is_3D": False} and images[1]["origin"] == original
    assert images[1]["attributes"] == {"plate": "synthetic.zarr", "well": "B03"}
    assert filters["types"] == {"is_3D": False}

    found = await inspect_image(projection["command_parallel"].split()[0], mip)
    assert found["shape"] == [2, 1, 64, 64] and found["dtype"] == "uint16"
    assert found["max"] == EXPECTED_MIP_MAX and found["min"] == EXPECTED_MIP_MIN
    assert {"image_ROI_table", "grid_ROI_table"} <= set(found["tables"]), found["tables"]
    assert found["labels"] == []
