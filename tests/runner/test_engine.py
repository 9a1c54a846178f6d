"""The workflow engine against a scripted executor: calls built, outputs merged and applied."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from copy import deepcopy
from typing import Any

import pytest

from fractal_jupyter.runner import engine
from fractal_jupyter.runner.engine import JobFilters, run_workflow
from fractal_jupyter.runner.interface import (
    JSON,
    JobFailed,
    TaskCall,
    TaskFailed,
    TaskResult,
    WorkflowTaskSpec,
)

ZARR_DIR = "/data/zarr"
NO_FILTERS: JSON = {"attributes": {}, "types": {}}

Output = JSON | None | Callable[[TaskCall], JSON | None]


class FakeExecutor:
    """Records every batch of calls; answers from a script keyed by call prefix.

    A prefix in `fail` raises TaskFailed; a callable script entry computes the output from the
    call; a prefix absent from the script gives None (no output).
    """

    def __init__(self, outputs: dict[str, Output] | None = None, fail: set[str] | None = None):
        self.outputs = outputs or {}
        self.fail = fail or set()
        self.batches: list[list[TaskCall]] = []

    @property
    def calls(self) -> list[TaskCall]:
        return [call for batch in self.batches for call in batch]

    def run_calls(self, calls: Sequence[TaskCall]) -> list[JSON | None]:
        self.batches.append(list(calls))
        results: list[JSON | None] = []
        for call in calls:
            if call.prefix in self.fail:
                raise TaskFailed(call, "exit code 1", "Traceback: boom")
            scripted = self.outputs.get(call.prefix)
            results.append(scripted(call) if callable(scripted) else deepcopy(scripted))
        return results


def make_task(
    order: int = 0,
    name: str = "Some Task",
    task_type: str = "non_parallel",
    **fields: Any,
) -> WorkflowTaskSpec:
    values: dict[str, Any] = {
        "id": 100 + order,
        "order": order,
        "task_id": 200 + order,
        "task_name": name,
        "task_type": task_type,
        "command_non_parallel": (
            None if task_type == "parallel" else f"python /tasks/{order}_init.py"
        ),
        "command_parallel": (
            f"python /tasks/{order}_compute.py"
            if task_type in {"parallel", "compound", "converter_compound"}
            else None
        ),
        "args_non_parallel": None,
        "args_parallel": None,
        "meta_non_parallel": None,
        "meta_parallel": None,
        "input_filters": {"attributes": {}, "types": {}},
        "input_types": {},
        "output_types": {},
        "dump": {"id": 100 + order, "order": order, "task": {"name": name}},
    }
    values.update(fields)
    return WorkflowTaskSpec(**values)


def image(
    zarr_url: str,
    attributes: dict[str, Any] | None = None,
    types: dict[str, bool] | None = None,
    origin: str | None = None,
) -> JSON:
    return {
        "zarr_url": zarr_url,
        "origin": origin,
        "attributes": attributes or {},
        "types": types or {},
    }


class Recorder:
    """Collects the callbacks' arguments in the order they come."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def start(self, spec: WorkflowTaskSpec, calls: int) -> None:
        self.events.append(("start", (spec.order, calls)))

    def done(self, result: TaskResult) -> None:
        self.events.append(("done", result))

    @property
    def results(self) -> list[TaskResult]:
        return [payload for kind, payload in self.events if kind == "done"]


def run(
    tasks: Sequence[WorkflowTaskSpec],
    images: list[JSON],
    executor: FakeExecutor,
    filters: JSON | None = None,
    recorder: Recorder | None = None,
    zarr_dir: str = ZARR_DIR,
) -> tuple[list[JSON], JSON]:
    recorder = recorder or Recorder()
    return run_workflow(
        tasks,
        images,
        deepcopy(filters or NO_FILTERS),
        zarr_dir,
        executor,
        on_task_start=recorder.start,
        on_task_done=recorder.done,
    )


def urls(images: list[JSON]) -> list[str]:
    return [img["zarr_url"] for img in images]


THREE_IMAGES = [
    image(f"{ZARR_DIR}/plate.zarr/A/01/0", {"well": "A01"}, {"is_3D": True}),
    image(f"{ZARR_DIR}/plate.zarr/A/02/0", {"well": "A02"}, {"is_3D": True}),
    image(f"{ZARR_DIR}/plate.zarr/B/01/0", {"well": "B01"}, {"is_3D": False}),
]


# --- calls per task type --------------------------------------------------------------------


def test_non_parallel_call_gets_urls_zarr_dir_and_args() -> None:
    task = make_task(
        order=4,
        name="Create OME-Zarr",
        args_non_parallel={"num_levels": 3},
        meta_non_parallel={"mem": 4000},
    )
    executor = FakeExecutor()
    recorder = Recorder()
    run([task], THREE_IMAGES, executor, recorder=recorder)

    assert executor.batches == [
        [
            TaskCall(
                workflow_task_id=104,
                task_name="Create OME-Zarr",
                command="python /tasks/4_init.py",
                args={"zarr_urls": urls(THREE_IMAGES), "zarr_dir": ZARR_DIR, "num_levels": 3},
                folder="4_create_ome_zarr",
                prefix="4",
                part="non_parallel",
                meta={"mem": 4000},
                zarr_url=None,
            )
        ]
    ]
    assert recorder.events[0] == ("start", (4, 1))


