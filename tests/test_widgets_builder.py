"""The WorkflowBuilder's run panel, step settings and step editing, driven without a browser
against a live test server (as tests/test_widgets.py: calls that talk to the server run
through `in_thread`). Bad input gets a message at its field and nothing reaches the server."""

from __future__ import annotations

import asyncio
import html
import json
import sys
from pathlib import Path
from typing import Any

import ipywidgets as w

from fractal_jupyter.widgets import WorkflowBuilder
from fractal_jupyter.widgets.forms import DictField
from fractal_jupyter.widgets.run_panel import first_step_filters
from tests.support.jobs import MISBEHAVE, register_tasks
from tests.support.layouts import clipping_risks, descendants
from tests.support.tasks_core import task_create_bodies, tasks_core_manifest

HARMLESS = {"mode": "exit", "victims": ["/nothing"]}  # Misbehave doing nothing wrong


async def _project_with_images(api: Any, tmp_path: Path) -> tuple[int, int]:
    _, project = await api("POST", "api/v2/project/", {"name": "p"})
    _, dataset = await api(
        "POST",
        f"api/v2/project/{project['id']}/dataset/",
        {"name": "plate", "zarr_dir": str(tmp_path / "zarr")},
    )
    base = f"api/v2/project/{project['id']}/dataset/{dataset['id']}/images/"
    for index, well in enumerate(["A01", "A02", "B01", "B02", "C01", "C02"]):
        image = {
            "zarr_url": f"{tmp_path}/zarr/plate.zarr/{well}",
            "attributes": {"well": well, "row": well[0]},
            "types": {"is_3D": index % 2 == 0},
        }
        status, answer = await api("POST", base, image)
        assert status == 201, answer
    return project["id"], dataset["id"]


async def _jobs(api: Any, project_id: int) -> list[dict[str, Any]]:
    status, jobs = await api("GET", f"api/v2/project/{project_id}/job/")
    assert status == 200, jobs
    return list(jobs)


def test_first_step_filters_merge_and_contradictions() -> None:
    dataset = {"attributes": {"row": "A", "plate": None}, "types": {"is_3D": True}}
    step = {"attributes": {}, "types": {"illumination_corrected": True}}
    assert first_step_filters(dataset, step, {"well": ["A01", "A02"]}, {}) == (
        {"well": ["A01", "A02"], "row": ["A"]},
        {"is_3D": True, "illumination_corrected": True},
    )
    assert first_step_filters(dataset, step, {"row": ["A", "B"]}, {}) == (
        {"row": ["A"]},
        {"is_3D": True, "illumination_corrected": True},
    )
    assert first_step_filters(dataset, step, {"row": ["B"]}, {}) is None
    assert first_step_filters(dataset, step, {}, {"is_3D": False}) is None
    step_override = {"attributes": {"row": "B"}, "types": {"is_3D": False}}
    assert first_step_filters(dataset, step_override, {}, {"is_3D": False}) == (
        {"row": ["B"]},
        {"is_3D": False},
    )


