"""The widgets driven without a browser against a live test server: set values, click, read.

The server runs on the test's event loop, so every widget call that talks to it (building a
widget, a click that saves or queries) runs through `in_thread`.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from fractal_jupyter.widgets import ImageBrowser, JobMonitor, WorkflowBuilder
from fractal_jupyter.widgets.forms import TextField
from fractal_jupyter.widgets.zarr_thumbnail import thumbnail_png
from tests.support.jobs import make_workflow, register_tasks
from tests.support.tasks_core import task_create_bodies, tasks_core_manifest

STATUS = "__wftask_dataset_image_status__"


async def _project(api: Any, tmp_path: Path) -> tuple[int, int]:
    _, project = await api("POST", "api/v2/project/", {"name": "p"})
    _, dataset = await api(
        "POST",
        f"api/v2/project/{project['id']}/dataset/",
        {"name": "plate", "zarr_dir": str(tmp_path / "zarr")},
    )
    return project["id"], dataset["id"]


async def test_workflow_builder_builds_saves_and_runs(api, make_client, in_thread, tmp_path):
    project_id, dataset_id = await _project(api, tmp_path)
    demo = await register_tasks(api)
    for body in task_create_bodies(tasks_core_manifest("2.1.0")):
        status, answer = await api("POST", "api/v2/task/", body)
        assert status == 201, answer
    client = make_client()
    builder = await in_thread(WorkflowBuilder, client, project_id, name="demo wf")

    # The catalogue: search, category, modality, tags.
    names = lambda: [t.name for t in builder.visible_tasks]  # noqa: E731
    assert len(builder.tasks) == len(demo) + 9
    builder.search.value = "regist"
    assert names() == [
        "Calculate Registration (image-based)",
        "Find Registration Consensus",
        "Apply Registration to Image",
    ]
    # Listed by task group (here one per hand-made task): a header, then its task.
    header, first = builder.catalogue.options[:2]
    assert header[0].startswith("\u25b8 Apply Registration to Image")
    assert first[0].strip().startswith("Apply Registration to Image")
    builder.search.value = ""
    builder.category.value = "Measurement"
    assert set(names()) == {"Measure intensity", "Measure Features"}
    builder.category.value = "(any)"
    builder.tags.value = ("3D",)
    assert "Project image" in names() and "Measure intensity" not in names()
    builder.tags.value = ("3D", "demo")
    assert names() == ["Project image"]
    builder.tags.value = ()
    assert "HCS" in builder.modality.options
    builder.modality.value = "HCS"
    assert names() and all(t.modality == "HCS" for t in builder.visible_tasks), (
        builder.visible_tasks
    )
    builder.modality.value = "(any)"

    # Add by clicking, edit the arguments through the form, reorder, remove.
    for name in ("Create demo plate", "Project image", "Measure intensity"):
        builder.catalogue.value = demo[name]["id"]
        builder.add_button.click()
    assert [s.task.name for s in builder.steps] == [
        "Create demo plate",
        "Project image",
        "Measure intensity",
    ]
    builder.select_step(2)
    builder.up_button.click()
    assert [s.task.name for s in builder.steps][1:] == ["Measure intensity", "Project image"]
    assert builder.selected_step == 1
    threshold = builder.steps[1].form("parallel").field("threshold")
    assert isinstance(threshold, TextField) and threshold.input.value == "150.0"
    threshold.input.value = "200"
    builder.select_step(0)
    plate = builder.steps[0].form("non_parallel")
    assert plate in builder.editor_sections.children
    plate.field("rows").input.value = "AB"
    plate.field("columns").input.value = "0"  # below the minimum: refused
    await in_thread(builder.save_button.click)
    assert builder.message.failed and "columns" in builder.message.text
    assert builder.workflow_id is None  # nothing saved
    plate.field("columns").input.value = "2"
    plate.field("fields").input.value = "1"
    builder.catalogue.value = demo["Misbehave"]["id"]
    builder.add_button.click()
    builder.remove_button.click()  # the new step is selected: removed once confirmed
    assert len(builder.steps) == 4
    builder.confirm_remove_button.click()
    assert len(builder.steps) == 3

    await in_thread(builder.save_button.click)
    assert not builder.message.failed, builder.message.text
    _, workflow = await api("GET", f"api/v2/project/{project_id}/workflow/{builder.workflow_id}/")
    assert workflow["name"] == "demo wf"
    assert [wt["task"]["name"] for wt in workflow["task_list"]] == [
        "Create demo plate",
        "Measure intensity",
        "Project image",
    ]
    assert workflow["task_list"][0]["args_non_parallel"] == {
        "plate_name": "demo_plate.zarr",
        "rows": "AB",
        "columns": 2,
        "fields": 1,
        "seed": 0,
        "pixels": False,
    }
    assert workflow["task_list"][1]["args_parallel"] == {"threshold": 200}

    # Reorder and save again: the server follows; a second builder loads the same list.
    builder.select_step(2)
    builder.up_button.click()
    await in_thread(builder.save)
    _, workflow = await api("GET", f"api/v2/project/{project_id}/workflow/{builder.workflow_id}/")
    assert [wt["task"]["name"] for wt in workflow["task_list"]][1:] == [
        "Project image",
        "Measure intensity",
    ]
    again = await in_thread(WorkflowBuilder, client, project_id, builder.workflow_id)
    assert [s.task.name for s in again.steps] == [s.task.name for s in builder.steps]
    assert again.steps[0].form("non_parallel").value["rows"] == "AB"

    # Run on the chosen dataset: a monitor follows the job to its end.
    assert builder.dataset.value == dataset_id
    await in_thread(builder.run_button.click)
    assert builder.job is not None, builder.message.text
    monitor = builder.monitor
    assert isinstance(monitor, JobMonitor) and monitor in builder.monitor_box.children
    assert await in_thread(monitor.wait, 60) == "done", monitor.log_tail
    assert monitor.status == "done" and not monitor.following
    assert monitor.progress is not None
    progress = [
        (t.task_name, t.status, t.calls_done, t.calls_total) for t in monitor.progress.tasks
    ]
    assert progress == [  # a compound task: its init call, then one call per 3D image
        ("Create demo plate", "done", 1, 1),
        ("Project image", "done", 5, 5),
        ("Measure intensity", "done", 4, 4),  # the projections (dataset filter is_3D: false)
    ]
    bars = list(monitor.bars.values())
    assert [(b.value, b.max, b.bar_style) for b in bars] == [
        (1, 1, "success"),
        (5, 5, "success"),
        (4, 4, "success"),
    ]
    assert "END" in monitor.log_tail or "Project image" in monitor.log_tail
    assert monitor.stop_button.disabled
    # Each task's input images in this job, by status (the plate's converter has none).
    images = [(t.images_done, t.images_failed, t.images_submitted) for t in monitor.progress.tasks]
    assert images == [(0, 0, 0), (4, 0, 0), (4, 0, 0)]
    assert "4 images: 4 done" in monitor.tasks_box.children[1].children[2].value
    # What the user reads: steps from 1, tasks by what they do, no runner words.
    titles = [html.unescape(row.children[0].value) for row in monitor.tasks_box.children]
    assert titles == [
        "Step 1: task 'Create demo plate' (converter)",
        "Step 2: task 'Project image' (prepared once, then per image)",
        "Step 3: task 'Measure intensity' (per image)",
    ]
    shown = html.unescape(monitor.log_html.value)
    assert "Step 1: task 'Create demo plate' (converter) started" in shown
    assert "Step 3: task 'Measure intensity' (per image) ended" in shown
    rows = "".join(row.children[2].value for row in monitor.tasks_box.children)
    for jargon in ("-th task", "converter_", "non_parallel", "compound", "call"):
        assert jargon not in shown + rows + "".join(titles), jargon
    assert 'SUBMIT 0-th task (name="Create demo plate")' in monitor.log_text  # the API's log


async def test_job_monitor_stop_button(api, make_client, in_thread, tmp_path):
    project_id, dataset_id = await _project(api, tmp_path)
    tasks = await register_tasks(api)
    client = make_client()
    builder = await in_thread(WorkflowBuilder, client, project_id)
    builder.add_task("Create demo plate")
    builder.add_task("Misbehave")
    builder.steps[0].form("non_parallel").value = {"rows": "A", "columns": 1, "fields": 1}
    sleeper = builder.steps[1].form("parallel")
    sleeper.value = {"mode": "sleep", "seconds": 120}
    assert sleeper.value == {"mode": "sleep", "seconds": 120}  # a schema-less task: kept as given
    monitor = await in_thread(builder.run, dataset_id)
    assert monitor is not None and monitor.following, builder.message.text
    assert tasks["Misbehave"]["id"] == builder.steps[1].task.id

    async def misbehave_started() -> bool:
        await in_thread(monitor.refresh)
        assert monitor.progress is not None
        return monitor.progress.tasks[1].status == "submitted"

    for _ in range(200):
        if await misbehave_started():
            break
    assert monitor.progress is not None
    assert [t.status for t in monitor.progress.tasks] == ["done", "submitted"]
    assert monitor.progress.tasks[1].calls_total == 1
    assert not monitor.stop_button.disabled
    await in_thread(monitor.stop_button.click)
    assert monitor.message.text == "stop requested"
    assert await in_thread(monitor.wait, 30) == "failed"
    assert "stopped by the user" in monitor.log_tail
    assert monitor.progress.tasks[1].status == "failed"
    assert monitor.bars[builder.steps[1].workflow_task_id].bar_style == "danger"


def write_ome_zarr(path: Path, image: np.ndarray) -> None:
    """A two-level OME-Zarr v2 image (czyx), blosc-compressed, 64x64 chunks."""
    from numcodecs import Blosc

    codec = Blosc(cname="zstd", clevel=3)
    path.mkdir(parents=True)
    axes = [{"name": n, "type": "space" if n in "zyx" else "channel"} for n in "czyx"]
    datasets = [{"path": str(level)} for level in range(2)]
    (path / ".zattrs").write_text(
        json.dumps({"multiscales": [{"version": "0.4", "axes": axes, "datasets": datasets}]})
    )
    (path / ".zgroup").write_text('{"zarr_format": 2}')
    for level in range(2):
        data = image[:, :, :: 2**level, :: 2**level]
        folder = path / str(level)
        folder.mkdir()
        chunks = [1, 1, 64, 64]
        (folder / ".zarray").write_text(
            json.dumps(
                {
                    "zarr_format": 2,
                    "shape": list(data.shape),
                    "chunks": chunks,
                    "dtype": data.dtype.str,
                    "compressor": codec.get_config(),
                    "fill_value": 0,
                    "order": "C",
                    "filters": None,
                    "dimension_separator": "/",
                }
            )
        )
        for c in range(data.shape[0]):
            for z in range(data.shape[1]):
                for y in range(0, data.shape[2], 64):
                    for x in range(0, data.shape[3], 64):
                        block = np.zeros(chunks[2:], dtype=data.dtype)
                        part = data[c, z, y : y + 64, x : x + 64]
                        block[: part.shape[0], : part.shape[1]] = part
                        chunk = folder / str(c) / str(z) / str(y // 64) / str(x // 64)
                        chunk.parent.mkdir(parents=True, exist_ok=True)
                        chunk.write_bytes(codec.encode(block))


def test_thumbnail_of_the_lowest_resolution(tmp_path):
    image = np.zeros((2, 3, 200, 150), dtype=np.uint16)
    image[0, 1, 50:100, :] = 1000  # a bright band on the middle z plane, first channel
    write_ome_zarr(tmp_path / "img.zarr", image)
    png = thumbnail_png(str(tmp_path / "img.zarr"))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (75, 100)  # level 1 of 150x200


async def test_image_browser_pages_filters_and_thumbnail(api, make_client, in_thread, tmp_path):
    project_id, dataset_id = await _project(api, tmp_path)
    zarr = tmp_path / "zarr"
    base = f"api/v2/project/{project_id}/dataset/{dataset_id}/images/"
    for index in range(30):
        image = {
            "zarr_url": f"{zarr}/plate.zarr/{'AB'[index % 2]}/{index:02d}/0",
            "attributes": {"well": f"{'AB'[index % 2]}{index % 3}", "index": index},
            "types": {"is_3D": index < 20},
        }
        status, answer = await api("POST", base, image)
        assert status == 201, answer
    pixels = (np.arange(128 * 128, dtype=np.uint16).reshape(1, 1, 128, 128)) % 500
    write_ome_zarr(zarr / "plate.zarr" / "A" / "00" / "0", pixels)

    browser = await in_thread(ImageBrowser, make_client(), project_id, dataset_id, page_size=10)
    assert (browser.total_count, browser.page, browser.page_count) == (30, 1, 3)
    assert len(browser.images) == 10 and browser.images[0].attributes["index"] == 0
    assert browser.filters == {"attributes": {}, "types": {}}
    assert sorted(browser.attribute_values["well"]) == ["A0", "A1", "A2", "B0", "B1", "B2"]
    assert browser.type_names == ["is_3D"]
    assert set(browser.attribute_filters) == {"well", "index"}
    assert "30</b> image(s)" in browser.count_html.value
    assert len(browser.rows.lines) == 10 and browser.rows.lines[0].startswith("plate.zarr/A/00/0")

    await in_thread(browser.next_button.click)
    assert browser.page == 2 and browser.images[0].attributes["index"] == 10
    assert browser.prev_button.disabled is False
    await in_thread(browser.next_button.click)
    assert browser.page == 3 and browser.next_button.disabled

    # Filters: an attribute value from the summary, then a type; back to page 1.
    await in_thread(browser.set_filter, "well", "A0")
    assert browser.filters == {"attributes": {"well": ["A0"]}, "types": {}}
    assert browser.page == 1 and browser.total_count == 5
    assert {i.attributes["well"] for i in browser.images} == {"A0"}
    await in_thread(setattr, browser.type_filters["is_3D"], "value", False)
    assert browser.filters["types"] == {"is_3D": False}
    assert [i.attributes["index"] for i in browser.images] == [24]
    await in_thread(browser.set_type_filter, "is_3D", None)
    await in_thread(browser.set_filter, "well")
    assert browser.total_count == 30

    # Page size, then the thumbnail of a selected image.
    await in_thread(setattr, browser.size_input, "value", 25)
    assert browser.page_size == 25 and len(browser.images) == 25 and browser.page_count == 2
    await in_thread(browser.select, 0)
    assert browser.selected == browser.images[0]
    assert bytes(browser.thumbnail.value).startswith(b"\x89PNG")
    assert browser.thumbnail_data_url.startswith("data:image/png;base64,")
    assert browser.rows.selected == 0 and browser.thumbnail.layout.display == ""
    await in_thread(browser.select, 1)  # no OME-Zarr there: a note, no broken image, no path
    assert bytes(browser.thumbnail.value) == b"" and browser.thumbnail.layout.display == "none"
    assert "No preview" in browser.thumbnail_note.value
    assert str(tmp_path) not in browser.thumbnail_note.value
    assert "<a " not in browser.thumbnail_note.value  # no viewer configured: no link

    # A refused query shows the server's reason.
    broken = await in_thread(ImageBrowser, make_client("bob"), project_id, dataset_id)
    assert broken.message.failed and "403" in broken.message.text


async def test_image_browser_shows_status_logs_and_reruns_the_failed(
    api, make_client, in_thread, tmp_path
):
    project_id, dataset_id = await _project(api, tmp_path)
    urls = [f"{tmp_path}/zarr/plate.zarr/{well}" for well in ("A01", "B01")]
    for url in urls:
        status, answer = await api(
            "POST", f"api/v2/project/{project_id}/dataset/{dataset_id}/images/", {"zarr_url": url}
        )
        assert status == 201, answer
    tasks = await register_tasks(api)
    project_path = f"api/v2/project/{project_id}/"
    workflow = await make_workflow(
        api,
        project_path,
        "wf",
        [(tasks["Misbehave"], {"args_parallel": {"mode": "exit", "victims": ["/B01"]}})],
    )
    wftask_id = workflow["task_list"][0]["id"]
    client = make_client()
    job = await in_thread(client.submit_job, project_id, workflow["id"], dataset_id)
    job = await in_thread(client.wait_for_job, project_id, job.id, timeout=60, poll_interval=0.1)
    assert job.status == "failed"

    browser = await in_thread(
        ImageBrowser, client, project_id, dataset_id, workflow_id=workflow["id"]
    )
    assert browser.workflowtask_id is None and browser.rerun_button.disabled
    await in_thread(setattr, browser.status_task, "value", wftask_id)
    assert browser.attribute_values[STATUS] == ["done", "failed"]
    assert STATUS in browser.rows.header.value and not browser.rerun_button.disabled
    await in_thread(browser.set_filter, STATUS, "failed")
    assert [image.zarr_url for image in browser.images] == urls[1:]
    await in_thread(browser.select, 0)
    assert f"misbehaving (exit) on {urls[1]}" in browser.log_area.value

    # The cause fixed, "Rerun failed" runs the task on that image only.
    await api(
        "PATCH",
        f"{project_path}workflow/{workflow['id']}/wftask/{wftask_id}/",
        {"args_parallel": {"mode": "exit", "victims": ["/nothing"]}},
    )
    await in_thread(browser.rerun_button.click)
    assert browser.rerun_job_id is not None, browser.message.text
    rerun = await in_thread(
        client.wait_for_job, project_id, browser.rerun_job_id, timeout=60, poll_interval=0.1
    )
    assert rerun.status == "done", rerun.log
    await in_thread(browser.set_filter, STATUS)
    assert browser.attribute_values[STATUS] == ["done"] and browser.total_count == 2
    assert browser.rerun_button.disabled
    # Without a task, no status: the plain query.
    await in_thread(setattr, browser.status_task, "value", None)
    assert STATUS not in browser.attribute_values and STATUS not in browser.filters["attributes"]
