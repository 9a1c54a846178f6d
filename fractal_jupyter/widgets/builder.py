"""`WorkflowBuilder`: the task catalogue, a workflow's task list, argument forms, save, run.

The catalogue can be searched (name, category, modality, tags, docs) and filtered by category,
modality and tags. Tasks are added to a local task list that can be reordered and pruned;
each task's arguments are edited with `ArgsForm`. "Save" makes the server's workflow match
(creating it if needed): new workflow tasks created, removed ones deleted, arguments
replaced, the order set. "Run" saves, submits a job on the chosen dataset and shows a
`JobMonitor`.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ipywidgets as w

from ..schemas.task import TaskRead, has_non_parallel_part, has_parallel_part
from ..schemas.workflow import WorkflowRead
from ._common import MessageArea, describe_error
from .forms import ArgsForm
from .jobs import JobMonitor

ANY = "(any)"


@dataclass
class Step:
    """One task of the workflow being built (`workflow_task_id` None until saved)."""

    task: TaskRead
    workflow_task_id: int | None = None
    args_non_parallel: dict[str, Any] = field(default_factory=dict)
    args_parallel: dict[str, Any] = field(default_factory=dict)
    forms: dict[str, ArgsForm] = field(default_factory=dict)  # "non_parallel" / "parallel"

    @property
    def parts(self) -> list[str]:
        parts = []
        if has_non_parallel_part(self.task.type):
            parts.append("non_parallel")
        if has_parallel_part(self.task.type):
            parts.append("parallel")
        return parts

    def form(self, part: str) -> ArgsForm:
        if part not in self.forms:
            schema = getattr(self.task, f"args_schema_{part}")
            title = f"{part.replace('_', '-')} arguments"
            form = ArgsForm(schema, getattr(self, f"args_{part}"), title=title)
            form.on_change(self._keeper(part))
            self.forms[part] = form
            setattr(self, f"args_{part}", form.value)  # the defaults
        return self.forms[part]

    def _keeper(self, part: str) -> Callable[[ArgsForm], None]:
        def keep(form: ArgsForm) -> None:
            setattr(self, f"args_{part}", form.value)

        return keep

    def args(self, part: str) -> dict[str, Any]:
        return self.form(part).value

    def problems(self) -> list[str]:
        """Errors other than a required value still missing (those the server checks at run)."""
        return [
            f"{self.task.name} ({part}): {error}"
            for part in self.parts
            for error in self.form(part).errors
            if error.message != "required"
        ]


class WorkflowBuilder(w.VBox):  # type: ignore[misc]
    """Build workflow `workflow_id` of project `project_id` (a new one when None).

    State: `tasks` (the catalogue), `visible_tasks` (after search and filters), `steps`,
    `selected_step`, `workflow_id`, `workflow`, `job`, `monitor`, `message.text`.
    Code can do what the widgets do: `add_task(...)`, `move_step(i, delta)`,
    `remove_step(i)`, `select_step(i)`, `save()`, `run(dataset_id)`.
    """

    def __init__(
        self,
        client: Any,
        project_id: int,
        workflow_id: int | None = None,
        *,
        name: str = "workflow",
    ) -> None:
        super().__init__()
        self.add_class("fractal-workflow-builder")
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

        # catalogue
        self.search = w.Text(
            placeholder="search tasks", continuous_update=True, layout=w.Layout(width="220px")
        )
        self.category = w.Dropdown(description="category", options=self._choices("category"))
        self.modality = w.Dropdown(description="modality", options=self._choices("modality"))
        all_tags = sorted({tag for task in self.tasks for tag in task.tags})
        self.tags = w.SelectMultiple(
            options=all_tags, description="tags", rows=min(4, max(1, len(all_tags)))
        )
        for control in (self.search, self.category, self.modality, self.tags):
            control.observe(lambda _c: self._filter(), "value")
        self.catalogue = w.Select(options=[], rows=8, layout=w.Layout(width="100%"))
        self.catalogue.add_class("fractal-catalogue")
        self.catalogue.observe(lambda _c: self._describe_task(), "value")
        self.task_info = w.HTML()
        self.add_button = w.Button(
            description="Add to workflow", icon="plus", button_style="primary"
        )
        self.add_button.on_click(lambda _b: self._add_selected())

        # workflow
        self.name_input = w.Text(value=name, description="name")
        self.step_list = w.Select(options=[], rows=8, layout=w.Layout(width="100%"))
        self.step_list.add_class("fractal-steps")
        self.step_list.observe(self._step_picked, "value")
        self.up_button = w.Button(icon="arrow-up", tooltip="move up", layout=w.Layout(width="40px"))
        self.down_button = w.Button(
            icon="arrow-down", tooltip="move down", layout=w.Layout(width="40px")
        )
        self.remove_button = w.Button(icon="trash", tooltip="remove", layout=w.Layout(width="40px"))
        self.up_button.on_click(lambda _b: self._move_selected(-1))
        self.down_button.on_click(lambda _b: self._move_selected(1))
        self.remove_button.on_click(lambda _b: self._remove_selected())
        self.editor = w.VBox([])
        self.save_button = w.Button(description="Save", icon="save", button_style="success")
        self.save_button.on_click(lambda _b: self.save())
        self.dataset = w.Dropdown(description="dataset", options=[])
        self.run_button = w.Button(description="Run", icon="play", button_style="warning")
        self.run_button.on_click(lambda _b: self.run())
        self.monitor_box = w.VBox([])

        catalogue = w.VBox(
            [
                w.HTML("<b>Task catalogue</b>"),
                w.HBox([self.search, self.category, self.modality]),
                self.tags,
                self.catalogue,
                self.task_info,
                self.add_button,
            ],
            layout=w.Layout(width="45%"),
        )
        workflow = w.VBox(
            [
                w.HTML("<b>Workflow</b>"),
                self.name_input,
                w.HBox(
                    [self.step_list, w.VBox([self.up_button, self.down_button, self.remove_button])]
                ),
                w.HBox([self.save_button, self.dataset, self.run_button]),
            ],
            layout=w.Layout(width="55%"),
        )
        self.children = [
            w.HBox([catalogue, workflow]),
            self.editor,
            self.message.widget,
            self.monitor_box,
        ]
        self._filter()
        self.reload_datasets()
        if workflow_id is not None:
            self.load(workflow_id)

    # catalogue
    def _choices(self, attribute: str) -> list[str]:
        values = sorted({getattr(t, attribute) for t in self.tasks if getattr(t, attribute)})
        return [ANY, *values]

    @property
    def visible_tasks(self) -> list[TaskRead]:
        words = self.search.value.lower().split()
        chosen_tags = set(self.tags.value)
        visible = []
        for task in self.tasks:
            if self.category.value != ANY and task.category != self.category.value:
                continue
            if self.modality.value != ANY and task.modality != self.modality.value:
                continue
            if not chosen_tags <= set(task.tags):
                continue
            text = " ".join(
                str(part or "")
                for part in (task.name, task.category, task.modality, task.docs_info, *task.tags)
            ).lower()
            if all(word in text for word in words):
                visible.append(task)
        return visible

    def _filter(self) -> None:
        current = self.catalogue.value
        options = [(self._task_label(t), t.id) for t in self.visible_tasks]
        self.catalogue.options = options
        ids = [task_id for _l, task_id in options]
        self.catalogue.value = current if current in ids else (ids[0] if ids else None)

    @staticmethod
    def _task_label(task: TaskRead) -> str:
        extra = ", ".join(p for p in (task.category, task.modality) if p)
        return f"{task.name}" + (f"  [{extra}]" if extra else "")

    def _describe_task(self) -> None:
        task = self._task(self.catalogue.value) if self.catalogue.value is not None else None
        if task is None:
            self.task_info.value = ""
            return
        tags = ", ".join(task.tags)
        docs = (task.docs_info or "").strip().splitlines()
        self.task_info.value = (
            f"<small><b>{html.escape(task.name)}</b> ({html.escape(task.type)})"
            + (f"<br>tags: {html.escape(tags)}" if tags else "")
            + (f"<br>{html.escape(docs[0][:300])}" if docs else "")
            + "</small>"
        )

    def _task(self, key: int | str) -> TaskRead | None:
        for task in self.tasks:
            if task.id == key or task.name == key:
                return task
        return None

    def _add_selected(self) -> None:
        if self.catalogue.value is None:
            self.message.fail("choose a task in the catalogue first")
            return
        self.add_task(self.catalogue.value)

    # the task list
    def add_task(self, task: int | str) -> Step:
        """Append a task (by id or name) to the list, and open its arguments."""
        found = self._task(task)
        if found is None:
            raise KeyError(f"no task {task!r} in the catalogue")
        self.steps.append(Step(found))
        self._show_steps(len(self.steps) - 1)
        self.message.ok(f"added {found.name} (not saved yet)")
        return self.steps[-1]

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

    def _remove_selected(self) -> None:
        if self.selected_step is not None:
            self.remove_step(self.selected_step)

    def _show_steps(self, selected: int | None) -> None:
        self.step_list.options = [
            (f"{i + 1}. {step.task.name}" + ("" if step.workflow_task_id else " *"), i)
            for i, step in enumerate(self.steps)
        ]
        self.step_list.value = selected
        self._step_picked(None)

    def _step_picked(self, _change: Any) -> None:
        self.selected_step = self.step_list.value
        if self.selected_step is None:
            self.editor.children = []
            return
        step = self.steps[self.selected_step]
        self.editor.children = [
            w.HTML(f"<b>Arguments of {html.escape(step.task.name)}</b>"),
            *(step.form(part) for part in step.parts),
        ]

    # the server
    def load(self, workflow_id: int) -> None:
        """Show the server's workflow (the local list is replaced)."""
        workflow = self.client.get_workflow(self.project_id, workflow_id)
        self.workflow, self.workflow_id = workflow, workflow.id
        self.name_input.value = workflow.name
        self.steps = [
            Step(
                wt.task,
                wt.id,
                dict(wt.args_non_parallel or {}),
                dict(wt.args_parallel or {}),
            )
            for wt in workflow.task_list
        ]
        self._show_steps(0 if self.steps else None)

    def reload_datasets(self) -> None:
        datasets = self.message.attempt(
            "listing datasets", lambda: self.client.list_datasets(self.project_id, history=False)
        )
        if datasets is not None:
            current = self.dataset.value
            self.dataset.options = [(d.name, d.id) for d in datasets]
            ids = [d.id for d in datasets]
            self.dataset.value = current if current in ids else (ids[-1] if ids else None)

    def save(self) -> bool:
        """Make the server's workflow match the list; False (and a message) on a problem."""
        problems = [p for step in self.steps for p in step.problems()]
        if problems:
            self.message.fail("fix the arguments first: " + "; ".join(problems))
            return False
        try:
            self._save()
        except Exception as error:
            self.message.fail(f"save failed: {describe_error(error)}")
            return False
        self.message.ok(f"saved workflow {self.workflow_id} ({len(self.steps)} tasks)")
        return True

    def _save(self) -> None:
        client, project = self.client, self.project_id
        if self.workflow_id is None:
            self.workflow_id = client.create_workflow(project, self.name_input.value).id
        workflow = client.get_workflow(project, self.workflow_id)
        if workflow.name != self.name_input.value:
            client.update_workflow(project, self.workflow_id, name=self.name_input.value)
        on_server = {wt.id for wt in workflow.task_list}
        kept = {step.workflow_task_id for step in self.steps}
        for workflow_task_id in on_server - kept:
            client.delete_workflow_task(project, self.workflow_id, workflow_task_id)
        for step in self.steps:
            args = {f"args_{part}": step.args(part) for part in step.parts}
            if step.workflow_task_id in on_server:
                client.update_workflow_task(
                    project, self.workflow_id, step.workflow_task_id, **args
                )
            else:
                created = client.create_workflow_task(
                    project,
                    self.workflow_id,
                    step.task.id,
                    **{k: v or None for k, v in args.items()},
                )
                step.workflow_task_id = created.id
        order = [step.workflow_task_id for step in self.steps]
        workflow = client.get_workflow(project, self.workflow_id)
        if [wt.id for wt in workflow.task_list] != order:
            workflow = client.update_workflow(
                project, self.workflow_id, reordered_workflowtask_ids=order
            )
        self.workflow = workflow
        self._show_steps(self.selected_step)

    def run(self, dataset_id: int | None = None) -> JobMonitor | None:
        """Save, then run the workflow on a dataset (the chosen one); its monitor."""
        if dataset_id is not None:
            self.dataset.value = dataset_id
        if self.dataset.value is None:
            self.message.fail("choose a dataset first")
            return None
        if not self.save():
            return None
        assert self.workflow_id is not None
        try:
            self.job = self.client.submit_job(self.project_id, self.workflow_id, self.dataset.value)
        except Exception as error:
            self.message.fail(f"run failed: {describe_error(error)}")
            return None
        self.message.ok(f"job {self.job.id} submitted")
        if self.monitor is not None:
            self.monitor.close()
        self.monitor = JobMonitor(self.client, self.project_id, self.job.id)
        self.monitor_box.children = [self.monitor]
        return self.monitor
