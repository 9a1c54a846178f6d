"""The workflow engine: fractal-server 2.6.4's runner semantics, without I/O.

For each workflow task, in order, the engine filters the current image list, builds the task
calls for the task's type, hands them to an executor, validates and merges what the calls
return, and applies that to its own copy of the image list and dataset filters (section 2.5
of fractal-server's runner: implicit "touched everything", origin inheritance, manifest
`output_types` on images and on filters, ...). It reports each task's effect as a delta through
`on_task_done`, so that the caller can persist progress task by task.

Deliberate differences from 2.6.4:
* a new image must lie inside `zarr_dir` as a path (2.6.4 tests a string prefix, which lets
  `/data/abc2/x` in for `zarr_dir=/data/abc`);
* every rule violation is a `JobFailed` naming the task (2.6.4 raises plain `ValueError`s for
  some of them, which users then see as "UNKNOWN ERROR");
* the converter task types of later fractal-server versions are supported (see
  `CONVERTER_TYPES`).
"""

from __future__ import annotations

import logging
import string
from collections.abc import Hashable, Iterable, Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..schemas.common import NullableAttributeDict, TypeDict, ZarrPath
from .interface import (
    JSON,
    Executor,
    JobFailed,
    OnTaskDone,
    OnTaskStart,
    TaskCall,
    TaskResult,
    WorkflowTaskSpec,
)

__all__ = [
    "CONVERTER_TYPES",
    "MAX_PARALLELIZATION_LIST_SIZE",
    "TASK_TYPES",
    "JobFilters",
    "run_workflow",
]

# fractal-server's cap on the units of one parallel part (images, or parallelization items).
MAX_PARALLELIZATION_LIST_SIZE = 20_000

# Converters create images from outside data: they read no image of the dataset, so their
# non-parallel part gets `zarr_dir` but no `zarr_urls`, and the dataset filters and the task's
# `input_types` do not apply to them (later fractal-server versions work this way).
CONVERTER_TYPES = frozenset({"converter_non_parallel", "converter_compound"})
TASK_TYPES = frozenset({"non_parallel", "parallel", "compound"}) | CONVERTER_TYPES
_WITH_INIT_PART = frozenset({"compound", "converter_compound"})

# Error listings stop here: a task returning 20,000 bad items must not make a 20,000-line log.
_MAX_LISTED_PROBLEMS = 10

_SLUG_CHARACTERS = string.punctuation + string.whitespace


# --- what tasks return ----------------------------------------------------------------------
# Lax (not strict) validation, as fractal-server's pydantic 1 models: a task writing `1` for a
# type flag gets `True`. Values and keys follow the same rules as images sent to the API.


class _ImageUpdate(BaseModel):
    """One created or edited image; unknown keys are ignored, as in fractal-server."""

    model_config = ConfigDict(extra="ignore")

    zarr_url: ZarrPath
    origin: ZarrPath | None = None
    attributes: NullableAttributeDict = Field(default_factory=dict)
    types: TypeDict = Field(default_factory=dict)


class _OutputFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attributes: NullableAttributeDict = Field(default_factory=dict)
    types: TypeDict = Field(default_factory=dict)


class _TaskOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image_list_updates: list[_ImageUpdate] = Field(default_factory=list)
    image_list_removals: list[ZarrPath] = Field(default_factory=list)
    filters: _OutputFilters = Field(default_factory=_OutputFilters)


class _InitArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    zarr_url: ZarrPath
    init_args: dict[str, Any] = Field(default_factory=dict)


class _InitTaskOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parallelization_list: list[_InitArgs] = Field(default_factory=list)


_Model = TypeVar("_Model", bound=BaseModel)


# --- job state ------------------------------------------------------------------------------


@dataclass
class _JobState:
    """The image list and dataset filters as the job has changed them so far.

    `positions` maps each zarr_url to its index in `images`, so that an update costs O(1)
    instead of 2.6.4's rescan of the whole list.
    """

    images: list[JSON]
    filters: JSON
    positions: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._reindex()

    def _reindex(self) -> None:
        self.positions = {}
        for index, image in enumerate(self.images):
            # With duplicates (which the API prevents) the first one wins, as in 2.6.4.
            self.positions.setdefault(image["zarr_url"], index)

    def find(self, zarr_url: str) -> JSON | None:
        position = self.positions.get(zarr_url)
        return None if position is None else self.images[position]

    def replace(self, image: JSON) -> None:
        self.images[self.positions[image["zarr_url"]]] = image

    def append(self, image: JSON) -> None:
        self.positions[image["zarr_url"]] = len(self.images)
        self.images.append(image)

    def remove(self, zarr_urls: Iterable[str]) -> None:
        doomed = {self.positions[url] for url in zarr_urls}
        if doomed:
            self.images = [img for index, img in enumerate(self.images) if index not in doomed]
            self._reindex()