def test_task_folder_replaces_every_punctuation_and_whitespace_character() -> None:
    task = make_task(order=12, name="My Task: v2.0 (beta)\tX/Y")
    executor = FakeExecutor()
    run([task], [], executor)
    assert executor.calls[0].folder == "12_my_task__v2_0__beta__x_y"


def test_parallel_calls_one_per_image_with_component_prefixes() -> None:
    task = make_task(
        order=2,
        name="Illumination correction",
        task_type="parallel",
        args_parallel={"overwrite": True},
        meta_parallel={"cpus_per_task": 2},
        meta_non_parallel={"ignored": 1},
    )
    executor = FakeExecutor()
    recorder = Recorder()
    run([task], THREE_IMAGES, executor, recorder=recorder)

    assert len(executor.batches) == 1
    assert [
        (c.prefix, c.args, c.part, c.meta, c.zarr_url, c.command, c.folder) for c in executor.calls
    ] == [
        (
            f"2_par_{index:07d}",
            {"zarr_url": url, "overwrite": True},
            "parallel",
            {"cpus_per_task": 2},
            url,
            "python /tasks/2_compute.py",
            "2_illumination_correction",
        )
        for index, url in enumerate(urls(THREE_IMAGES))
    ]
    assert recorder.events[0] == ("start", (2, 3))


def test_parallel_task_without_images_is_not_run() -> None:
    task = make_task(task_type="parallel", output_types={"done": True})
    executor = FakeExecutor()
    recorder = Recorder()
    images, filters = run([task], [], executor, recorder=recorder)

    assert executor.batches == []
    assert recorder.events[0] == ("start", (0, 0))
    assert images == []
    # The manifest output types still reach the dataset filters, as in fractal-server.
    assert filters == {"attributes": {}, "types": {"done": True}}
    assert recorder.results[0].images_upserted == []


def test_compound_runs_init_then_one_call_per_deduplicated_item() -> None:
    a, b = urls(THREE_IMAGES)[:2]
    init_output = {
        "parallelization_list": [
            {"zarr_url": a + "/", "init_args": {"channel": 1}},  # normalised to `a`
            {"zarr_url": a, "init_args": {"channel": 1}},  # a repeat, once normalised
            {"zarr_url": a, "init_args": {"channel": 2}},
            {"zarr_url": b},  # init_args default to {}
        ]
    }
    task = make_task(
        order=1,
        name="Cellpose",
        task_type="compound",
        args_non_parallel={"level": 0},
        args_parallel={"model": "nuclei"},
        meta_non_parallel={"mem": 1},
        meta_parallel={"mem": 2},
    )
    executor = FakeExecutor({"1": init_output})
    recorder = Recorder()
    run([task], THREE_IMAGES, executor, recorder=recorder)

    init_batch, compute_batch = executor.batches
    assert [(c.prefix, c.part, c.args, c.meta, c.command) for c in init_batch] == [
        (
            "1",
            "non_parallel",
            {"zarr_urls": urls(THREE_IMAGES), "zarr_dir": ZARR_DIR, "level": 0},
            {"mem": 1},
            "python /tasks/1_init.py",
        )
    ]
    assert [(c.prefix, c.part, c.args, c.meta, c.zarr_url) for c in compute_batch] == [
        (
            "1_par_0000000",
            "parallel",
            {"zarr_url": a, "init_args": {"channel": 1}, "model": "nuclei"},
            {"mem": 2},
            a,
        ),
        (
            "1_par_0000001",
            "parallel",
            {"zarr_url": a, "init_args": {"channel": 2}, "model": "nuclei"},
            {"mem": 2},
            a,
        ),
        (
            "1_par_0000002",
            "parallel",
            {"zarr_url": b, "init_args": {}, "model": "nuclei"},
            {"mem": 2},
            b,
        ),
    ]
    assert {c.folder for c in executor.calls} == {"1_cellpose"}
    assert {c.command for c in compute_batch} == {"python /tasks/1_compute.py"}
    # The init call is announced first; once its list is known, the whole count (1 + 3).
    assert recorder.events[:2] == [("start", (1, 1)), ("start", (1, 4))]


@pytest.mark.parametrize("init_output", [None, {}, {"parallelization_list": []}])
def test_compound_with_empty_parallelization_list_skips_compute(init_output: JSON | None) -> None:
    task = make_task(task_type="compound", output_types={"checked": True})
    executor = FakeExecutor({"0": init_output})
    images, _ = run([task], THREE_IMAGES, executor)

    assert [[c.prefix for c in batch] for batch in executor.batches] == [["0"]]
    # Nothing reported: every input image counts as touched and gets the output types.
    assert [img["types"]["checked"] for img in images] == [True, True, True]