async def test_run_panel_range_account_filters_count_and_refusals(
    api, make_client, in_thread, tmp_path
):
    project_id, _dataset_id = await _project_with_images(api, tmp_path)
    status, _ = await api(
        "PATCH", "auth/current-user/settings/", {"slurm_accounts": ["lab-a", "lab-b"]}
    )
    assert status == 200
    await register_tasks(api)
    builder = await in_thread(WorkflowBuilder, make_client(), project_id, name="runs")
    panel = builder.run_panel
    assert [value for _label, value in panel.account.options] == ["", "lab-a", "lab-b"]
    assert not panel.account.disabled
    for _ in range(3):
        step = builder.add_task("Misbehave")
        step.form("parallel").value = HARMLESS
    assert [label for label, _v in panel.first.options] == [
        "1. Misbehave",
        "2. Misbehave",
        "3. Misbehave",
    ]
    assert (panel.first.value, panel.last.value) == (0, 2)

    # The first step after the last one: a message at the field, nothing saved or submitted.
    panel.first.value, panel.last.value = 2, 1
    assert await in_thread(builder.run_button.click) is None
    assert "the first step (3) comes after the last one (2)" in panel.error_text("range")
    assert builder.message.failed and builder.workflow_id is None
    assert await _jobs(api, project_id) == []

    # "Run from here" on step 2: from 2 to the end.
    builder.select_step(1)
    builder.continue_button.click()
    assert (panel.first.value, panel.last.value) == (1, 2)
    assert "starts at step 2" in builder.message.text

    # The job's filters, and the count of the images the first step will process.
    wells = panel.filters.field("attribute_filters")
    assert isinstance(wells, DictField)
    wells.add_entry("well", ["A01", "B01", "B02"])
    await in_thread(builder.save)
    await in_thread(panel.refresh_count)
    assert panel.image_count == 3 and "<b>3</b> image(s) will be processed" in (
        panel.count_html.value
    )
    panel.filters.field("type_filters").add_entry("is_3D", True)
    await in_thread(panel.refresh_count)
    assert panel.image_count == 2  # A01 and B01
    # An unsaved first step: the plain image query (one value per key) counts.
    builder.position.value = 0
    builder.catalogue.value = builder._task("Misbehave").id
    builder.add_button.click()
    assert builder.steps[0].saved is None and panel.first.value == 1  # kept: step 2 -> 2
    panel.first.value = 0
    wells.set({"row": ["B"]})
    await in_thread(panel.refresh_count)
    assert panel.image_count == 1  # B01
    wells.set({"row": ["A", "B"]})
    await in_thread(panel.refresh_count)
    assert panel.image_count is None and "save the workflow" in panel.count_html.value
    builder.remove_step(0)

    # The count follows the edits by itself once they pause.
    panel.count_delay = 0.05
    panel.filters.field("type_filters").set({})
    for _ in range(100):
        await asyncio.sleep(0.05)
        if panel.image_count == 4:  # rows A and B
            break
    assert panel.image_count == 4

    # An account dropped from the settings meanwhile: the server refuses, at the field.
    status, _ = await api("PATCH", "auth/current-user/settings/", {"slurm_accounts": ["lab-a"]})
    assert status == 200
    panel.first.value, panel.last.value = 1, 2
    panel.account.value = "lab-b"
    panel.worker_init.value = "  export GREETING=hello  "
    assert await in_thread(builder.run) is None
    assert "'lab-b' is not among those available" in panel.error_text("account")
    assert panel.error_text("range") == ""
    assert await _jobs(api, project_id) == []

    # A good submission carries every option.
    await in_thread(panel.reload_accounts)
    panel.account.value = "lab-a"
    monitor = await in_thread(builder.run)
    assert monitor is not None, builder.message.text
    assert panel.error_text("account") == ""
    [job] = await _jobs(api, project_id)
    assert (job["first_task_index"], job["last_task_index"]) == (1, 2)
    assert job["slurm_account"] == "lab-a" and job["worker_init"] == "export GREETING=hello"
    assert await in_thread(monitor.wait, 60) == "done", monitor.log_tail
    progress = [(t.status, t.calls_total) for t in monitor.progress.tasks]
    assert progress == [("done", 4), ("done", 4)]


async def test_refused_submissions_are_shown_at_the_fields(api, make_client, in_thread, tmp_path):
    project_id, _dataset_id = await _project_with_images(api, tmp_path)
    await register_tasks(api)
    for body in task_create_bodies(tasks_core_manifest("2.1.0")):
        status, answer = await api("POST", "api/v2/task/", body)
        assert status == 201, answer
    builder = await in_thread(WorkflowBuilder, make_client(), project_id)
    builder.add_task("Misbehave").form("parallel").value = HARMLESS
    measure = builder.add_task("Measure Features")
    label = measure.form("parallel").field("input_label_name")
    assert label.error_text.strip() == "required"  # the server checks it at submission

    # A required argument left empty: the server's 422 names it, shown at its field.
    assert await in_thread(builder.run_button.click) is None
    assert "Field required" in label.error_text
    assert builder.selected_step == 1 and builder.message.failed
    assert await _jobs(api, project_id) == []

    # A filter value the server refuses: at the filters.
    label.input.value = "nuclei"
    builder.run_panel.filters.field("attribute_filters").add_entry(
        "__wftask_dataset_image_status__", ["bogus"]
    )
    assert await in_thread(builder.run) is None
    assert "takes the values" in builder.run_panel.error_text("filters")
    assert await _jobs(api, project_id) == []