# --- entry point ----------------------------------------------------------------------------


def run_workflow(
    tasks: Sequence[WorkflowTaskSpec],
    images: list[JSON],
    filters: JSON,
    zarr_dir: str,
    executor: Executor,
    *,
    on_task_start: OnTaskStart | None = None,
    on_task_done: OnTaskDone | None = None,
    log: logging.Logger | None = None,
    job_filters: JobFilters | None = None,
) -> tuple[list[JSON], JSON]:
    """Run `tasks` one after the other on the dataset; return its final (images, filters).

    The arguments are not modified. `TaskFailed` from the executor and `JobFailed` propagate;
    by then `on_task_done` has been called for every task that completed.
    """
    job_filters = job_filters or JobFilters()
    state = _JobState(
        images=deepcopy(images),
        filters={
            "attributes": dict(filters.get("attributes", {})),
            "types": dict(filters.get("types", {})),
        },
    )
    logger = log or logging.getLogger(__name__)
    for position, spec in enumerate(tasks):
        logger.info(f'SUBMIT {spec.order}-th task (name="{spec.task_name}")')
        job_filters_now = job_filters if position == 0 else job_filters.after_first_task()
        result = _run_task(spec, state, zarr_dir, executor, on_task_start, job_filters_now)
        if on_task_done is not None:
            on_task_done(result)
        logger.info(f'END {spec.order}-th task (name="{spec.task_name}")')
    return state.images, state.filters


def _run_task(
    spec: WorkflowTaskSpec,
    state: _JobState,
    zarr_dir: str,
    executor: Executor,
    on_task_start: OnTaskStart | None,
    job_filters: JobFilters,
) -> TaskResult:
    input_images = (
        [] if spec.task_type in CONVERTER_TYPES else _input_images(spec, state, job_filters)
    )
    # Reported before any check of this task can fail, so that the caller blames the right one.
    if on_task_start is not None:
        on_task_start(spec, len(input_images) if spec.task_type == "parallel" else 1)
    if spec.task_type not in TASK_TYPES:
        raise JobFailed(f"{_label(spec)} has an unknown type '{spec.task_type}'.")
    _check_input_types(spec, input_images)
    zarr_urls = [image["zarr_url"] for image in input_images]
    output = _execute(spec, zarr_urls, zarr_dir, executor, on_task_start)
    upserted, removed = _apply_output(spec, output, zarr_urls, state, zarr_dir)
    return TaskResult(
        workflow_task_id=spec.id,
        images_upserted=[deepcopy(state.images[state.positions[url]]) for url in upserted],
        images_removed=removed,
        filters=deepcopy(state.filters),
        history_item={"workflowtask": spec.dump, "status": "done", "parallelization": {}},
    )


def _label(spec: WorkflowTaskSpec) -> str:
    """How messages name a task: users read them in the job log."""
    return f"Task '{spec.task_name}' (position {spec.order})"


# --- input images ---------------------------------------------------------------------------


@dataclass(frozen=True)
class JobFilters:
    """The job's own filters (fractal-server 2.11+), on top of the dataset's and the task's.

    `attributes` are {key: [values]} (one of the values, for each key), `types` {key: flag};
    `first_task_zarr_urls`, when given, are the only images the first task may work on (the
    server selects them, e.g. by their status for that task).
    """

    attributes: dict[str, list[Any]] = field(default_factory=dict)
    types: dict[str, bool] = field(default_factory=dict)
    first_task_zarr_urls: frozenset[str] | None = None

    def after_first_task(self) -> JobFilters:
        return JobFilters(self.attributes, self.types)

    def matches(self, image: JSON) -> bool:
        if self.first_task_zarr_urls is not None and (
            image["zarr_url"] not in self.first_task_zarr_urls
        ):
            return False
        attributes = image["attributes"]
        return _matches(image, {}, self.types) and all(
            any(attributes.get(key) == value for value in values)
            for key, values in self.attributes.items()
        )


def _input_images(spec: WorkflowTaskSpec, state: _JobState, job_filters: JobFilters) -> list[JSON]:
    """The images the task works on: dataset filters, overridden key by key by the task's,
    and the job's filters."""
    attributes = {**state.filters["attributes"], **spec.input_filters.get("attributes", {})}
    types = {**state.filters["types"], **spec.input_filters.get("types", {})}
    return [
        image
        for image in state.images
        if _matches(image, attributes, types) and job_filters.matches(image)
    ]


