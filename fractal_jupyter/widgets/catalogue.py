"""The task catalogue of the `WorkflowBuilder`: search, filters, a list, the chosen task's
description.

The list groups the tasks by package and version, as the task-group listing the user sees
(`GET api/v2/task-group/`) has them: a header per group, its tasks under it. A select list
cannot style single entries, so the tasks of an inactive group (its venv removed) end their
label with `INACTIVE_MARK`, which the catalogue's style sheet greys; they cannot be added.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as w

from ..schemas.task import TaskRead
from ..schemas.task_group import TaskGroupReadSlim
from ._common import style_sheet
from .wording import task_type_words

ANY = "(any)"
INACTIVE_MARK = "(inactive)"
GROUP_MARK = "\u25b8"  # the start of a group's header in the list
OTHER_TASKS = "other tasks"  # the header of tasks in no group the listing has
# ipywidgets 8 gives each <option> of a Select its label as `value`.
CATALOGUE_CSS = f"""
.fractal-catalogue option[value^="{GROUP_MARK}"] {{ font-weight: bold; }}
.fractal-catalogue option[value$="{INACTIVE_MARK}"] {{ color: #9e9e9e; font-style: italic; }}
"""

TaskGroupListing = list[tuple[str, list[TaskGroupReadSlim]]]
GroupKey = tuple[str, int]  # a header's value in the list: ("group", id), or ("group", 0)


def inactive_note(group: TaskGroupReadSlim) -> str:
    return (
        f"{group.pkg_name} {group.version} is deactivated (its environment was removed), so "
        "its tasks cannot be added or run; its owner can reactivate it."
    )


class TaskCatalogue(w.VBox):  # type: ignore[misc]
    """Tasks searched by name, category, modality, tags and docs, filtered by category,
    modality and tags; `choice` is the list (its value a task id), `on_pick` is called when
    the user picks a task (or the pick is cleared)."""

    def __init__(
        self,
        tasks: list[TaskRead],
        on_pick: Callable[[], None],
        groups: TaskGroupListing | None = None,
    ) -> None:
        super().__init__(layout=w.Layout(min_width="0"))
        self.tasks = tasks
        self.on_pick = on_pick
        self.groups = [group for _pkg, versions in groups or [] for group in versions]
        self.group_of: dict[int, TaskGroupReadSlim] = {
            task.id: group for group in self.groups for task in group.task_list
        }
        fill = w.Layout(width="auto", min_width="0", flex="1 1 0")
        narrow = {"description_width": "initial"}
        self.search = w.Text(placeholder="search tasks", continuous_update=True, layout=fill)
        self.category = w.Dropdown(
            description="category", options=self._choices("category"), style=narrow, layout=fill
        )
        self.modality = w.Dropdown(
            description="modality", options=self._choices("modality"), style=narrow, layout=fill
        )
        all_tags = sorted({tag for task in tasks for tag in task.tags})
        self.tags = w.SelectMultiple(
            options=all_tags,
            description="tags",
            rows=min(4, max(1, len(all_tags))),
            style=narrow,
            layout=w.Layout(width="auto", min_width="0"),
        )
        for control in (self.search, self.category, self.modality, self.tags):
            control.observe(lambda _c: self.filter(), "value")
        self.choice = w.Select(options=[], rows=8, layout=w.Layout(width="auto", min_width="0"))
        self.choice.add_class("fractal-catalogue")
        self.choice.observe(self._picked, "value")
        self.task_info = w.HTML(layout=w.Layout(min_width="0"))
        self.children = [
            style_sheet(CATALOGUE_CSS),
            w.HTML("<b>Task catalogue</b>"),
            self.search,
            w.HBox([self.category, self.modality], layout=w.Layout(min_width="0")),
            self.tags,
            self.choice,
            self.task_info,
        ]
        self.filter()

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

    def filter(self) -> None:
        current = self.choice.value
        options = self._options(self.visible_tasks)
        self.choice.options = options
        self.choice.value = current if current in [i for _l, i in options] else None
        self._describe()

    def _options(self, visible: list[TaskRead]) -> list[tuple[str, int | GroupKey]]:
        """The list's entries: without groups the tasks; else per group (in the listing's
        order: packages by name, newest version first) a header and its visible tasks."""
        if not self.groups:
            return [(_label(t), t.id) for t in visible]
        shown = {task.id for task in visible}
        options: list[tuple[str, int | GroupKey]] = []
        for group in self.groups:
            members = [self.task(t.id) for t in group.task_list if t.id in shown]
            if members:
                mark = "" if group.active else f"  {INACTIVE_MARK}"
                header = f"{GROUP_MARK} {group.pkg_name} {group.version}{mark}"
                options.append((header, ("group", group.id)))
                options += [(f"    {_label(t)}{mark}", t.id) for t in members if t is not None]
        others = [t for t in visible if t.id not in self.group_of]
        if others:
            options.append((f"{GROUP_MARK} {OTHER_TASKS}", ("group", 0)))
            options += [(f"    {_label(t)}", t.id) for t in others]
        return options

    def refusal(self, task: TaskRead) -> str | None:
        """Why `task` cannot be added (None: it can)."""
        group = self.group_of.get(task.id)
        return inactive_note(group) if group is not None and not group.active else None

    @property
    def chosen_group(self) -> TaskGroupReadSlim | None:
        """The group whose header is picked (None for a task or nothing)."""
        value = self.choice.value
        if not isinstance(value, tuple):
            return None
        return next((g for g in self.groups if g.id == value[1]), None)

    def task(self, key: int | str | None) -> TaskRead | None:
        """A task by id or name."""
        for task in self.tasks:
            if task.id == key or task.name == key:
                return task
        return None

    @property
    def chosen(self) -> TaskRead | None:
        """The task picked (None for nothing or a group's header)."""
        value = self.choice.value
        return self.task(value) if isinstance(value, int) else None

    def _picked(self, _change: Any) -> None:
        self._describe()
        self.on_pick()

    def _describe(self) -> None:
        group = self.chosen_group
        if group is not None:
            self.task_info.value = f"<small>{html.escape(_group_text(group))}</small>"
            return
        task = self.chosen
        if task is None:
            self.task_info.value = "<small>Choose a task to add it.</small>"
            return
        refusal = self.refusal(task)
        tags = ", ".join(task.tags)
        docs = (task.docs_info or "").strip().splitlines()
        kind = task_type_words(task.type)
        self.task_info.value = (
            f"<small><b>{html.escape(task.name)}</b> ({html.escape(kind)})"
            + (f"<br>tags: {html.escape(tags)}" if tags else "")
            + (f"<br>{html.escape(docs[0][:300])}" if docs else "")
            + (f'<br><span style="color:#757575">{html.escape(refusal)}</span>' if refusal else "")
            + "</small>"
        )


def _group_text(group: TaskGroupReadSlim) -> str:
    text = (
        f"{group.pkg_name} {group.version}: {len(group.task_list)} task(s), "
        f"from {group.origin}, owned by {group.user_email}"
    )
    return text + (". " + inactive_note(group) if not group.active else ".")


def _label(task: TaskRead) -> str:
    extra = ", ".join(p for p in (task.category, task.modality) if p)
    return f"{task.name}" + (f"  [{extra}]" if extra else "")