async def test_step_settings_resources_type_filters_validated_and_patched(
    api, make_client, in_thread, tmp_path
):
    project_id, _dataset_id = await _project_with_images(api, tmp_path)
    tasks = await register_tasks(api)
    status, heavy = await api(
        "POST",
        "api/v2/task/",
        {
            "name": "Heavy",
            "source": "test:heavy",
            "command_parallel": f"{sys.executable} {MISBEHAVE}",
            "meta_parallel": {"cpus_per_task": 2, "mem": "4G", "partition": "big"},
        },
    )
    assert status == 201, heavy
    client = make_client()
    builder = await in_thread(WorkflowBuilder, client, project_id, name="settings")
    builder.add_task("Heavy")
    assert await in_thread(builder.save), builder.message.text
    step = builder.steps[0]
    path = f"api/v2/project/{project_id}/workflow/{builder.workflow_id}/wftask/"
    path += f"{step.workflow_task_id}/"

    async def on_server() -> dict[str, Any]:
        status, wftask = await api("GET", path)
        assert status == 200
        return dict(wftask)

    assert (await on_server())["meta_parallel"] == {
        "cpus_per_task": 2,
        "mem": "4G",
        "partition": "big",
    }
    meta = step.meta_form("parallel")
    assert meta in builder.editor_sections.children
    mem = meta.field("mem")
    assert mem.input.value == "4000"  # shown in MB
    assert "The task's default: '4G'" in html.unescape(
        mem.note.value
    )  # under the field, not only on hover
    assert not step.dirty and "(edited)" not in builder.step_list.options[0][0]

    # A negative memory: a message at the field, nothing sent.
    mem.input.value = "-1"
    assert "less than the minimum of 1" in mem.error_text
    assert builder.step_list.options[0][0] == "1. Heavy  (edited)"
    assert "(edited): changed since the last save" in builder.marks_note.value
    await in_thread(builder.save_step_button.click)
    assert builder.message.failed and "mem" in builder.message.text
    assert (await on_server())["meta_parallel"]["mem"] == "4G"
    assert await in_thread(builder.save) is False
    assert (await on_server())["meta_parallel"]["mem"] == "4G"

    # Good values and a type filter: saved with a PATCH of the workflow task.
    mem.input.value = "8000"
    meta.field("cpus_per_task").input.value = "4"
    meta.field("needs_gpu").input.value = True
    types = step.types_form()
    types.root.add_entry("is_3D", False)
    step.form("parallel").value = HARMLESS
    await in_thread(builder.save_step_button.click)
    assert not builder.message.failed, builder.message.text
    wftask = await on_server()
    assert wftask["meta_parallel"] == {
        "cpus_per_task": 4,
        "mem": 8000,
        "partition": "big",
        "needs_gpu": True,
    }
    assert wftask["input_filters"] == {"attributes": {}, "types": {"is_3D": False}}
    assert wftask["args_parallel"] == HARMLESS
    assert not step.dirty and builder.step_list.options[0][0] == "1. Heavy"
    assert builder.discard_button.disabled

    # Discard unsaved edits; reset to the task's defaults.
    meta.field("cpus_per_task").input.value = "9"
    assert not builder.discard_button.disabled
    builder.discard_button.click()
    assert meta.field("cpus_per_task").input.value == "4" and not step.dirty
    builder.reset_button.click()
    assert meta.value == {"cpus_per_task": 2, "mem": 4000, "partition": "big"}
    assert step.form("parallel").value == {}  # no schema: no defaults
    assert types.value == {"is_3D": False}  # filters are not the task's to reset
    assert step.dirty

    # No empty titles; the task types in words.
    project_step = builder.add_task("Project image")
    shown = [*builder.editor_sections.children, *project_step.all_forms()]
    titles = [c.value for c in shown if isinstance(c, w.HTML)]
    titles += [
        c.value for f in project_step.all_forms() for c in f.children if isinstance(c, w.HTML)
    ]
    assert not any("Arguments (per image)" in str(t) for t in titles)
    assert any("Arguments (preparation, once)" in str(t) for t in titles)
    builder.catalogue.value = tasks["Create demo plate"]["id"]
    assert "converter: runs once and makes the images" in builder.task_info.value
    assert "converter_non_parallel" not in builder.task_info.value
    assert builder.selected_step is None  # the catalogue's selection replaced the step's
    assert builder.duplicate_button.disabled and builder.remove_button.disabled