def _check_input_types(spec: WorkflowTaskSpec, images: list[JSON]) -> None:
    """`input_types` are an assertion on the filtered images, not one more filter."""
    for image in images:
        if not _matches(image, {}, spec.input_types):
            raise JobFailed(
                f"{_label(spec)} cannot run on image {image['zarr_url']}: its types "
                f"{image['types']} do not satisfy the task's input types {spec.input_types}."
            )


def _matches(image: JSON, attributes: dict[str, Any], types: dict[str, bool]) -> bool:
    """fractal-server's `match_filter`: a missing type is False, a None attribute matches all.

    Values compare with Python's `==`, so 1, 1.0 and True match each other.
    """
    image_types = image["types"]
    if any(image_types.get(key, False) != value for key, value in types.items()):
        return False
    image_attributes = image["attributes"]
    return all(
        value is None or image_attributes.get(key) == value for key, value in attributes.items()
    )


# --- calls and their outputs ----------------------------------------------------------------


def _execute(
    spec: WorkflowTaskSpec,
    zarr_urls: list[str],
    zarr_dir: str,
    executor: Executor,
    on_task_start: OnTaskStart | None = None,
) -> _TaskOutput:
    """Run the task's calls for its type; the output of the whole task."""
    if spec.task_type == "parallel":
        _check_unit_count(spec, len(zarr_urls))
        calls = [
            _parallel_call(spec, index, url, {"zarr_url": url})
            for index, url in enumerate(zarr_urls)
        ]
        if not calls:
            return _TaskOutput()  # with no image the task is not run at all
        return _merge_unit_outputs(spec, _run_units(spec, executor, calls))

    first_call = _non_parallel_call(spec, zarr_urls, zarr_dir)
    raw_output = _run_calls(spec, executor, [first_call])[0]
    if spec.task_type not in _WITH_INIT_PART:
        # No merge (so no de-duplication) for a single non-parallel output, as in 2.6.4.
        return _validated(spec, _TaskOutput, raw_output, first_call, "output")

    init_output = _validated(spec, _InitTaskOutput, raw_output, first_call, "init output")
    items = _unique(init_output.parallelization_list)
    _check_unit_count(spec, len(items))
    if not items:
        return _TaskOutput()
    if on_task_start is not None:
        on_task_start(spec, 1 + len(items))  # the init call, then one per item
    calls = [
        _parallel_call(
            spec, index, item.zarr_url, {"zarr_url": item.zarr_url, "init_args": item.init_args}
        )
        for index, item in enumerate(items)
    ]
    return _merge_unit_outputs(spec, _run_units(spec, executor, calls))


def _check_unit_count(spec: WorkflowTaskSpec, count: int) -> None:
    if count > MAX_PARALLELIZATION_LIST_SIZE:
        raise JobFailed(
            f"{_label(spec)} has too many parallelization items: {count} "
            f"(at most {MAX_PARALLELIZATION_LIST_SIZE})."
        )


def _task_folder(spec: WorkflowTaskSpec) -> str:
    """fractal-server's task subfolder: order, then the name with every special char as `_`."""
    slug = spec.task_name.lower()
    for character in _SLUG_CHARACTERS:
        slug = slug.replace(character, "_")
    return f"{spec.order}_{slug}"


def _non_parallel_call(spec: WorkflowTaskSpec, zarr_urls: list[str], zarr_dir: str) -> TaskCall:
    injected: JSON = {"zarr_dir": zarr_dir}
    if spec.task_type not in CONVERTER_TYPES:
        injected = {"zarr_urls": zarr_urls, **injected}
    return TaskCall(
        workflow_task_id=spec.id,
        task_name=spec.task_name,
        command=_command(spec, spec.command_non_parallel, "non-parallel"),
        args=_with_user_args(spec, injected, spec.args_non_parallel),
        folder=_task_folder(spec),
        prefix=f"{spec.order}",
        part="non_parallel",
        meta=dict(spec.meta_non_parallel or {}),
    )


def _parallel_call(spec: WorkflowTaskSpec, index: int, zarr_url: str, injected: JSON) -> TaskCall:
    return TaskCall(
        workflow_task_id=spec.id,
        task_name=spec.task_name,
        command=_command(spec, spec.command_parallel, "parallel"),
        args=_with_user_args(spec, injected, spec.args_parallel),
        folder=_task_folder(spec),
        prefix=f"{spec.order}_par_{index:07d}",
        part="parallel",
        meta=dict(spec.meta_parallel or {}),
        zarr_url=zarr_url,
    )