def test_compound_init_runs_even_without_images() -> None:
    task = make_task(task_type="compound")
    executor = FakeExecutor()
    run([task], [], executor)
    assert [c.args for c in executor.calls] == [{"zarr_urls": [], "zarr_dir": ZARR_DIR}]


def test_converter_non_parallel_gets_zarr_dir_only_and_ignores_filters_and_input_types() -> None:
    new_url = f"{ZARR_DIR}/new.zarr/0"
    task = make_task(
        order=0,
        name="Convert Cellvoyager",
        task_type="converter_non_parallel",
        args_non_parallel={"image_dir": "/raw"},
        input_types={"is_3D": False},  # the existing 3D images would violate this
        output_types={"converted": True},
    )
    executor = FakeExecutor({"0": {"image_list_updates": [{"zarr_url": new_url}]}})
    recorder = Recorder()
    images, filters = run(
        [task],
        THREE_IMAGES,
        executor,
        filters={"attributes": {"well": "none-matches"}, "types": {}},
        recorder=recorder,
    )

    assert [c.args for c in executor.calls] == [{"zarr_dir": ZARR_DIR, "image_dir": "/raw"}]
    assert recorder.events[0] == ("start", (0, 1))
    assert images == [*THREE_IMAGES, image(new_url, types={"converted": True})]
    assert filters == {"attributes": {"well": "none-matches"}, "types": {"converted": True}}
    assert recorder.results[0].images_upserted == [image(new_url, types={"converted": True})]


def test_converter_compound_init_gets_zarr_dir_only() -> None:
    new_urls = [f"{ZARR_DIR}/new.zarr/B/03/0", f"{ZARR_DIR}/new.zarr/B/04/0"]
    init_output = {
        "parallelization_list": [{"zarr_url": u, "init_args": {"well": u[-4:-2]}} for u in new_urls]
    }
    task = make_task(
        order=3,
        name="Convert",
        task_type="converter_compound",
        args_non_parallel={"image_dir": "/raw"},
        args_parallel={"overwrite": False},
    )

    def compute(call: TaskCall) -> JSON:
        return {
            "image_list_updates": [
                {"zarr_url": call.args["zarr_url"], "attributes": call.args["init_args"]}
            ]
        }

    executor = FakeExecutor({"3": init_output, "3_par_0000000": compute, "3_par_0000001": compute})
    images, _ = run([task], THREE_IMAGES, executor)

    init_batch, compute_batch = executor.batches
    assert [c.args for c in init_batch] == [{"zarr_dir": ZARR_DIR, "image_dir": "/raw"}]
    assert [(c.prefix, c.args) for c in compute_batch] == [
        (
            "3_par_0000000",
            {"zarr_url": new_urls[0], "init_args": {"well": "03"}, "overwrite": False},
        ),
        (
            "3_par_0000001",
            {"zarr_url": new_urls[1], "init_args": {"well": "04"}, "overwrite": False},
        ),
    ]
    assert images[3:] == [
        image(new_urls[0], {"well": "03"}),
        image(new_urls[1], {"well": "04"}),
    ]


@pytest.mark.parametrize("task_type", ["converter_non_parallel", "converter_compound"])
def test_converter_that_reports_nothing_changes_no_image(task_type: str) -> None:
    task = make_task(task_type=task_type, output_types={"converted": True})
    recorder = Recorder()
    images, filters = run([task], THREE_IMAGES, FakeExecutor(), recorder=recorder)

    assert images == THREE_IMAGES
    assert recorder.results[0].images_upserted == []
    assert filters["types"] == {"converted": True}


# --- filters and input types ----------------------------------------------------------------


def test_task_input_filters_override_dataset_filters_per_key() -> None:
    # Dataset: only 3D images of well A01. The task flips is_3D and disables the well filter.
    dataset_filters = {"attributes": {"well": "A01"}, "types": {"is_3D": True}}
    flipped = make_task(
        order=0, input_filters={"attributes": {"well": None}, "types": {"is_3D": False}}
    )
    plain = make_task(order=1)
    executor = FakeExecutor()
    run([flipped, plain], THREE_IMAGES, executor, filters=dataset_filters)

    assert [c.args["zarr_urls"] for c in executor.calls] == [
        [f"{ZARR_DIR}/plate.zarr/B/01/0"],
        [f"{ZARR_DIR}/plate.zarr/A/01/0"],
    ]


def test_missing_type_counts_as_false() -> None:
    images = [image(f"{ZARR_DIR}/a"), image(f"{ZARR_DIR}/b", types={"is_3D": True})]
    task = make_task(input_filters={"attributes": {}, "types": {"is_3D": False}})
    executor = FakeExecutor()
    run([task], images, executor)
    assert executor.calls[0].args["zarr_urls"] == [f"{ZARR_DIR}/a"]


def test_attribute_filters_compare_with_python_equality() -> None:
    images = [
        image(f"{ZARR_DIR}/int", {"x": 1}),
        image(f"{ZARR_DIR}/float", {"x": 1.0}),
        image(f"{ZARR_DIR}/bool", {"x": True}),
        image(f"{ZARR_DIR}/str", {"x": "1"}),
        image(f"{ZARR_DIR}/missing"),
    ]
    task = make_task(input_filters={"attributes": {"x": 1.0}, "types": {}})
    executor = FakeExecutor()
    run([task], images, executor)
    assert executor.calls[0].args["zarr_urls"] == [
        f"{ZARR_DIR}/int",
        f"{ZARR_DIR}/float",
        f"{ZARR_DIR}/bool",
    ]