async def test_insert_duplicate_remove_rename_export_import(api, make_client, in_thread, tmp_path):
    project_id, _dataset_id = await _project_with_images(api, tmp_path)
    tasks = await register_tasks(api)
    builder = await in_thread(WorkflowBuilder, make_client(), project_id, name="first")
    builder.add_task("Measure intensity")
    builder.add_task("Misbehave")
    builder.catalogue.value = tasks["Create demo plate"]["id"]
    builder.position.value = 0  # before step 1
    builder.add_button.click()
    names = lambda: [s.task.name for s in builder.steps]  # noqa: E731
    assert names() == ["Create demo plate", "Measure intensity", "Misbehave"]
    assert builder.selected_step == 0 and builder.catalogue.value is None
    assert builder.up_button.disabled and not builder.down_button.disabled

    # Duplicate a step with its edits: the copy follows it, marked new.
    builder.steps[1].form("parallel").field("threshold").input.value = "99"
    builder.select_step(1)
    builder.duplicate_button.click()
    assert names() == ["Create demo plate", "Measure intensity", "Measure intensity", "Misbehave"]
    assert builder.steps[2].form("parallel").value == {"threshold": 99}
    assert builder.step_list.options[2][0] == "3. Measure intensity  (new)"
    builder.steps[2].form("parallel").field("threshold").input.value = "1"
    assert builder.steps[1].form("parallel").value == {"threshold": 99}  # not shared

    # Remove asks first.
    builder.select_step(3)
    builder.remove_button.click()
    assert builder.confirm_box.layout.display == "flex" and "step 4" in builder.confirm_text.value
    builder.cancel_remove_button.click()
    assert len(builder.steps) == 4 and builder.confirm_box.layout.display == "none"
    builder.remove_button.click()
    builder.confirm_remove_button.click()
    assert names() == ["Create demo plate", "Measure intensity", "Measure intensity"]

    builder.name_input.value = "renamed"
    assert builder.unsaved_changes() == ["the whole workflow"]
    assert await in_thread(builder.save), builder.message.text
    assert builder.unsaved_changes() == [] and builder.marks_note.value == ""
    _, workflow = await api("GET", f"api/v2/project/{project_id}/workflow/{builder.workflow_id}/")
    assert workflow["name"] == "renamed"
    assert [wt["args_parallel"] for wt in workflow["task_list"][1:]] == [
        {"threshold": 99},
        {"threshold": 1},
    ]

    # What is not saved is said in words.
    builder.name_input.value = "renamed again"
    builder.move_step(2, -1)
    assert builder.unsaved_changes() == ["the name", "the order of the steps"]
    assert "Not saved yet: the name, the order of the steps." in builder.marks_note.value
    builder.remove_step(0)
    builder.duplicate_step(0)
    assert builder.unsaved_changes() == ["the name", "1 new step(s)", "1 removed step(s)"]
    await in_thread(builder.load, builder.workflow_id)
    assert builder.unsaved_changes() == [] and builder.name_input.value == "renamed"

    # Export to a file, import it back as a second workflow.
    exported = await in_thread(builder.export_workflow, tmp_path / "wf.json")
    assert exported == tmp_path / "wf.json", builder.message.text
    data = json.loads(exported.read_text())
    assert data["name"] == "renamed" and len(data["task_list"]) == 3
    first_id = builder.workflow_id
    refused = await in_thread(builder.import_workflow, exported)  # the name is taken
    assert refused is None and "already exists" in builder.message.text
    data["name"] = "imported"
    exported.write_text(json.dumps(data))
    builder.file_input.value = str(exported)
    await in_thread(builder.import_button.click)
    assert not builder.message.failed, builder.message.text
    assert builder.workflow_id != first_id and builder.name_input.value == "imported"
    assert [s.task.name for s in builder.steps] == [
        "Create demo plate",
        "Measure intensity",
        "Measure intensity",
    ]
    assert all(s.saved is not None and not s.dirty for s in builder.steps)
    (tmp_path / "broken.json").write_text("{not json")
    assert await in_thread(builder.import_workflow, tmp_path / "broken.json") is None
    assert builder.message.failed and "broken.json" in builder.message.text


async def test_an_empty_filter_value_is_a_field_error(api, make_client, in_thread, tmp_path):
    """A value field left empty (None in the form): said at the filters, neither counted as
    "no filter" nor sent to the server (whose 422 speaks of NoneType)."""
    project_id, _dataset_id = await _project_with_images(api, tmp_path)
    await register_tasks(api)
    builder = await in_thread(WorkflowBuilder, make_client(), project_id)
    builder.add_task("Misbehave").form("parallel").value = HARMLESS
    panel = builder.run_panel
    wells = panel.filters.field("attribute_filters")
    for values in ([None], ["A01", ""]):
        wells.set({"well": values})
        await in_thread(panel.refresh_count)
        assert panel.image_count is None
        expected = "the filter &#x27;well&#x27; has an empty value: type a value or remove it"
        assert expected in panel.count_html.value, panel.count_html.value
        assert await in_thread(builder.run) is None
        assert panel.error_text("filters").strip() == (
            "the filter 'well' has an empty value: type a value or remove it"
        )
        assert builder.workflow_id is None  # nothing saved, nothing submitted
        assert await _jobs(api, project_id) == []
    wells.set({"well": ["A01"]})
    await in_thread(panel.refresh_count)
    assert panel.image_count == 1