def _command(spec: WorkflowTaskSpec, command: str | None, part: str) -> str:
    if not command:
        raise JobFailed(f"{_label(spec)} has no {part} command.")
    return command


def _with_user_args(spec: WorkflowTaskSpec, injected: JSON, user_args: JSON | None) -> JSON:
    """The runner's arguments plus the workflow task's; the API forbids overlaps.

    A stored workflow task that still has one (from before that check) fails here, as it does
    in fractal-server (there, a duplicate keyword argument).
    """
    user_args = user_args or {}
    clashes = sorted(set(injected) & set(user_args))
    if clashes:
        raise JobFailed(f"{_label(spec)} has arguments reserved for the runner: {clashes}.")
    return {**injected, **deepcopy(user_args)}


def _run_calls(
    spec: WorkflowTaskSpec, executor: Executor, calls: Sequence[TaskCall]
) -> list[JSON | None]:
    outputs = executor.run_calls(calls)
    if len(outputs) != len(calls):
        raise JobFailed(
            f"{_label(spec)}: the executor returned {len(outputs)} outputs for {len(calls)} calls."
        )
    return outputs


def _run_units(
    spec: WorkflowTaskSpec, executor: Executor, calls: Sequence[TaskCall]
) -> list[_TaskOutput]:
    raw_outputs = _run_calls(spec, executor, calls)
    return [
        _validated(spec, _TaskOutput, raw, call, "output")
        for raw, call in zip(raw_outputs, calls, strict=True)
    ]


def _validated(
    spec: WorkflowTaskSpec, model: type[_Model], raw: JSON | None, call: TaskCall, what: str
) -> _Model:
    """`raw` as `model` (None is the empty output), or a JobFailed saying what is wrong."""
    try:
        return model.model_validate(raw or {})
    except ValidationError as error:
        where = "" if call.part == "non_parallel" else f" (call {call.prefix}, {call.zarr_url})"
        raise JobFailed(
            f"{_label(spec)} returned an invalid {what}{where}: {_describe(error)}"
        ) from None


def _describe(error: ValidationError) -> str:
    problems = [
        f"{'.'.join(str(part) for part in problem['loc']) or '(whole output)'}: {problem['msg']}"
        for problem in error.errors()
    ]
    listed = "; ".join(problems[:_MAX_LISTED_PROBLEMS])
    hidden = len(problems) - _MAX_LISTED_PROBLEMS
    return f"{listed}; and {hidden} more problems" if hidden > 0 else listed


def _merge_unit_outputs(spec: WorkflowTaskSpec, outputs: list[_TaskOutput]) -> _TaskOutput:
    """One output for a parallel part: concatenated lists, the filters all units agree on.

    A unit that returns nothing has empty filters, so it disagrees with units that set some.
    """
    filters = outputs[0].filters.model_dump()
    for output in outputs[1:]:
        other = output.filters.model_dump()
        if other != filters:
            raise JobFailed(
                f"{_label(spec)}: its parallel calls returned different filters "
                f"({filters} and {other})."
            )
    return _TaskOutput.model_construct(
        image_list_updates=_unique([u for output in outputs for u in output.image_list_updates]),
        image_list_removals=[url for output in outputs for url in output.image_list_removals],
        filters=outputs[0].filters,
    )


def _unique(items: list[_Model]) -> list[_Model]:
    """Items without repeats (full equality, first kept), in linear rather than 2.6.4's
    quadratic time."""
    seen: set[Hashable] = set()
    kept: list[_Model] = []
    for item in items:
        key = _freeze(item.model_dump())
        if key not in seen:
            seen.add(key)
            kept.append(item)
    return kept


def _freeze(value: Any) -> Hashable:
    """A hashable stand-in for a JSON value, equal for two values exactly when `==` says so."""
    if isinstance(value, dict):
        return ("dict", frozenset((key, _freeze(item)) for key, item in value.items()))
    if isinstance(value, list | tuple):
        return ("list", tuple(_freeze(item) for item in value))
    scalar: Hashable = value
    return scalar


# --- applying an output ---------------------------------------------------------------------


