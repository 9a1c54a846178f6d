"""`WorkflowBuilder`: the task catalogue, a workflow's steps, their settings, save, run.

Tasks of the catalogue (`catalogue.TaskCatalogue`, grouped by package and version; the tasks of
an inactive group cannot be added) are added to the steps (at the end or before a step);
steps are reordered, duplicated and removed (after a confirmation); the workflow has a name
and a description, saved with it; each step's arguments, resources and type filters are edited
in forms (`steps.Step`). "Save" makes the server's workflow match (creating it if needed):
new workflow tasks created, removed ones deleted, the others patched, the order set. The run
panel (`run_panel.RunPanel`) holds the run's options; "Run" saves, submits a job and shows a
`JobMonitor`. A saved step whose task has a newer version offers "update to X.Y" (the server
replaces the task, keeping the arguments the new version accepts; the step then shows the ones
it dropped). A workflow can be exported to a JSON file next to the notebook and imported from
one.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import ipywidgets as w

from ..schemas.common import MAX_DESCRIPTION_CHARS
from ..schemas.task import TaskRead
from ..schemas.workflow import TaskVersionRead, WorkflowRead
from ._common import DISABLED_BUTTONS_CSS, MessageArea, describe_error, share, style_sheet
from .catalogue import TaskCatalogue
from .forms import ArgsForm
from .jobs import JobMonitor
from .run_panel import RunPanel
from .steps import Step

NEW_MARK, EDITED_MARK = "(new)", "(edited)"
MARKS_EXPLAINED = (
    f"{NEW_MARK}: not on the server yet; {EDITED_MARK}: changed since the last save. "
    "Save keeps them."
)
_FLEX = {"min_width": "0", "flex": "1 1 0"}
AT_THE_END = -1  # (a Dropdown shows None as no choice at all)


def _icon_button(icon: str, tooltip: str) -> w.Button:
    return w.Button(icon=icon, tooltip=tooltip, layout=w.Layout(width="40px"))


class WorkflowBuilder(w.VBox):  # type: ignore[misc]
    """Build workflow `workflow_id` of project `project_id` (a new one when None).

    State: `tasks` (the catalogue), `visible_tasks` (after search and filters), `steps`,
    `selected_step`, `workflow_id`, `workflow`, `run_panel`, `job`, `monitor`, `message.text`.
    Code can do what the widgets do: `add_task(...)`, `move_step(i, delta)`,
    `duplicate_step(i)`, `remove_step(i)`, `select_step(i)`, `save()`, `save_step(i)`,
    `run(dataset_id)`, `export_workflow(path)`, `import_workflow(path)`.
    """

    def __init__(
        self,
        client: Any,
        project_id: int,
        workflow_id: int | None = None,
        *,
        name: str = "workflow",
        description: str = "",
    ) -> None:
        super().__init__(layout=w.Layout(min_width="0", max_width="1400px"))
        self.add_class("fractal-workflow-builder")
        self.add_class("fractal-widget")
        self.client = client
        self.project_id = project_id
        self.workflow_id = workflow_id
        self.workflow: WorkflowRead | None = None
        self.steps: list[Step] = []
        self.selected_step: int | None = None
        self.job: Any = None
        self.monitor: JobMonitor | None = None
        self.message = MessageArea()
        self.tasks: list[TaskRead] = list(client.list_tasks())
        groups = self.message.attempt("listing task groups", client.list_task_groups)
        self._hooked: set[int] = set()
        self._quiet_steps = False

        # catalogue
        self.task_catalogue = TaskCatalogue(self.tasks, self._catalogue_picked, groups)
        catalogue = self.task_catalogue
        self.search, self.category, self.modality = (
            catalogue.search,
            catalogue.category,
            catalogue.modality,
        )
        self.tags, self.catalogue, self.task_info = (
            catalogue.tags,
            catalogue.choice,
            catalogue.task_info,
        )
        self.position = w.Dropdown(
            description="at", style={"description_width": "initial"}, layout=share("160px", "320px")
        )
        self.add_button = w.Button(
            description="Add to workflow", icon="plus", button_style="primary"
        )
        self.add_button.on_click(lambda _b: self._add_selected())

        # steps
        self.name_input = w.Text(value=name, description="name", layout=share("200px", "420px"))
        self.name_input.observe(lambda _c: self._refresh_marks(), "value")
        self.description_input = w.Textarea(
            value=description,
            description="about",
            placeholder="what the workflow does (optional)",
            rows=2,
            layout=share("320px", None),
        )
        self.description_input.observe(lambda _c: self._refresh_marks(), "value")
        self.step_list = w.Select(options=[], rows=8, layout=w.Layout(width="auto", **_FLEX))
        self.step_list.add_class("fractal-steps")
        self.step_list.observe(self._step_picked, "value")
        self.up_button = _icon_button("arrow-up", "move up")
        self.down_button = _icon_button("arrow-down", "move down")
        self.duplicate_button = _icon_button("copy", "duplicate the step")
        self.remove_button = _icon_button("trash", "remove the step (asks first)")
        self.up_button.on_click(lambda _b: self._move_selected(-1))
        self.down_button.on_click(lambda _b: self._move_selected(1))
        self.duplicate_button.on_click(lambda _b: self._duplicate_selected())
        self.remove_button.on_click(lambda _b: self._ask_remove())
        self.confirm_text = w.HTML()
        self.confirm_remove_button = w.Button(description="Remove", button_style="danger")
        self.cancel_remove_button = w.Button(description="Keep it")
        self.confirm_remove_button.on_click(lambda _b: self._confirm_remove())
        self.cancel_remove_button.on_click(lambda _b: self._hide_confirm())
        self.confirm_box = w.HBox(
            [self.confirm_text, self.confirm_remove_button, self.cancel_remove_button],
            layout=w.Layout(display="none", flex_flow="row wrap", align_items="center"),
        )
        self.marks_note = w.HTML()
        self.save_button = w.Button(description="Save", icon="save", button_style="success")
        self.save_button.on_click(lambda _b: self.save())
        self.file_input = w.Text(
            placeholder="file (default: <name>.json next to the notebook)",
            layout=w.Layout(width="auto", **_FLEX),
        )
        self.export_button = w.Button(description="Export", icon="download")
        self.import_button = w.Button(description="Import", icon="upload")
        self.export_button.on_click(lambda _b: self.export_workflow())
        self.import_button.on_click(lambda _b: self.import_workflow())

        # the selected step's editor
        self.editor_title = w.HTML()
        self.update_box = w.HBox([], layout=w.Layout(flex_flow="row wrap", align_items="center"))
        self.editor_sections = w.VBox([], layout=w.Layout(min_width="0"))
        self.reset_button = w.Button(
            description="Reset to the task's defaults",
            tooltip="arguments and resources as the task defines them",
            layout=w.Layout(width="auto"),
        )
        self.discard_button = w.Button(
            description="Discard unsaved edits",
            tooltip="back to the step as saved",
            layout=w.Layout(width="auto"),
        )
        self.save_step_button = w.Button(
            description="Save this step", icon="save", layout=w.Layout(width="auto")
        )
        self.continue_button = w.Button(
            description="Run from here",
            icon="forward",
            tooltip="the run starts at this step",
            layout=w.Layout(width="auto"),
        )
        self.reset_button.on_click(lambda _b: self._reset_selected())
        self.discard_button.on_click(lambda _b: self._discard_selected())
        self.save_step_button.on_click(lambda _b: self._save_selected())
        self.continue_button.on_click(lambda _b: self._continue_from_selected())
        self.editor = w.VBox(
            [
                self.editor_title,
                self.update_box,
                w.HBox(
                    [
                        self.save_step_button,
                        self.discard_button,
                        self.reset_button,
                        self.continue_button,
                    ],
                    layout=w.Layout(flex_flow="row wrap"),
                ),
                self.editor_sections,
            ],
            layout=w.Layout(min_width="0", display="none"),
        )

        # running
        self.run_panel = RunPanel(client, project_id, lambda: self.steps)
        self.dataset = self.run_panel.dataset
        self.run_button = w.Button(description="Run", icon="play", button_style="warning")
        self.run_button.on_click(lambda _b: self.run())
        self.monitor_box = w.VBox([], layout=w.Layout(min_width="0"))

        catalogue_box = w.VBox(
            [
                catalogue,
                w.HBox([self.add_button, self.position], layout=w.Layout(flex_flow="row wrap")),
            ],
            layout=w.Layout(**_FLEX, padding="0 8px 0 0"),
        )
        workflow = w.VBox(
            [
                w.HTML("<b>Workflow</b>"),
                w.HBox(
                    [self.name_input, self.description_input],
                    layout=w.Layout(min_width="0", flex_flow="row wrap", align_items="flex-start"),
                ),
                w.HBox(
                    [
                        self.step_list,
                        w.VBox(
                            [
                                self.up_button,
                                self.down_button,
                                self.duplicate_button,
                                self.remove_button,
                            ]
                        ),
                    ],
                    layout=w.Layout(min_width="0"),
                ),
                self.confirm_box,
                self.marks_note,
                w.HBox(
                    [self.save_button, self.file_input, self.export_button, self.import_button],
                    layout=w.Layout(min_width="0", flex_flow="row wrap"),
                ),
            ],
            layout=w.Layout(**_FLEX),
        )
        self.children = [
            style_sheet(DISABLED_BUTTONS_CSS),
            w.HBox([catalogue_box, workflow], layout=w.Layout(min_width="0")),
            self.editor,
            self.run_panel,
            self.run_button,
            self.message.widget,
            self.monitor_box,
        ]
        self._catalogue_picked()
        self.reload_datasets()
        if workflow_id is not None:
            self.load(workflow_id)
        else:
            self._show_steps(None)

    # catalogue
    @property
    def visible_tasks(self) -> list[TaskRead]:
        return self.task_catalogue.visible_tasks

    def _task(self, key: int | str) -> TaskRead | None:
        return self.task_catalogue.task(key)

    def _catalogue_picked(self) -> None:
        chosen = self.task_catalogue.chosen
        self.add_button.disabled = chosen is None or self.task_catalogue.refusal(chosen) is not None
        if self.catalogue.value is not None and self.step_list.value is not None:
            self.step_list.value = None  # one selection at a time

    def _add_selected(self) -> None:
        chosen = self.task_catalogue.chosen
        if chosen is None:
            self.message.fail("choose a task in the catalogue first")
            return
        position = self.position.value
        try:
            self.add_task(chosen.id, None if position == AT_THE_END else position)
        except ValueError as refused:
            self.message.fail(str(refused))

    # the steps
    def add_task(self, task: int | str, position: int | None = None) -> Step:
        """Insert a task (by id or name) before step `position` (None: at the end); a task
        of an inactive group is refused (ValueError)."""
        found = self._task(task)
        if found is None:
            raise KeyError(f"no task {task!r} in the catalogue")
        refusal = self.task_catalogue.refusal(found)
        if refusal is not None:
            raise ValueError(f"{found.name} cannot be added: {refusal}")
        return self._insert(Step(found), position)

    def _insert(self, step: Step, position: int | None) -> Step:
        index = len(self.steps) if position is None else max(0, min(position, len(self.steps)))
        self.steps.insert(index, step)
        self._show_steps(index)
        self.message.ok(f"step {index + 1}: {step.task.name} (not saved yet)")
        return step

    def duplicate_step(self, index: int) -> Step:
        """A copy of step `index` (its edits included) right after it."""
        return self._insert(self.steps[index].copy(), index + 1)

    def remove_step(self, index: int) -> None:
        del self.steps[index]
        self._show_steps(min(index, len(self.steps) - 1) if self.steps else None)

    def move_step(self, index: int, delta: int) -> None:
        target = index + delta
        if not 0 <= target < len(self.steps):
            return
        self.steps[index], self.steps[target] = self.steps[target], self.steps[index]
        self._show_steps(target)

    def select_step(self, index: int | None) -> None:
        self.step_list.value = index

    def _move_selected(self, delta: int) -> None:
        if self.selected_step is not None:
            self.move_step(self.selected_step, delta)

    def _duplicate_selected(self) -> None:
        if self.selected_step is not None:
            self.duplicate_step(self.selected_step)

    def _ask_remove(self) -> None:
        if self.selected_step is None:
            return
        step = self.steps[self.selected_step]
        self.confirm_text.value = (
            f"Remove step {self.selected_step + 1} ({html.escape(step.task.name)})"
            + (" from the saved workflow at the next save" if step.saved is not None else "")
            + "?"
        )
        self.confirm_box.layout.display = "flex"

    def _confirm_remove(self) -> None:
        self._hide_confirm()
        if self.selected_step is not None:
            self.remove_step(self.selected_step)

    def _hide_confirm(self) -> None:
        self.confirm_box.layout.display = "none"

    def _step_label(self, index: int, step: Step) -> str:
        mark = NEW_MARK if step.saved is None else (EDITED_MARK if step.dirty else "")
        newer = f"(newer: {step.updates[-1].version})" if step.updates else ""
        return f"{index + 1}. {step.task.name}" + "".join(f"  {m}" for m in (mark, newer) if m)

    def _show_steps(self, selected: int | None) -> None:
        self._hide_confirm()
        self._quiet_steps = True
        try:
            self.step_list.options = [(self._step_label(i, s), i) for i, s in enumerate(self.steps)]
            self.step_list.value = selected
        finally:
            self._quiet_steps = False
        self.position.options = [("the end", AT_THE_END)] + [
            (f"before step {i + 1}", i) for i in range(len(self.steps))
        ]
        self.run_panel.set_steps([step.task.name for step in self.steps])
        self._step_picked(None)

    def _refresh_marks(self, _form: ArgsForm | None = None) -> None:
        """Step labels and the unsaved note after an edit (the selection stays)."""
        labels = [(self._step_label(i, s), i) for i, s in enumerate(self.steps)]
        if labels != list(self.step_list.options):
            self._quiet_steps = True
            try:
                value = self.step_list.value
                self.step_list.options = labels
                self.step_list.value = value
            finally:
                self._quiet_steps = False
        notes = self.unsaved_changes()
        marked = any(s.saved is None or s.dirty for s in self.steps)
        text = (MARKS_EXPLAINED + " " if marked else "") + (
            f"Not saved yet: {', '.join(notes)}." if notes else ""
        )
        self.marks_note.value = f"<small>{html.escape(text)}</small>" if text else ""
        self.run_button.disabled = not self.steps
        step = self.steps[self.selected_step] if self.selected_step is not None else None
        self.discard_button.disabled = step is None or not step.dirty
        self.save_step_button.disabled = step is None or step.saved is None
        self.run_panel.schedule_count()

    @property
    def description(self) -> str | None:
        """The description as the server keeps it (stripped; None when empty)."""
        return self.description_input.value.strip() or None

    def unsaved_changes(self) -> list[str]:
        """What differs from the saved workflow, in words (empty: nothing)."""
        if self.workflow is None:
            return ["the whole workflow"] if self.steps else []
        changes = []
        if self.name_input.value != self.workflow.name:
            changes.append("the name")
        if self.description != self.workflow.description:
            changes.append("the description")
        new = sum(step.saved is None for step in self.steps)
        edited = sum(step.dirty for step in self.steps)
        kept = [s.workflow_task_id for s in self.steps if s.saved is not None]
        on_server = [wt.id for wt in self.workflow.task_list]
        if new:
            changes.append(f"{new} new step(s)")
        if edited:
            changes.append(f"{edited} edited step(s)")
        if len(kept) < len(on_server):
            changes.append(f"{len(on_server) - len(kept)} removed step(s)")
        elif kept != on_server:
            changes.append("the order of the steps")
        return changes

    def _step_picked(self, _change: Any) -> None:
        if self._quiet_steps:
            return
        self.selected_step = self.step_list.value
        if self.selected_step is not None and self.catalogue.value is not None:
            self.catalogue.value = None  # one selection at a time
        index = self.selected_step
        self.up_button.disabled = index is None or index == 0
        self.down_button.disabled = index is None or index == len(self.steps) - 1
        self.duplicate_button.disabled = self.remove_button.disabled = index is None
        if index is None:
            self.editor.layout.display = "none"
            self.editor_sections.children = []
            self._refresh_marks()
            return
        step = self.steps[index]
        for form in step.all_forms():
            if id(form) not in self._hooked:
                self._hooked.add(id(form))
                form.on_change(self._refresh_marks)
        version = f" {step.task.version}" if step.task.version else ""
        self.editor_title.value = (
            f"<b>Step {index + 1}: {html.escape(step.task.name + version)}</b>"
        )
        self.update_box.children = [self._update_button(index, u) for u in step.updates]
        self.editor_sections.children = step.sections()
        self.editor.layout.display = "flex"
        self._refresh_marks()

    def _reset_selected(self) -> None:
        if self.selected_step is not None:
            self.steps[self.selected_step].reset_to_defaults()
            self._refresh_marks()

    def _discard_selected(self) -> None:
        if self.selected_step is not None:
            self.steps[self.selected_step].discard_edits()
            self._refresh_marks()

    def _save_selected(self) -> None:
        if self.selected_step is not None:
            self.save_step(self.selected_step)

    def _continue_from_selected(self) -> None:
        if self.selected_step is not None:
            self.run_panel.continue_from(self.selected_step)
            self.message.ok(f"the run starts at step {self.selected_step + 1}")

    def _update_button(self, index: int, candidate: TaskVersionRead) -> w.Button:
        button = w.Button(
            description=f"update to {candidate.version}",
            icon="level-up",
            tooltip="use this version of the task; arguments it does not accept are dropped",
            layout=w.Layout(width="auto"),
        )
        button.on_click(lambda _b: self.update_step(index, candidate.task_id))
        return button

    # the server
    def load(self, workflow_id: int) -> None:
        """Show the server's workflow (the local list is replaced)."""
        workflow = self.client.get_workflow(self.project_id, workflow_id)
        self.workflow, self.workflow_id = workflow, workflow.id
        self.name_input.value = workflow.name
        self.description_input.value = workflow.description or ""
        self.steps = [Step.from_server(wt) for wt in workflow.task_list]
        self._find_updates()
        self._show_steps(0 if self.steps else None)

    def _find_updates(self) -> None:
        """Each saved step's newer task versions (lowest first), from the server."""
        if self.workflow is None or self.workflow_id is None:
            return
        workflow_id = self.workflow_id
        candidates = self.message.attempt(
            "looking for newer task versions",
            lambda: self.client.version_update_candidates(self.project_id, workflow_id),
        )
        if candidates is None:
            return
        by_entry: dict[int | None, list[TaskVersionRead]] = dict(
            zip((wt.id for wt in self.workflow.task_list), candidates, strict=False)
        )
        for step in self.steps:
            step.updates = by_entry.get(step.workflow_task_id, [])

    def update_step(self, index: int, task_id: int | None = None) -> bool:
        """Replace saved step `index`'s task with a newer version (`task_id`; None: the
        newest); the arguments it does not accept are dropped and shown at the step."""
        step = self.steps[index]
        if step.saved is None or self.workflow_id is None or not step.updates:
            self.message.fail(f"step {index + 1} has no newer version to update to")
            return False
        if step.dirty:
            self.message.fail(f"step {index + 1} has unsaved edits: save or discard them first")
            return False
        candidate = next((u for u in step.updates if u.task_id == task_id), step.updates[-1])
        assert step.workflow_task_id is not None
        try:
            replaced = self.client.replace_workflow_task(
                self.project_id, self.workflow_id, step.workflow_task_id, candidate.task_id
            )
            self.workflow = self.client.get_workflow(self.project_id, self.workflow_id)
        except Exception as error:
            self.message.fail(f"updating step {index + 1} failed: {describe_error(error)}")
            return False
        new = Step.from_server(replaced)
        new.dropped_arguments = list(replaced.dropped_arguments)
        self.steps[index] = new
        self._find_updates()
        self._show_steps(index)
        dropped = ", ".join(".".join(d.loc) for d in new.dropped_arguments)
        self.message.ok(
            f"step {index + 1}: {new.task.name} updated to {candidate.version}"
            + (f"; arguments dropped: {dropped}" if dropped else "")
        )
        return True

    def reload_datasets(self) -> None:
        datasets = self.message.attempt(
            "listing datasets", lambda: self.client.list_datasets(self.project_id, history=False)
        )
        if datasets is not None:
            self.run_panel.set_datasets([(d.name, d.id) for d in datasets])

    def save_step(self, index: int) -> bool:
        """Send one saved step's arguments, resources and filters (PATCH); False if refused."""
        step = self.steps[index]
        if step.saved is None or self.workflow_id is None:
            self.message.fail(f"step {index + 1} is new: save the workflow to keep it")
            return False
        problems = step.problems()
        if problems:
            self.message.fail("fix the fields first: " + "; ".join(problems))
            return False
        try:
            self._patch(step)
        except Exception as error:
            self.message.fail(f"saving step {index + 1} failed: {describe_error(error)}")
            return False
        self._refresh_marks()
        self.message.ok(f"saved step {index + 1} ({step.task.name})")
        return True

    def _patch(self, step: Step) -> None:
        assert self.workflow_id is not None and step.workflow_task_id is not None
        state = step.state()
        self.client.update_workflow_task(
            self.project_id,
            self.workflow_id,
            step.workflow_task_id,
            input_filters=state["input_filters"],
            **{
                f"{kind}_{part}": state[f"{kind}_{part}"]
                for part in step.parts
                for kind in ("args", "meta")
                if state[f"{kind}_{part}"] is not None
            },
        )
        step.mark_saved()

    def save(self) -> bool:
        """Make the server's workflow match the list; False (and a message) on a problem."""
        problems = [p for step in self.steps for p in step.problems()]
        if len(self.description or "") > MAX_DESCRIPTION_CHARS:
            problems.insert(
                0, f"the description is longer than {MAX_DESCRIPTION_CHARS:,} characters"
            )
        if problems:
            self.message.fail("fix the fields first: " + "; ".join(problems))
            return False
        try:
            self._save()
        except Exception as error:
            self.message.fail(f"save failed: {describe_error(error)}")
            return False
        self.message.ok(f"saved workflow {self.workflow_id} ({len(self.steps)} steps)")
        return True

    def _save(self) -> None:
        client, project = self.client, self.project_id
        if self.workflow_id is None:
            self.workflow_id = client.create_workflow(
                project, self.name_input.value, self.description
            ).id
        workflow = client.get_workflow(project, self.workflow_id)
        renamed = workflow.name != self.name_input.value
        if renamed or workflow.description != self.description:
            client.update_workflow(
                project,
                self.workflow_id,
                name=self.name_input.value if renamed else None,
                description=self.description,
            )
        on_server = {wt.id for wt in workflow.task_list}
        kept = {step.workflow_task_id for step in self.steps}
        for workflow_task_id in on_server - kept:
            client.delete_workflow_task(project, self.workflow_id, workflow_task_id)
        for step in self.steps:
            if step.workflow_task_id in on_server:
                if step.dirty:
                    self._patch(step)
                continue
            state = step.state()
            created = client.create_workflow_task(
                project,
                self.workflow_id,
                step.task.id,
                input_filters=state["input_filters"],
                **{
                    f"{kind}_{part}": state[f"{kind}_{part}"] or None
                    for part in step.parts
                    for kind in ("args", "meta")
                },
            )
            step.workflow_task_id = created.id
            step.mark_saved()
        order = [step.workflow_task_id for step in self.steps]
        workflow = client.get_workflow(project, self.workflow_id)
        if [wt.id for wt in workflow.task_list] != order:
            workflow = client.update_workflow(
                project, self.workflow_id, reordered_workflowtask_ids=order
            )
        self.workflow = workflow
        self._find_updates()
        self._show_steps(self.selected_step)

    def run(self, dataset_id: int | None = None) -> JobMonitor | None:
        """Save, then run the workflow with the run panel's options; its monitor."""
        if dataset_id is not None:
            self.dataset.value = dataset_id
        options = self.run_panel.options()
        if options is None:
            self.message.fail("the run options have problems: see the messages at the fields")
            return None
        if not self.save():
            return None
        assert self.workflow_id is not None
        try:
            self.job = self.client.submit_job(
                self.project_id, self.workflow_id, self.dataset.value, **options
            )
        except Exception as error:
            left = self.run_panel.show_refusal(getattr(error, "detail", str(error)))
            left = [item for item in left if not self._show_step_problem(item)]
            shown = "; ".join(str(i.get("msg", i)) if isinstance(i, dict) else str(i) for i in left)
            status = getattr(error, "status", "")
            self.message.fail(f"run refused ({status}): {shown or 'see the fields'}")
            return None
        self.message.ok(f"job {self.job.id} submitted")
        if self.monitor is not None:
            self.monitor.close()
        self.monitor = JobMonitor(self.client, self.project_id, self.job.id)
        self.monitor_box.children = [self.monitor]
        return self.monitor

    def _show_step_problem(self, item: Any) -> bool:
        """An argument problem of a submission (`loc` workflow_task, order, args_<part>, ...)
        shown at its field; whether it found one."""
        loc = item.get("loc", []) if isinstance(item, dict) else []
        if len(loc) < 3 or loc[0] != "workflow_task" or not isinstance(loc[1], int):
            return False
        if not 0 <= loc[1] < len(self.steps) or not str(loc[2]).startswith("args_"):
            return False
        form = self.steps[loc[1]].form(str(loc[2]).removeprefix("args_"))
        try:
            field = form.field(*loc[3:])
        except KeyError:
            return False
        field.show_errors([str(item.get("msg", ""))])
        self.select_step(loc[1])
        return True

    # files
    def _file(self, path: str | Path | None) -> Path:
        given = str(path) if path is not None else self.file_input.value.strip()
        if given:
            return Path(given).expanduser()
        safe = re.sub(r"[^\w.-]+", "_", self.name_input.value).strip("_") or "workflow"
        return Path.cwd() / f"{safe}.json"

    def export_workflow(self, path: str | Path | None = None) -> Path | None:
        """Write the saved workflow as JSON (the export route's) to `path`; the path."""
        if self.workflow_id is None:
            self.message.fail("save the workflow before exporting it")
            return None
        target = self._file(path)
        try:
            exported = self.client.export_workflow(self.project_id, self.workflow_id)
            target.write_text(json.dumps(exported.model_dump(mode="json"), indent=2) + "\n")
        except Exception as error:
            self.message.fail(f"export failed: {describe_error(error)}")
            return None
        unsaved = any(s.saved is None or s.dirty for s in self.steps)
        self.message.ok(
            f"exported to {target}"
            + (" (the saved version: unsaved edits are not in it)" if unsaved else "")
        )
        return target

    def import_workflow(self, path: str | Path | None = None) -> WorkflowRead | None:
        """Create a workflow in the project from an exported JSON file, and show it."""
        source = self._file(path)
        try:
            data = json.loads(source.read_text())
            workflow: WorkflowRead = self.client.import_workflow(self.project_id, data)
        except Exception as error:
            self.message.fail(f"import of {source} failed: {describe_error(error)}")
            return None
        self.load(workflow.id)
        self.message.ok(f"imported {source.name} as workflow {workflow.id} ({workflow.name})")
        return workflow
