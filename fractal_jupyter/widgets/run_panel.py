"""The run panel of the `WorkflowBuilder`: what a job runs, where, on which images.

The dataset, the first and last step, `worker_init`, the SLURM account (from the user's
settings) and the job's attribute and type filters. While they change, the panel asks the
server how many images the first step will process (debounced: one request once the edits
pause). A submission the server refuses shows its reasons at the fields they concern.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as w

from ..schemas.filters import IMAGE_STATUS_KEY
from ._common import fill, share
from .forms import FREE_VALUE, ArgsForm
from .steps import Step

JSON = dict[str, Any]
DEFAULT_ACCOUNT = ""  # the server's choice (a Dropdown shows None as no choice at all)

JOB_FILTERS_SCHEMA: JSON = {
    "type": "object",
    "properties": {
        "attribute_filters": {
            "type": "object",
            "title": "Attributes",
            "default": {},
            "description": "Only images whose attribute has one of the values (e.g. well: "
            f"A01, B03). {IMAGE_STATUS_KEY}: failed reruns the images the first step failed on.",
            "additionalProperties": {
                "type": "array",
                "minItems": 1,
                "items": {FREE_VALUE: True},
            },
        },
        "type_filters": {
            "type": "object",
            "title": "Types",
            "default": {},
            "description": "Only images with these types (checked: true, unchecked: false).",
            "additionalProperties": {"type": "boolean"},
        },
    },
}


def empty_filter_values(job_filters: JSON) -> str:
    """What is wrong with attribute filters that have an empty value ("" when none has).

    An empty value field gives None, which the server refuses (a 422 about NoneType) and
    which an image query would read as no filter at all."""
    keys = [
        key
        for key, values in (job_filters.get("attribute_filters") or {}).items()
        if any(value is None or value == "" for value in values)
    ]
    if not keys:
        return ""
    named = ", ".join(repr(key) for key in keys)
    return f"the filter {named} has an empty value: type a value or remove it"


def first_step_filters(
    dataset_filters: JSON, input_filters: JSON, attribute_filters: JSON, type_filters: JSON
) -> tuple[dict[str, list[Any]], dict[str, bool]] | None:
    """The filters that select the first step's images, as lists of values: the dataset's,
    overridden key by key by the step's, and the job's on top. None when they contradict
    each other (no image can match)."""
    attributes = {
        **dataset_filters.get("attributes", {}),
        **input_filters.get("attributes", {}),
    }
    types = {**dataset_filters.get("types", {}), **input_filters.get("types", {})}
    wanted: dict[str, list[Any]] = {key: list(values) for key, values in attribute_filters.items()}
    for key, value in attributes.items():
        if value is None:
            continue  # matches any value
        if key in wanted and not any(value == given for given in wanted[key]):
            return None
        wanted[key] = [value]
    for key, flag in type_filters.items():
        if types.get(key, flag) != flag:
            return None
        types[key] = flag
    return wanted, types


class RunPanel(w.VBox):  # type: ignore[misc]
    """The options of the next run; `options()` checks them (errors at the fields) and gives
    the keyword arguments of `client.submit_job`.

    `steps` gives the builder's current steps. `image_count` is the last count (None while
    unknown), `count_html` says it.
    """

    count_delay = 0.4  # seconds of quiet before the count is asked for

    def __init__(self, client: Any, project_id: int, steps: Callable[[], list[Step]]) -> None:
        super().__init__(layout=w.Layout(min_width="0"))
        self.add_class("fractal-run-panel")
        self.client = client
        self.project_id = project_id
        self.steps = steps
        self.image_count: int | None = None
        self._count_timer: threading.Timer | None = None
        self._count_generation = 0
        style = {"description_width": "110px"}

        self.dataset = w.Dropdown(description="dataset", options=[], style=style, layout=fill())
        self.first = w.Dropdown(
            description="from step", options=[], style=style, layout=share("220px", "360px")
        )
        self.last = w.Dropdown(
            description="to step", options=[], style=style, layout=share("220px", "360px")
        )
        self.worker_init = w.Textarea(
            description="worker init",
            placeholder="shell lines run before each task, e.g. module load cuda",
            style=style,
            layout=fill(height="3.2em"),
        )
        self.account = w.Dropdown(description="SLURM account", style=style, layout=fill())
        self.filters = ArgsForm(JOB_FILTERS_SCHEMA, hidden=())
        self.count_html = w.HTML()
        self.errors: dict[str, w.HTML] = {
            name: _error_line() for name in ("dataset", "range", "worker_init", "account")
        }
        self.errors["filters"] = _error_line()
        self.reload_accounts()
        for control in (self.dataset, self.first):
            control.observe(lambda _c: self.schedule_count(), "value")
        self.filters.on_change(lambda _f: self.schedule_count())
        self.children = [
            w.HTML("<b>Run</b>"),
            self.dataset,
            self.errors["dataset"],
            w.HBox(
                [self.first, self.last],
                layout=w.Layout(flex_flow="row wrap", min_width="0", max_width="720px"),
            ),
            self.errors["range"],
            self.worker_init,
            self.errors["worker_init"],
            self.account,
            self.errors["account"],
            w.HTML("<b>Which images</b> (the job's filters, for the first step)"),
            self.filters,
            self.errors["filters"],
            self.count_html,
        ]

    # choices
    def reload_accounts(self) -> None:
        try:
            accounts = list(self.client.get_current_user_settings().slurm_accounts)
        except Exception:
            accounts = []
        if accounts:
            self.account.options = [
                ("(the first of my accounts)", DEFAULT_ACCOUNT),
                *((account, account) for account in accounts),
            ]
            self.account.disabled = False
        else:
            self.account.options = [("(none in my settings)", DEFAULT_ACCOUNT)]
            self.account.disabled = True
        self.account.value = DEFAULT_ACCOUNT

    def set_datasets(self, datasets: Sequence[tuple[str, int]]) -> None:
        current = self.dataset.value
        ids = [dataset_id for _name, dataset_id in datasets]
        self.dataset.options = list(datasets)
        self.dataset.value = current if current in ids else (ids[-1] if ids else None)

    def set_steps(self, names: Sequence[str]) -> None:
        """The steps to choose from (numbered from 1); the chosen range kept where it can be."""
        first, last = self.first.value, self.last.value
        to_the_end = last is None or last == len(self.last.options) - 1
        options = [(f"{i + 1}. {name}", i) for i, name in enumerate(names)]
        self.first.options, self.last.options = options, options
        end = len(options) - 1
        self.first.value = None if end < 0 else min(first or 0, end)
        self.last.value = None if end < 0 else (end if to_the_end else min(last, end))

    def continue_from(self, index: int) -> None:
        """Run from step `index` (0-based) to the end."""
        self.first.value = index
        self.last.value = len(self.first.options) - 1

    # the submission
    def clear_errors(self) -> None:
        for line in self.errors.values():
            line.value = ""

    def show_error(self, where: str, message: str) -> None:
        line = self.errors[where]
        line.value += f'<div style="color:#c62828;font-size:90%">{html.escape(message)}</div>'

    def error_text(self, where: str) -> str:
        return html.unescape(self.errors[where].value.replace("</div>", "\n")).replace(
            '<div style="color:#c62828;font-size:90%">', ""
        )

    def options(self) -> JSON | None:
        """The keyword arguments of `submit_job` beyond the ids; None (errors shown) if wrong."""
        self.clear_errors()
        fine = True
        if self.dataset.value is None:
            self.show_error("dataset", "choose a dataset")
            fine = False
        first, last = self.first.value, self.last.value
        if first is not None and last is not None and first > last:
            self.show_error(
                "range", f"the first step ({first + 1}) comes after the last one ({last + 1})"
            )
            fine = False
        if self.filters.validate():
            self.show_error("filters", "fix the filters above")
            fine = False
        elif empty := empty_filter_values(self.filters.value):
            self.show_error("filters", empty)
            fine = False
        if not fine:
            return None
        filters = self.filters.value
        return {
            "first_task_index": first,
            "last_task_index": last,
            "worker_init": self.worker_init.value.strip() or None,
            "slurm_account": self.account.value or None,
            "attribute_filters": filters.get("attribute_filters") or None,
            "type_filters": filters.get("type_filters") or None,
        }

    def show_refusal(self, detail: Any) -> list[Any]:
        """Put a refused submission's reasons at their fields; those about no field."""
        items = detail if isinstance(detail, list) else [detail]
        left: list[Any] = []
        for item in items:
            if isinstance(item, dict):
                loc = [part for part in item.get("loc", []) if part not in ("body", "query")]
                message = str(item.get("msg", item))
            else:
                loc, message = [], str(item)
            where = _field_of(loc, message)
            if where is None:
                left.append(item)
            else:
                self.show_error(where, message)
        return left

    # the count of images
    def schedule_count(self) -> None:
        """Ask for the count once the edits pause for `count_delay` seconds."""
        self._count_generation += 1
        if self._count_timer is not None:
            self._count_timer.cancel()
        if self.count_delay <= 0:
            self.refresh_count()
            return
        generation = self._count_generation
        self._count_timer = threading.Timer(self.count_delay, self._count_if_current, [generation])
        self._count_timer.daemon = True
        self._count_timer.start()

    def _count_if_current(self, generation: int) -> None:
        if generation == self._count_generation:
            self.refresh_count()

    def close(self) -> None:
        if self._count_timer is not None:
            self._count_timer.cancel()
        super().close()

    def refresh_count(self) -> None:
        """Ask the server how many images the first step will process, and say it."""
        generation = self._count_generation
        try:
            count, note = self._count()
        except Exception as error:
            count, note = None, f"cannot count the images: {getattr(error, 'detail', error)}"
        if generation != self._count_generation:
            return  # the options changed meanwhile: a newer count follows
        self.image_count = count
        text = f"<b>{count}</b> image(s) will be processed" if count is not None else ""
        if note:
            text += f" <small>({html.escape(note)})</small>" if text else html.escape(note)
        self.count_html.value = f'<div style="font-size:90%">{text}</div>'

    def _count(self) -> tuple[int | None, str]:
        steps, dataset_id = self.steps(), self.dataset.value
        if dataset_id is None or not steps:
            return None, ""
        index = min(self.first.value or 0, len(steps) - 1)
        step = steps[index]
        if step.task.type.startswith("converter_"):
            return None, f"step {index + 1} creates its images: no filters apply"
        if not self.filters.valid:
            return None, "the filters have errors"
        job_filters = self.filters.value
        empty = empty_filter_values(job_filters)
        if empty:
            return None, empty
        dataset = self.client.get_dataset(self.project_id, dataset_id)
        merged = first_step_filters(
            dataset.filters.model_dump(),
            step.state()["input_filters"],
            job_filters.get("attribute_filters", {}),
            job_filters.get("type_filters", {}),
        )
        if merged is None:
            return 0, "the filters contradict the dataset's or the step's"
        attributes, types = merged
        if step.workflow_task_id is not None:
            page = self.client.query_status_images(
                self.project_id,
                dataset_id,
                step.workflow_task_id,
                attribute_filters=attributes,
                type_filters=types,
                page_size=1,
            )
            return page.total_count, ""
        if IMAGE_STATUS_KEY in attributes or any(len(v) > 1 for v in attributes.values()):
            return None, "save the workflow to count the images for these filters"
        query = {"attributes": {k: v[0] for k, v in attributes.items()}, "types": types}
        return self.client.query_images(
            self.project_id, dataset_id, query, page_size=1
        ).total_count, ""


def _error_line() -> w.HTML:
    line = w.HTML("")
    line.add_class("fractal-field-error")
    return line


_FIELDS = {
    "first_task_index": "range",
    "last_task_index": "range",
    "worker_init": "worker_init",
    "slurm_account": "account",
    "attribute_filters": "filters",
    "type_filters": "filters",
    "dataset_id": "dataset",
}


def _field_of(loc: list[Any], message: str) -> str | None:
    """Which field a refusal concerns: by its `loc`, else by the names in its text."""
    if loc:
        return _FIELDS.get(str(loc[0]))
    lowered = message.lower()
    for name, where in _FIELDS.items():
        if name in lowered:
            return where
    if "slurm account" in lowered:
        return "account"
    if lowered.startswith("dataset") and "in use" in lowered:
        return "dataset"
    return None
