"""One step of the `WorkflowBuilder`: a task with its arguments, resources and type filters.

A `Step` keeps what the user edits in forms (`ArgsForm`s, built when first shown): the
arguments of each part of the task, its `meta` (the resources the runner reads, shown with
the task's defaults) and the type filters of its input. `saved` is the state the server has
(None for a step not saved yet); `dirty` says whether the edits differ from it.
"""

from __future__ import annotations

import contextlib
import copy
import html
import json
from dataclasses import dataclass, field
from typing import Any

import ipywidgets as w

from ..runner.batching import BatchingError, parse_mem
from ..schemas.task import TaskRead, has_non_parallel_part, has_parallel_part
from ..schemas.workflow import DroppedArgument, TaskVersionRead, WorkflowTaskRead
from .forms import ArgsForm
from .wording import task_type_words

JSON = dict[str, Any]

_INTEGER = {"type": "integer", "minimum": 1}
_TEXT = {"type": "string", "minLength": 1}

# The `meta` keys the runner reads (runner/slurm.py, runner/local.py, runner/call.py,
# runner/warm.py); other keys a task has are kept as they are.
META_PROPERTIES: dict[str, JSON] = {
    "cpus_per_task": {
        **_INTEGER,
        "title": "CPUs per run",
        "description": "CPU cores each run of the task gets (SLURM --cpus-per-task).",
    },
    "mem": {
        **_INTEGER,
        "title": "Memory per run (MB)",
        "description": "Memory each run of the task gets, in MB (SLURM --mem).",
    },
    "needs_gpu": {
        "type": "boolean",
        "title": "Needs a GPU",
        "description": "Run on a GPU node, with the GPU options of the deployment (SLURM).",
    },
    "parallel_tasks_per_job": {
        **_INTEGER,
        "title": "Images at the same time",
        "description": "On how many images the task runs at once (in one SLURM job, or locally).",
    },
    "tasks_per_job": {
        **_INTEGER,
        "title": "Images per SLURM job",
        "description": "On how many images one SLURM job runs the task in all (give 'Images "
        "at the same time' with it).",
    },
    "time": {
        **_TEXT,
        "title": "Time limit",
        "description": "Longest run time of a SLURM job, e.g. 02:00:00 (SLURM --time).",
    },
    "partition": {**_TEXT, "title": "SLURM partition"},
    "constraint": {**_TEXT, "title": "SLURM constraint"},
    "gres": {**_TEXT, "title": "SLURM gres", "description": "Generic resources, e.g. gpu:1."},
    "gpus": {**_TEXT, "title": "SLURM gpus"},
    "extra_lines": {
        "type": "array",
        "items": {"type": "string"},
        "title": "Extra #SBATCH lines",
        "description": "Lines added to the SLURM script as they are.",
    },
    "address_space_limit": {
        **_INTEGER,
        "title": "Memory limit per run (MB)",
        "description": "A run of the task that takes more memory than this is stopped "
        "(local runs).",
    },
    "warm_start": {
        "type": "boolean",
        "title": "Warm start",
        "description": "Start each run from a process that has the task's imports loaded "
        "(off: a fresh Python for every run).",
    },
}

TYPE_FILTERS_SCHEMA: JSON = {
    "type": "object",
    "additionalProperties": {"type": "boolean"},
}


def meta_schema(task_defaults: JSON | None) -> JSON:
    """The form schema of a step's `meta`; each key the task sets names its default."""
    properties = {}
    for key, schema in META_PROPERTIES.items():
        if task_defaults and key in task_defaults:
            default = task_defaults[key]
            note = f"The task's default: {default!r}."
            schema = {**schema, "description": f"{schema.get('description', '')} {note}".strip()}
        properties[key] = schema
    return {"type": "object", "properties": properties}


def meta_for_form(meta: JSON | None) -> JSON:
    """`meta` as the form shows it: memory as MB (the runner also takes "4G")."""
    shown = dict(meta or {})
    for key in ("mem", "address_space_limit"):
        if isinstance(shown.get(key), str):
            with contextlib.suppress(BatchingError):  # else kept: the form says what is wrong
                shown[key] = parse_mem(shown[key])
    return shown