def test_none_dataset_attribute_filter_is_a_wildcard() -> None:
    executor = FakeExecutor()
    run([make_task()], THREE_IMAGES, executor, filters={"attributes": {"well": None}, "types": {}})
    assert executor.calls[0].args["zarr_urls"] == urls(THREE_IMAGES)


def test_input_types_violation_fails_before_running_anything_but_after_start() -> None:
    task = make_task(order=7, name="Project 3D", input_types={"is_3D": True})
    executor = FakeExecutor()
    recorder = Recorder()
    with pytest.raises(JobFailed) as failure:
        run([task], THREE_IMAGES, executor, recorder=recorder)

    message = str(failure.value)
    assert "Task 'Project 3D' (position 7)" in message
    assert f"{ZARR_DIR}/plate.zarr/B/01/0" in message
    assert executor.batches == []
    # Started first: the job process blames the failure on the last task started.
    assert recorder.events == [("start", (7, 1))]


def test_input_types_only_checked_on_filtered_images() -> None:
    task = make_task(
        input_types={"is_3D": True}, input_filters={"attributes": {}, "types": {"is_3D": True}}
    )
    executor = FakeExecutor()
    run([task], THREE_IMAGES, executor)
    assert len(executor.calls[0].args["zarr_urls"]) == 2


# --- applying updates -----------------------------------------------------------------------


def test_edit_merges_attributes_drops_none_and_applies_output_types_last() -> None:
    url = f"{ZARR_DIR}/img"
    existing = image(url, {"a": 1, "b": 2}, {"t1": True, "t2": True}, origin=f"{ZARR_DIR}/raw")
    update = {
        "zarr_url": url,
        "origin": url,  # equal to zarr_url: allowed for an edit
        "attributes": {"b": None, "c": "new"},
        "types": {"t2": False, "t3": False},
    }
    task = make_task(output_types={"t3": True})
    images, _ = run([task], [existing], FakeExecutor({"0": {"image_list_updates": [update]}}))
    assert images == [
        image(url, {"a": 1, "c": "new"}, {"t1": True, "t2": False, "t3": True}, f"{ZARR_DIR}/raw")
    ]


def test_edit_with_other_origin_fails() -> None:
    url = f"{ZARR_DIR}/img"
    update = {"zarr_url": url, "origin": f"{ZARR_DIR}/other"}
    with pytest.raises(JobFailed, match="Cannot edit an image with zarr_url different from origin"):
        run([make_task()], [image(url)], FakeExecutor({"0": {"image_list_updates": [update]}}))


def test_create_inherits_from_origin_even_one_created_by_the_same_task() -> None:
    raw = image(f"{ZARR_DIR}/raw", {"well": "A01", "z": 5}, {"is_3D": True, "raw": True})
    mip_url = f"{ZARR_DIR}/mip"
    derived_url = f"{ZARR_DIR}/mip_corrected"
    updates = [
        {"zarr_url": mip_url, "origin": raw["zarr_url"], "attributes": {"z": None}},
        {"zarr_url": derived_url, "origin": mip_url, "types": {"corrected": True}},
        {"zarr_url": f"{ZARR_DIR}/orphan", "origin": f"{ZARR_DIR}/nowhere", "attributes": {"k": 1}},
    ]
    task = make_task(output_types={"is_3D": False})
    images, _ = run([task], [raw], FakeExecutor({"0": {"image_list_updates": updates}}))
    assert images == [
        raw,
        image(mip_url, {"well": "A01"}, {"is_3D": False, "raw": True}, raw["zarr_url"]),
        image(
            derived_url,
            {"well": "A01"},
            {"is_3D": False, "raw": True, "corrected": True},
            mip_url,
        ),
        image(f"{ZARR_DIR}/orphan", {"k": 1}, {"is_3D": False}, f"{ZARR_DIR}/nowhere"),
    ]


@pytest.mark.parametrize(
    ("zarr_dir", "zarr_url", "allowed"),
    [
        ("/a/b", "/a/b/c", True),
        ("/a/b/", "/a/b/c", True),
        ("/", "/x", True),
        ("/a/b", "/a/bc", False),  # a string prefix, but not inside the folder
        ("/a/b", "/a/bc/d", False),
        ("/a/b", "/a/b", False),
        ("/a/b", "/a/b/", False),  # normalised to /a/b
        ("/a/b", "/x/y", False),
    ],
)
def test_new_images_must_be_inside_zarr_dir(zarr_dir: str, zarr_url: str, allowed: bool) -> None:
    executor = FakeExecutor({"0": {"image_list_updates": [{"zarr_url": zarr_url}]}})
    task = make_task(name="Make")
    if allowed:
        images, _ = run([task], [], executor, zarr_dir=zarr_dir)
        assert urls(images) == [zarr_url]
    else:
        with pytest.raises(JobFailed, match=r"Task 'Make' \(position 0\).*not inside"):
            run([task], [], executor, zarr_dir=zarr_dir)