def _apply_output(
    spec: WorkflowTaskSpec,
    output: _TaskOutput,
    input_urls: list[str],
    state: _JobState,
    zarr_dir: str,
) -> tuple[list[str], list[str]]:
    """Apply the task output to the job state; the (upserted, removed) zarr_urls."""
    updates = output.image_list_updates
    removals = output.image_list_removals
    if not updates and not removals:
        # fractal-server #1374: no image reported means every input image was touched, so that
        # the manifest's output_types reach them. Converters have no input images: one that
        # reports nothing changes no image.
        updates = [_ImageUpdate.model_construct(zarr_url=url) for url in input_urls]
    _check_unique_urls(spec, updates, removals)
    for update in updates:
        existing = state.find(update.zarr_url)
        if existing is None:
            _create_image(spec, update, state, zarr_dir)
        else:
            _edit_image(spec, update, existing, state)
    _remove_images(spec, removals, state)
    _update_filters(spec, output.filters, state)
    return [update.zarr_url for update in updates], list(removals)


def _check_unique_urls(
    spec: WorkflowTaskSpec, updates: list[_ImageUpdate], removals: list[str]
) -> None:
    seen: set[str] = set()
    repeated: list[str] = []
    for url in [update.zarr_url for update in updates] + removals:
        if url in seen and url not in repeated:
            repeated.append(url)
        seen.add(url)
    if repeated:
        raise JobFailed(
            f"{_label(spec)} returned {len(updates)} image updates and {len(removals)} "
            f"removals with repeated zarr_urls: {', '.join(repeated[:_MAX_LISTED_PROBLEMS])}."
        )


def _edit_image(
    spec: WorkflowTaskSpec, update: _ImageUpdate, existing: JSON, state: _JobState
) -> None:
    """Merge the update into the existing image; its stored `origin` stays as it was."""
    if update.origin is not None and update.origin != update.zarr_url:
        raise JobFailed(
            f"{_label(spec)}: Cannot edit an image with zarr_url different from origin "
            f"(zarr_url={update.zarr_url}, origin={update.origin})."
        )
    state.replace(
        {
            **existing,
            "attributes": _merged_attributes(existing["attributes"], update.attributes),
            "types": _merged_types(spec, existing["types"], update.types),
        }
    )


def _create_image(
    spec: WorkflowTaskSpec, update: _ImageUpdate, state: _JobState, zarr_dir: str
) -> None:
    """Add the image, starting from its origin's attributes and types when it has one.

    The origin is looked up in the current list, so it may be an image this same task created
    earlier; an origin that is not there gives nothing (as in fractal-server, silently).
    """
    _check_inside_zarr_dir(spec, update.zarr_url, zarr_dir)
    origin = state.find(update.origin) if update.origin is not None else None
    state.append(
        {
            "zarr_url": update.zarr_url,
            "origin": update.origin,
            "attributes": _merged_attributes(
                origin["attributes"] if origin else {}, update.attributes
            ),
            "types": _merged_types(spec, origin["types"] if origin else {}, update.types),
        }
    )


def _check_inside_zarr_dir(spec: WorkflowTaskSpec, zarr_url: str, zarr_dir: str) -> None:
    # A path test, not 2.6.4's string prefix: `/data/abc2/x` is not inside `/data/abc`.
    if zarr_url == zarr_dir or not zarr_url.startswith(zarr_dir.rstrip("/") + "/"):
        raise JobFailed(
            f"{_label(spec)}: Cannot create image {zarr_url}: it is not inside the dataset's "
            f"zarr_dir ({zarr_dir})."
        )


def _merged_attributes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`new` over `old`; a None value deletes the attribute."""
    return {key: value for key, value in {**old, **new}.items() if value is not None}


def _merged_types(
    spec: WorkflowTaskSpec, old: dict[str, bool], new: dict[str, bool]
) -> dict[str, bool]:
    """`new` over `old`, and the manifest's output_types over both."""
    return {**old, **new, **spec.output_types}


def _remove_images(spec: WorkflowTaskSpec, removals: list[str], state: _JobState) -> None:
    for url in removals:
        if state.find(url) is None:
            raise JobFailed(f"{_label(spec)}: Cannot remove missing image (zarr_url={url}).")
    state.remove(removals)


def _update_filters(spec: WorkflowTaskSpec, filters: _OutputFilters, state: _JobState) -> None:
    """Dataset filters: the task's attributes, and types from the manifest and from the task.

    The manifest's output_types become type filters too (after an MIP task with
    `{"is_3D": false}`, later tasks see only 2D images). A key set by both is ambiguous.
    """
    overlap = sorted(set(spec.output_types) & set(filters.types))
    if overlap:
        raise JobFailed(
            f"{_label(spec)}: Some type filters are being set twice, by the task output "
            f"({filters.types}) and by the task's output types ({spec.output_types}): "
            f"{overlap}."
        )
    state.filters["attributes"].update(filters.attributes)
    state.filters["types"].update(spec.output_types)
    state.filters["types"].update(filters.types)