def part_title(task_type: str, part: str) -> str:
    """The part of a task, in words: its arguments and resources are titled with it."""
    if part == "parallel":
        return "per image"
    return "preparation, once" if has_parallel_part(task_type) else "once, for all images"


@dataclass
class Step:
    """One task of the workflow being built (`workflow_task_id` None until saved)."""

    task: TaskRead
    workflow_task_id: int | None = None
    args_non_parallel: JSON = field(default_factory=dict)
    args_parallel: JSON = field(default_factory=dict)
    meta_non_parallel: JSON | None = None  # None: the task's defaults
    meta_parallel: JSON | None = None
    input_filters: JSON = field(default_factory=lambda: {"attributes": {}, "types": {}})
    saved: JSON | None = None  # `state()` as the server has it; None: not saved
    forms: dict[str, ArgsForm] = field(default_factory=dict)
    # meta as first shown in a form (memory in MB) and as given: unedited, it is sent as given
    _meta_loaded: dict[str, tuple[JSON, JSON | None]] = field(default_factory=dict)
    updates: list[TaskVersionRead] = field(default_factory=list)  # newer versions, lowest first
    # what the last version update left out (the new version's schema refused it)
    dropped_arguments: list[DroppedArgument] = field(default_factory=list)

    @classmethod
    def from_server(cls, workflow_task: WorkflowTaskRead) -> Step:
        step = cls(
            workflow_task.task,
            workflow_task.id,
            dict(workflow_task.args_non_parallel or {}),
            dict(workflow_task.args_parallel or {}),
            dict(workflow_task.meta_non_parallel or {}),
            dict(workflow_task.meta_parallel or {}),
            workflow_task.input_filters.model_dump(),
        )
        step.mark_saved()
        return step

    def copy(self) -> Step:
        """An unsaved step with the same task and edits."""
        state = copy.deepcopy(self.state())
        return Step(
            self.task,
            None,
            args_non_parallel=state["args_non_parallel"],
            args_parallel=state["args_parallel"],
            meta_non_parallel=state["meta_non_parallel"],
            meta_parallel=state["meta_parallel"],
            input_filters=state["input_filters"],
        )

    @property
    def parts(self) -> list[str]:
        parts = []
        if has_non_parallel_part(self.task.type):
            parts.append("non_parallel")
        if has_parallel_part(self.task.type):
            parts.append("parallel")
        return parts

    # the forms
    def form(self, part: str) -> ArgsForm:
        """The arguments form of a part ("non_parallel" or "parallel")."""
        if part not in self.forms:
            schema = getattr(self.task, f"args_schema_{part}")
            title = f"Arguments ({part_title(self.task.type, part)})"
            given = getattr(self, f"args_{part}")
            form = ArgsForm(schema, given, title=title)
            self.forms[part] = form
            setattr(self, f"args_{part}", form.value)  # the defaults
            self._adopt(f"args_{part}", given, form.value)
        return self.forms[part]

    def _adopt(self, key: str, given: Any, shown: Any) -> None:
        """A form fills in defaults: what the server has, so shown, is not an edit."""
        if self.saved is not None and self.saved[key] == given:
            self.saved[key] = copy.deepcopy(shown)

    def meta_form(self, part: str) -> ArgsForm:
        """The resources form of a part, filled with the step's meta (or the task's)."""
        key = f"meta_{part}"
        if key not in self.forms:
            defaults = getattr(self.task, key)
            given = getattr(self, key)
            two_parts = len(self.parts) > 1
            form = ArgsForm(
                meta_schema(defaults),
                meta_for_form(defaults if given is None else given),
                hidden=(),
                title=part_title(self.task.type, part).capitalize() if two_parts else None,
            )
            self.forms[key] = form
            self._meta_loaded[key] = (copy.deepcopy(form.value), copy.deepcopy(given))
        return self.forms[key]

    def types_form(self) -> ArgsForm:
        """The type filters of the step's input (e.g. is_3D: false)."""
        if "types" not in self.forms:
            self.forms["types"] = ArgsForm(
                TYPE_FILTERS_SCHEMA, self.input_filters.get("types", {}), hidden=()
            )
        return self.forms["types"]

    def all_forms(self) -> list[ArgsForm]:
        return [
            *(self.form(part) for part in self.parts),
            *(self.meta_form(part) for part in self.parts),
            self.types_form(),
        ]

    # state
    def args(self, part: str) -> JSON:
        return self.form(part).value

    def state(self) -> JSON:
        """What is sent to the server for this step (forms not built yet: what was given)."""
        result: JSON = {}
        for part in ("non_parallel", "parallel"):
            args_form, meta_form = self.forms.get(part), self.forms.get(f"meta_{part}")
            result[f"args_{part}"] = (
                args_form.value if args_form else dict(getattr(self, f"args_{part}"))
            )
            meta = getattr(self, f"meta_{part}")
            if meta_form is not None:
                shown, given = self._meta_loaded[f"meta_{part}"]
                meta = given if meta_form.value == shown else meta_form.value
            result[f"meta_{part}"] = meta
        types_form = self.forms.get("types")
        types = types_form.value if types_form else self.input_filters.get("types", {})
        result["input_filters"] = {
            "attributes": dict(self.input_filters.get("attributes", {})),
            "types": dict(types),
        }
        return result

    def mark_saved(self) -> None:
        self.saved = copy.deepcopy(self.state())

    @property
    def dirty(self) -> bool:
        """Edited since the last save (a step never saved is "new", not dirty)."""
        return self.saved is not None and self.state() != self.saved

    def problems(self) -> list[str]:
        """What must be fixed before a save (a missing required argument is checked at run)."""
        problems = [
            f"{self.task.name} ({part_title(self.task.type, part)}): {error}"
            for part in self.parts
            for error in self.form(part).errors
            if error.message != "required"
        ]
        for part in self.parts:
            problems += [
                f"{self.task.name} (resources): {error}" for error in self.meta_form(part).errors
            ]
        problems += [f"{self.task.name} (type filters): {e}" for e in self.types_form().errors]
        return problems

    # edits
    def reset_to_defaults(self) -> None:
        """Arguments and resources back to the task's defaults (type filters stay)."""
        for part in self.parts:
            self.form(part).reset()
            self.meta_form(part).value = meta_for_form(getattr(self.task, f"meta_{part}"))

    def discard_edits(self) -> None:
        """Back to the state the server has (nothing for a step not saved yet)."""
        if self.saved is None:
            return
        saved = copy.deepcopy(self.saved)
        for part in ("non_parallel", "parallel"):
            setattr(self, f"args_{part}", saved[f"args_{part}"] or {})
            setattr(self, f"meta_{part}", saved[f"meta_{part}"])
        self.input_filters = saved["input_filters"]
        for part in self.parts:
            self.form(part).value = saved[f"args_{part}"] or {}
            form = self.meta_form(part)
            form.value = meta_for_form(saved[f"meta_{part}"])
            self._meta_loaded[f"meta_{part}"] = (form.value, saved[f"meta_{part}"])
        self.types_form().value = saved["input_filters"].get("types", {})

    def sections(self) -> list[w.Widget]:
        """The step's editor: its arguments, resources and type filters, under headings."""
        task = self.task
        args = [self.form(part) for part in self.parts if not self.form(part).is_empty]
        if not args:
            args = [_note("This task has no arguments to set.")]
        return [
            *([_dropped_note(self.dropped_arguments)] if self.dropped_arguments else []),
            *args,
            w.HTML("<b>Resources</b>"),
            _note(
                "What each run of the task gets; empty: the deployment's default. "
                f"This task {task_type_words(task.type)}."
            ),
            *(self.meta_form(part) for part in self.parts),
            w.HTML("<b>Type filters</b>"),
            _note(
                "The step takes only the images with these types (added to the dataset's "
                "filters), e.g. is_3D unchecked for 2D images only."
            ),
            self.types_form(),
        ]


def _dropped_note(dropped: list[DroppedArgument]) -> w.HTML:
    items = "".join(
        f"<li><code>{html.escape('.'.join(d.loc))}</code> = "
        f"<code>{html.escape(json.dumps(d.value))}</code>: {html.escape(d.msg)}</li>"
        for d in dropped
    )
    note = w.HTML(
        '<div style="color:#e65100;font-size:90%">The version update dropped these arguments '
        f"(the new version does not accept them):<ul>{items}</ul></div>"
    )
    note.add_class("fractal-dropped-arguments")
    return note


def _note(text: str) -> w.HTML:
    return w.HTML(f'<div style="color:#555;font-size:90%">{html.escape(text)}</div>')