def test_output_types_go_to_dataset_type_filters_with_task_filters() -> None:
    task = make_task(output_types={"is_3D": False})
    output = {"filters": {"attributes": {"well": "A01", "plate": None}, "types": {"ok": True}}}
    _, filters = run(
        [task],
        THREE_IMAGES,
        FakeExecutor({"0": output}),
        filters={"attributes": {"plate": "p1"}, "types": {"is_3D": True, "old": True}},
    )
    assert filters == {
        "attributes": {"plate": None, "well": "A01"},
        "types": {"is_3D": False, "old": True, "ok": True},
    }


def test_type_filter_set_by_manifest_and_task_output_fails() -> None:
    task = make_task(name="MIP", output_types={"is_3D": False})
    output = {"filters": {"types": {"is_3D": False}}}
    with pytest.raises(JobFailed, match=r"Task 'MIP' \(position 0\).*set twice.*is_3D"):
        run([task], THREE_IMAGES, FakeExecutor({"0": output}))


def test_no_reported_image_means_every_filtered_image_was_touched() -> None:
    task = make_task(
        output_types={"illum_corr": True},
        input_filters={"attributes": {}, "types": {"is_3D": True}},
    )
    recorder = Recorder()
    # Only filters reported: still no image updates or removals.
    output = {"filters": {"attributes": {"seen": True}}}
    images, _ = run([task], THREE_IMAGES, FakeExecutor({"0": output}), recorder=recorder)

    assert [img["types"] for img in images] == [
        {"is_3D": True, "illum_corr": True},
        {"is_3D": True, "illum_corr": True},
        {"is_3D": False},
    ]
    assert urls(recorder.results[0].images_upserted) == urls(THREE_IMAGES[:2])


def test_removals_delete_images_and_do_not_touch_the_rest() -> None:
    task = make_task(output_types={"x": True})
    removed = f"{ZARR_DIR}/plate.zarr/A/02/0"
    recorder = Recorder()
    images, _ = run(
        [task],
        THREE_IMAGES,
        FakeExecutor({"0": {"image_list_removals": [removed + "/"]}}),
        recorder=recorder,
    )
    assert images == [THREE_IMAGES[0], THREE_IMAGES[2]]
    assert recorder.results[0].images_removed == [removed]
    assert recorder.results[0].images_upserted == []


def test_removing_a_missing_image_fails() -> None:
    output = {"image_list_removals": [f"{ZARR_DIR}/ghost"]}
    with pytest.raises(JobFailed, match=r"Cannot remove missing image \(zarr_url=/data/zarr/ghost"):
        run([make_task()], THREE_IMAGES, FakeExecutor({"0": output}))


def test_identical_updates_from_parallel_units_are_merged() -> None:
    new = {"zarr_url": f"{ZARR_DIR}/merged", "attributes": {"a": 1}}
    task = make_task(task_type="parallel")
    executor = FakeExecutor(
        {f"0_par_{i:07d}": {"image_list_updates": [new]} for i in range(3)},
    )
    images, _ = run([task], THREE_IMAGES, executor)
    assert images == [*THREE_IMAGES, image(f"{ZARR_DIR}/merged", {"a": 1})]


def test_identical_updates_from_one_non_parallel_call_are_not_merged() -> None:
    # fractal-server 2.6.4 de-duplicates only the merged outputs of parallel calls.
    new = {"zarr_url": f"{ZARR_DIR}/twice"}
    executor = FakeExecutor({"0": {"image_list_updates": [new, new]}})
    with pytest.raises(JobFailed, match="repeated zarr_urls: /data/zarr/twice"):
        run([make_task()], [], executor)


def test_different_updates_of_one_image_from_two_units_fail() -> None:
    target = f"{ZARR_DIR}/plate.zarr/A/01/0"
    task = make_task(name="Par", task_type="parallel")
    executor = FakeExecutor(
        {
            "0_par_0000000": {"image_list_updates": [{"zarr_url": target, "attributes": {"a": 1}}]},
            "0_par_0000001": {"image_list_updates": [{"zarr_url": target, "attributes": {"a": 2}}]},
        }
    )
    with pytest.raises(JobFailed, match=rf"Task 'Par' \(position 0\).*repeated.*{target}"):
        run([task], THREE_IMAGES, executor)


def test_update_and_removal_of_the_same_image_fail() -> None:
    target = f"{ZARR_DIR}/plate.zarr/A/01/0"
    output = {"image_list_updates": [{"zarr_url": target}], "image_list_removals": [target]}
    with pytest.raises(JobFailed, match="1 image updates and 1 removals with repeated"):
        run([make_task()], THREE_IMAGES, FakeExecutor({"0": output}))


def test_parallel_units_must_agree_on_filters() -> None:
    task = make_task(order=5, name="Par", task_type="parallel")
    executor = FakeExecutor({"5_par_0000000": {"filters": {"types": {"a": True}}}})
    with pytest.raises(JobFailed, match=r"Task 'Par' \(position 5\).*different filters"):
        run([task], THREE_IMAGES[:2], executor)


