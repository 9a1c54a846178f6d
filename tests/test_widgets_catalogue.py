"""The WorkflowBuilder's catalogue by task group (package and version, inactive groups greyed
and refused) and its version update of a step (replace-task, the dropped arguments shown at
the step), driven without a browser against a live test server (as
tests/test_widgets_builder.py). The tasks are tiny hand-made ones: one group per version."""

from __future__ import annotations

from typing import Any

from fractal_jupyter.widgets import WorkflowBuilder
from fractal_jupyter.widgets.catalogue import CATALOGUE_CSS, INACTIVE_MARK
from tests.test_task_group import GROUPS, wait_for_activity
from tests.test_task_versions import SCHEMA_V1, SCHEMA_V2, make_task


async def _project(api: Any) -> int:
    status, project = await api("POST", "api/v2/project/", {"name": "p"})
    assert status == 201, project
    return int(project["id"])


async def test_catalogue_groups_by_package_and_refuses_inactive_groups(api, make_client, in_thread):
    project_id = await _project(api)
    old = await make_task(api, "1.0", SCHEMA_V1, user="alice")
    new = await make_task(api, "2.0", SCHEMA_V2, user="alice")
    status, other = await api(
        "POST",
        "api/v2/task/",
        {"name": "Count Cells", "version": "0.1", "command_non_parallel": "/usr/bin/true"},
    )
    assert status == 201, other
    _, listed = await api("GET", GROUPS)
    old_group = next(g for _pkg, groups in listed for g in groups if g["version"] == "1.0")
    status, activity = await api("POST", f"{GROUPS}{old_group['id']}/deactivate/")
    assert status == 200, activity
    ended, _ = await wait_for_activity(api, activity["id"])
    assert ended["status"] == "OK", ended["log"]

    builder = await in_thread(WorkflowBuilder, make_client(), project_id)
    catalogue = builder.task_catalogue
    # Packages by name, each version's header (newest first) with its tasks under it.
    assert list(builder.catalogue.options) == [
        ("\u25b8 Count Cells 0.1", ("group", catalogue.group_of[other["id"]].id)),
        ("    Count Cells", other["id"]),
        ("\u25b8 Smooth Image 2.0", ("group", catalogue.group_of[new["id"]].id)),
        ("    Smooth Image", new["id"]),
        (f"\u25b8 Smooth Image 1.0  {INACTIVE_MARK}", ("group", old_group["id"])),
        (f"    Smooth Image  {INACTIVE_MARK}", old["id"]),
    ]
    # The style sheet greys the entries that end with the mark.
    assert f'option[value$="{INACTIVE_MARK}"]' in CATALOGUE_CSS
    assert CATALOGUE_CSS in catalogue.children[0].value
    # Search keeps the grouping (a group without matches goes).
    catalogue.search.value = "count"
    assert [value for _label, value in builder.catalogue.options][1:] == [other["id"]]
    catalogue.search.value = ""

    # A header is not a task: it describes its group, nothing to add.
    builder.catalogue.value = ("group", old_group["id"])
    assert builder.add_button.disabled
    assert "Smooth Image 1.0: 1 task(s)" in builder.task_info.value
    assert "deactivated" in builder.task_info.value

    # The inactive group's task: greyed, the reason shown, not added (button or code).
    builder.catalogue.value = old["id"]
    assert builder.add_button.disabled
    assert "Smooth Image 1.0 is deactivated" in builder.task_info.value
    builder.add_button.click()
    assert builder.steps == [] and builder.message.failed
    assert "Smooth Image cannot be added: Smooth Image 1.0 is deactivated" in builder.message.text
    try:
        builder.add_task(old["id"])
    except ValueError as refused:
        assert "can reactivate it" in str(refused)
    else:
        raise AssertionError("a task of an inactive group was added")
    assert builder.steps == []

    # The active version is added as before.
    builder.catalogue.value = new["id"]
    assert not builder.add_button.disabled
    builder.add_button.click()
    assert [step.task.id for step in builder.steps] == [new["id"]]


async def test_version_update_of_a_step_shows_the_dropped_arguments(api, make_client, in_thread):
    project_id = await _project(api)
    old = await make_task(api, "1.0", SCHEMA_V1, user="alice")
    builder = await in_thread(WorkflowBuilder, make_client(), project_id, name="smooth")
    step = builder.add_task(old["id"])
    step.form("parallel").value = {"sigma": 2, "mode": "fast"}
    assert await in_thread(builder.save), builder.message.text
    assert builder.steps[0].updates == [] and builder.update_box.children == ()

    # A newer version appears: the reopened workflow offers it.
    new = await make_task(api, "2.0", SCHEMA_V2, user="alice")
    builder = await in_thread(WorkflowBuilder, make_client(), project_id, builder.workflow_id)
    assert builder.step_list.options[0][0] == "1. Smooth Image  (newer: 2.0)"
    builder.select_step(0)
    (button,) = builder.update_box.children
    assert button.description == "update to 2.0"

    # Unsaved edits first: refused, nothing replaced.
    builder.steps[0].form("parallel").value = {"sigma": 3, "mode": "fast"}
    assert not await in_thread(builder.update_step, 0)
    assert "unsaved edits" in builder.message.text
    builder.discard_button.click()

    await in_thread(button.click)
    assert not builder.message.failed, builder.message.text
    assert "updated to 2.0; arguments dropped: args_parallel.mode" in builder.message.text
    updated = builder.steps[0]
    assert updated.task.id == new["id"] and updated.updates == []
    assert [(d.loc, d.value) for d in updated.dropped_arguments] == [
        (["args_parallel", "mode"], "fast")
    ]
    # Shown at the step, above its arguments; the step is saved as the server has it.
    note = builder.editor_sections.children[0]
    assert "fractal-dropped-arguments" in note._dom_classes
    assert "<code>args_parallel.mode</code> = <code>&quot;fast&quot;</code>" in note.value
    assert builder.update_box.children == ()
    assert builder.step_list.options[0][0] == "1. Smooth Image"
    assert builder.unsaved_changes() == []
    _, workflow = await api("GET", f"api/v2/project/{project_id}/workflow/{builder.workflow_id}/")
    (entry,) = workflow["task_list"]
    assert entry["task_id"] == new["id"] and entry["args_parallel"] == {"sigma": 2}
