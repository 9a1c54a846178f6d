"""The task catalogue of the `WorkflowBuilder`: search, filters, a list, the chosen task's
description."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as w

from ..schemas.task import TaskRead
from .steps import TASK_TYPE_LABELS

ANY = "(any)"


class TaskCatalogue(w.VBox):  # type: ignore[misc]
    """Tasks searched by name, category, modality, tags and docs, filtered by category,
    modality and tags; `choice` is the list (its value a task id), `on_pick` is called when
    the user picks a task (or the pick is cleared)."""

    def __init__(self, tasks: list[TaskRead], on_pick: Callable[[], None]) -> None:
        super().__init__(layout=w.Layout(min_width="0"))
        self.tasks = tasks
        self.on_pick = on_pick
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
        options = [(_label(t), t.id) for t in self.visible_tasks]
        self.choice.options = options
        self.choice.value = current if current in [i for _l, i in options] else None
        self._describe()

    def task(self, key: int | str | None) -> TaskRead | None:
        """A task by id or name."""
        for task in self.tasks:
            if task.id == key or task.name == key:
                return task
        return None

    @property
    def chosen(self) -> TaskRead | None:
        return self.task(self.choice.value) if self.choice.value is not None else None

    def _picked(self, _change: Any) -> None:
        self._describe()
        self.on_pick()

    def _describe(self) -> None:
        task = self.chosen
        if task is None:
            self.task_info.value = "<small>Choose a task to add it.</small>"
            return
        tags = ", ".join(task.tags)
        docs = (task.docs_info or "").strip().splitlines()
        kind = TASK_TYPE_LABELS.get(task.type, task.type)
        self.task_info.value = (
            f"<small><b>{html.escape(task.name)}</b> ({html.escape(kind)})"
            + (f"<br>tags: {html.escape(tags)}" if tags else "")
            + (f"<br>{html.escape(docs[0][:300])}" if docs else "")
            + "</small>"
        )


def _label(task: TaskRead) -> str:
    extra = ", ".join(p for p in (task.category, task.modality) if p)
    return f"{task.name}" + (f"  [{extra}]" if extra else "")