def test_parallel_units_agreeing_on_filters_set_them_once() -> None:
    task = make_task(task_type="parallel")
    same = {"filters": {"attributes": {"k": "v"}}}
    executor = FakeExecutor({"0_par_0000000": same, "0_par_0000001": same})
    _, filters = run([task], THREE_IMAGES[:2], executor)
    assert filters == {"attributes": {"k": "v"}, "types": {}}


# --- invalid outputs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "detail"),
    [
        ({"unexpected": 1}, "unexpected: Extra inputs are not permitted"),
        ({"image_list_updates": [{"zarr_url": "relative/x"}]}, "image_list_updates.0.zarr_url"),
        (
            {"image_list_updates": [{"origin": "/x"}]},
            "image_list_updates.0.zarr_url: Field required",
        ),
        (
            {"image_list_updates": [{"zarr_url": "/data/zarr/x", "attributes": {"a": [1]}}]},
            "image_list_updates.0.attributes.a",
        ),
        (
            {"image_list_updates": [{"zarr_url": "/data/zarr/x", "types": {"t": "maybe"}}]},
            "image_list_updates.0.types.t",
        ),
        ({"image_list_removals": ["s3://bucket/x"]}, "image_list_removals.0"),
        ({"filters": {"attributes": {}, "other": {}}}, "filters.other: Extra inputs"),
        ({"filters": {"attributes": {" ": 1}}}, "filters.attributes"),
        (
            {"image_list_updates": {"zarr_url": "/x"}},
            "image_list_updates: Input should be a valid list",
        ),
    ],
)
def test_invalid_output_names_the_task_and_the_problem(output: JSON, detail: str) -> None:
    task = make_task(order=3, name="Bad")
    with pytest.raises(JobFailed) as failure:
        run([task], THREE_IMAGES, FakeExecutor({"3": output}))
    message = str(failure.value)
    assert message.startswith("Task 'Bad' (position 3) returned an invalid output: ")
    assert detail in message


def test_invalid_parallel_output_names_the_call() -> None:
    task = make_task(order=1, name="Bad", task_type="parallel")
    executor = FakeExecutor({"1_par_0000001": {"image_list_updates": [{"zarr_url": "x"}]}})
    with pytest.raises(JobFailed) as failure:
        run([task], THREE_IMAGES, executor)
    assert str(failure.value).startswith(
        "Task 'Bad' (position 1) returned an invalid output "
        f"(call 1_par_0000001, {ZARR_DIR}/plate.zarr/A/02/0): image_list_updates.0.zarr_url"
    )


@pytest.mark.parametrize(
    ("init_output", "detail"),
    [
        (
            {"parallelization_list": [{"zarr_url": "/x", "extra": 1}]},
            "parallelization_list.0.extra",
        ),
        ({"parallelization_list": [{"init_args": {}}]}, "parallelization_list.0.zarr_url"),
        ({"parallelization_list": [{"zarr_url": "x"}]}, "parallelization_list.0.zarr_url"),
        ({"parallelization_list": [{"zarr_url": "/x", "init_args": 3}]}, "init_args"),
        ({"image_list_updates": []}, "image_list_updates: Extra inputs are not permitted"),
    ],
)
def test_invalid_init_output_fails(init_output: JSON, detail: str) -> None:
    task = make_task(order=2, name="Comp", task_type="compound")
    executor = FakeExecutor({"2": init_output})
    with pytest.raises(JobFailed) as failure:
        run([task], THREE_IMAGES, executor)
    message = str(failure.value)
    assert message.startswith("Task 'Comp' (position 2) returned an invalid init output: ")
    assert detail in message
    assert len(executor.batches) == 1


def test_too_many_parallel_images(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "MAX_PARALLELIZATION_LIST_SIZE", 2)
    task = make_task(name="Par", task_type="parallel")
    executor = FakeExecutor()
    with pytest.raises(
        JobFailed, match=r"Task 'Par' \(position 0\) has too many .*: 3 \(at most 2"
    ):
        run([task], THREE_IMAGES, executor)
    assert executor.batches == []
    run([task], THREE_IMAGES[:2], executor)
    assert len(executor.calls) == 2


def test_too_many_compound_items_counted_after_deduplication(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engine, "MAX_PARALLELIZATION_LIST_SIZE", 2)
    task = make_task(name="Comp", task_type="compound")
    three = {"parallelization_list": [{"zarr_url": f"/z/{i}"} for i in range(3)]}
    executor = FakeExecutor({"0": three})
    with pytest.raises(JobFailed, match="too many parallelization items: 3"):
        run([task], [], executor)
    assert len(executor.batches) == 1  # the init call only

    repeated = {"parallelization_list": [{"zarr_url": "/z/0"}, {"zarr_url": "/z/1"}] * 2}
    executor = FakeExecutor({"0": repeated})
    run([task], [], executor)
    assert [c.prefix for c in executor.batches[1]] == ["0_par_0000000", "0_par_0000001"]