async def test_workflow_description_saved_loaded_exported_and_cleared(
    api, make_client, in_thread, tmp_path
):
    """The description area next to the name: saved with the workflow (on creation and as an
    edit), marked unsaved, loaded, exported and imported; emptied, it is cleared on the
    server; too long, a message and nothing sent."""
    project_id, _dataset_id = await _project_with_images(api, tmp_path)
    await register_tasks(api)
    builder = await in_thread(
        WorkflowBuilder, make_client(), project_id, name="described", description="Segment"
    )
    row = next(
        child
        for child in builder.children[1].children[1].children
        if isinstance(child, w.HBox) and builder.name_input in child.children
    )
    assert list(row.children) == [builder.name_input, builder.description_input]
    assert isinstance(builder.description_input, w.Textarea)
    builder.add_task("Misbehave").form("parallel").value = HARMLESS
    assert await in_thread(builder.save), builder.message.text
    path = f"api/v2/project/{project_id}/workflow/{builder.workflow_id}/"
    _, workflow = await api("GET", path)
    assert workflow["description"] == "Segment"

    builder.description_input.value = "  Segment nuclei, then measure  "
    assert builder.unsaved_changes() == ["the description"]
    assert "Not saved yet: the description." in builder.marks_note.value
    assert await in_thread(builder.save), builder.message.text
    assert builder.unsaved_changes() == []
    _, workflow = await api("GET", path)
    assert (workflow["name"], workflow["description"]) == (
        "described",
        "Segment nuclei, then measure",
    )

    # Too long: said before anything is sent; the server keeps the old text.
    builder.description_input.value = "x" * 10_001
    assert not await in_thread(builder.save)
    assert "the description is longer than 10,000 characters" in builder.message.text
    _, workflow = await api("GET", path)
    assert workflow["description"] == "Segment nuclei, then measure"

    # Export and import carry it; a new builder on the workflow shows it.
    builder.description_input.value = "Segment nuclei, then measure"
    exported = await in_thread(builder.export_workflow, tmp_path / "wf.json")
    assert exported is not None, builder.message.text
    data = json.loads(exported.read_text())
    assert data["description"] == "Segment nuclei, then measure"
    data["name"] = "copy"
    exported.write_text(json.dumps(data))
    imported = await in_thread(builder.import_workflow, exported)
    assert imported is not None and imported.description == "Segment nuclei, then measure"
    assert builder.description_input.value == "Segment nuclei, then measure"
    other = await in_thread(WorkflowBuilder, make_client(), project_id, builder.workflow_id)
    assert other.description_input.value == "Segment nuclei, then measure"

    # Emptied: cleared on the server (not sent as "", which it refuses).
    other.description_input.value = "   "
    assert other.unsaved_changes() == ["the description"]
    assert await in_thread(other.save), other.message.text
    _, workflow = await api("GET", f"api/v2/project/{project_id}/workflow/{other.workflow_id}/")
    assert workflow["description"] is None and workflow["name"] == "copy"


async def test_run_panel_and_step_forms_fit_a_narrow_notebook(
    api, make_client, in_thread, tmp_path
):
    """At 1,280 px nothing is cut off (issue 19): the run panel's inputs and drop-downs and
    every input of a step's forms fill their room and shrink (width 100% or a shrinking flex
    basis, min-width 0), and so does every box beside something in a row."""
    project_id, _dataset_id = await _project_with_images(api, tmp_path)
    await register_tasks(api)
    builder = await in_thread(WorkflowBuilder, make_client(), project_id)
    builder.add_task("Project image")
    builder.add_task("Misbehave")
    panel = builder.run_panel
    panel.filters.field("attribute_filters").add_entry("well", ["A01"])
    assert clipping_risks(panel) == []
    for control in (panel.dataset, panel.worker_init, panel.account):
        assert (control.layout.width, control.layout.min_width) == ("100%", "0")
    for control in (panel.first, panel.last):
        assert control.layout.min_width == "0" and control.layout.flex.startswith("1 1 ")
    for index in range(len(builder.steps)):
        builder.select_step(index)
        assert builder.editor.layout.display == "flex"
        sections = w.VBox(builder.editor_sections.children)
        inputs = [c for c in descendants(sections) if isinstance(c, (w.Text, w.Dropdown))]
        assert inputs, index
        assert clipping_risks(sections) == [], index
        assert clipping_risks(builder.editor) == [], index
    name_row = next(
        box
        for box in descendants(builder)
        if isinstance(box, w.HBox) and builder.name_input in box.children
    )
    assert clipping_risks(name_row) == []
    assert clipping_risks(builder) == []  # the catalogue, the steps, the editor, the run