# --- several tasks, callbacks and failures -------------------------------------------------


def test_mip_output_types_make_the_next_task_see_only_2d_images() -> None:
    raw = [
        image(f"{ZARR_DIR}/plate.zarr/A/01/0", {"well": "A01"}, {"is_3D": True}),
        image(f"{ZARR_DIR}/plate.zarr/A/02/0", {"well": "A02"}, {"is_3D": True}),
    ]
    mip = make_task(order=0, name="Project", task_type="compound", output_types={"is_3D": False})

    def project(call: TaskCall) -> JSON:
        source = call.args["init_args"]["origin"]
        return {"image_list_updates": [{"zarr_url": call.args["zarr_url"], "origin": source}]}

    init_output = {
        "parallelization_list": [
            {
                "zarr_url": img["zarr_url"].replace("plate", "plate_mip"),
                "init_args": {"origin": img["zarr_url"]},
            }
            for img in raw
        ]
    }
    after_mip = make_task(order=1, name="Segment", task_type="parallel")
    back_to_3d = make_task(
        order=2, name="Measure 3D", input_filters={"attributes": {}, "types": {"is_3D": True}}
    )
    executor = FakeExecutor({"0": init_output, "0_par_0000000": project, "0_par_0000001": project})
    images, filters = run([mip, after_mip, back_to_3d], raw, executor)

    mip_urls = [f"{ZARR_DIR}/plate_mip.zarr/A/01/0", f"{ZARR_DIR}/plate_mip.zarr/A/02/0"]
    assert [c.zarr_url for c in executor.calls if c.folder == "1_segment"] == mip_urls
    assert executor.calls[-1].args["zarr_urls"] == urls(raw)
    assert filters == {"attributes": {}, "types": {"is_3D": False}}
    assert images[2:] == [
        image(mip_urls[0], {"well": "A01"}, {"is_3D": False}, raw[0]["zarr_url"]),
        image(mip_urls[1], {"well": "A02"}, {"is_3D": False}, raw[1]["zarr_url"]),
    ]


def test_on_task_done_reports_exact_deltas() -> None:
    first = make_task(order=0, name="Edit and create", output_types={"seen": True})
    second = make_task(order=1, name="Remove")
    a, b, c = urls(THREE_IMAGES)
    new = f"{ZARR_DIR}/new"
    executor = FakeExecutor(
        {
            "0": {
                "image_list_updates": [
                    {"zarr_url": new, "origin": b, "attributes": {"extra": 1}},
                    {"zarr_url": a, "attributes": {"well": None}},
                ],
                "filters": {"attributes": {"well": "A02"}},
            },
            "1": {"image_list_removals": [new]},
        }
    )
    recorder = Recorder()
    images, filters = run([first, second], THREE_IMAGES, executor, recorder=recorder)

    assert [kind for kind, _ in recorder.events] == ["start", "done", "start", "done"]
    done_first, done_second = recorder.results
    assert done_first == TaskResult(
        workflow_task_id=100,
        images_upserted=[
            image(new, {"well": "A02", "extra": 1}, {"is_3D": True, "seen": True}, b),
            image(a, {}, {"is_3D": True, "seen": True}),
        ],
        images_removed=[],
        filters={"attributes": {"well": "A02"}, "types": {"seen": True}},
        history_item={"workflowtask": first.dump, "status": "done", "parallelization": {}},
    )
    # The second task sees well A02 with seen=True: not b (the task listed its updates, so b
    # was not touched and has no `seen`), only the new image, which it removes.
    assert executor.calls[1].args["zarr_urls"] == [new]
    assert done_second == TaskResult(
        workflow_task_id=101,
        images_upserted=[],
        images_removed=[new],
        filters={"attributes": {"well": "A02"}, "types": {"seen": True}},
        history_item={"workflowtask": second.dump, "status": "done", "parallelization": {}},
    )
    assert urls(images) == [a, b, c]
    assert filters == done_second.filters


def test_task_failure_propagates_after_earlier_tasks_were_reported() -> None:
    first = make_task(order=0, output_types={"first": True})
    second = make_task(order=1, name="Crashes", task_type="parallel")
    third = make_task(order=2)
    executor = FakeExecutor(fail={"1_par_0000001"})
    recorder = Recorder()
    with pytest.raises(TaskFailed) as failure:
        run([first, second, third], THREE_IMAGES, executor, recorder=recorder)

    assert failure.value.call.prefix == "1_par_0000001"
    assert failure.value.log_tail == "Traceback: boom"
    assert [
        (kind, p if kind == "start" else p.workflow_task_id) for kind, p in recorder.events
    ] == [
        ("start", (0, 1)),
        ("done", 100),
        ("start", (1, 3)),
    ]
    assert all(call.folder != "2_some_task" for call in executor.calls)


def test_arguments_are_not_modified() -> None:
    images = deepcopy(THREE_IMAGES)
    filters = {"attributes": {"well": None}, "types": {}}
    task = make_task(output_types={"x": True})
    output = {"filters": {"attributes": {"k": 1}}}
    result_images, result_filters = run_workflow(
        [task], images, filters, ZARR_DIR, FakeExecutor({"0": output})
    )
    assert images == THREE_IMAGES
    assert filters == {"attributes": {"well": None}, "types": {}}
    assert result_images[0]["types"] == {"is_3D": True, "x": True}
    assert result_filters == {"attributes": {"well": None, "k": 1}, "types": {"x": True}}


def test_submit_and_end_lines_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test-engine-job")
    with caplog.at_level(logging.DEBUG, logger="test-engine-job"):
        run_workflow(
            [make_task(order=3, name="Only")], [], NO_FILTERS, ZARR_DIR, FakeExecutor(), log=log
        )
    assert [r.getMessage() for r in caplog.records if r.name == "test-engine-job"] == [
        'SUBMIT 3-th task (name="Only")',
        'END 3-th task (name="Only")',
    ]


def test_unknown_task_type_fails() -> None:
    recorder = Recorder()
    with pytest.raises(JobFailed, match=r"Task 'Odd' \(position 0\) has an unknown type 'magic'"):
        run([make_task(name="Odd", task_type="magic")], [], FakeExecutor(), recorder=recorder)
    assert recorder.events == [("start", (0, 1))]


@pytest.mark.parametrize(
    ("task_type", "missing", "part"),
    [
        ("non_parallel", "command_non_parallel", "non-parallel"),
        ("parallel", "command_parallel", "parallel"),
        ("compound", "command_parallel", "parallel"),
    ],
)
def test_missing_command_fails(task_type: str, missing: str, part: str) -> None:
    task = make_task(name="Cmd", task_type=task_type, **{missing: None})
    executor = FakeExecutor({"0": {"parallelization_list": [{"zarr_url": "/z/0"}]}})
    with pytest.raises(JobFailed, match=rf"Task 'Cmd' \(position 0\) has no {part} command"):
        run([task], THREE_IMAGES, executor)


def test_executor_returning_too_few_outputs_fails() -> None:
    class Short(FakeExecutor):
        def run_calls(self, calls: Sequence[TaskCall]) -> list[JSON | None]:
            return super().run_calls(calls)[:-1]

    with pytest.raises(JobFailed, match="the executor returned 2 outputs for 3 calls"):
        run([make_task(task_type="parallel")], THREE_IMAGES, Short())


def test_parallelization_items_compare_nested_init_args_by_equality() -> None:
    items = [
        {"zarr_url": "/z/0", "init_args": {"roi": [1, 2], "opts": {"x": 1}}},
        {"zarr_url": "/z/0", "init_args": {"opts": {"x": 1.0}, "roi": [1, 2]}},  # equal
        {"zarr_url": "/z/0", "init_args": {"roi": [2, 1], "opts": {"x": 1}}},  # order matters
    ]
    executor = FakeExecutor({"0": {"parallelization_list": items}})
    run([make_task(task_type="compound")], [], executor)
    assert [c.args["init_args"]["roi"] for c in executor.batches[1]] == [[1, 2], [2, 1]]


def test_arguments_reserved_for_the_runner_fail() -> None:
    task = make_task(name="Clash", args_non_parallel={"zarr_dir": "/elsewhere"})
    with pytest.raises(JobFailed, match=r"Task 'Clash' .*reserved for the runner: \['zarr_dir'\]"):
        run([task], [], FakeExecutor())


def test_lax_output_values_are_coerced_and_keys_stripped() -> None:
    update = {"zarr_url": f"{ZARR_DIR}//x/", "attributes": {" a ": 1}, "types": {"t": 1}}
    images, _ = run([make_task()], [], FakeExecutor({"0": {"image_list_updates": [update]}}))
    assert images == [image(f"{ZARR_DIR}/x", {"a": 1}, {"t": True})]


def test_job_filters_select_images_at_every_task_and_the_first_task_set_only_first() -> None:
    executor = FakeExecutor()
    tasks = [make_task(0, "First", "parallel"), make_task(1, "Second", "parallel")]
    job_filters = JobFilters(
        attributes={"well": ["A01", "A02", "B01", "C01"]},
        types={"is_3D": True},
        first_task_zarr_urls=frozenset({THREE_IMAGES[0]["zarr_url"]}),
    )
    run_workflow(
        tasks, THREE_IMAGES, deepcopy(NO_FILTERS), ZARR_DIR, executor, job_filters=job_filters
    )
    first, second = executor.batches
    # The first task: the selected image only; the next: the job's attribute and type filters
    # (every well is listed, B01 is not 3D).
    assert [call.zarr_url for call in first] == [THREE_IMAGES[0]["zarr_url"]]
    assert [call.zarr_url for call in second] == urls(THREE_IMAGES[:2])
    executor = FakeExecutor()
    run_workflow(
        tasks,
        THREE_IMAGES,
        deepcopy(NO_FILTERS),
        ZARR_DIR,
        executor,
        job_filters=JobFilters(attributes={"well": ["A02", "B01"]}),
    )
    assert [[call.zarr_url for call in batch] for batch in executor.batches] == [
        urls(THREE_IMAGES[1:]),
        urls(THREE_IMAGES[1:]),
    ]
