"""Notebook functions as tasks: register_function, the function runner, and a job running them.

The functions below live in this test module, which is no installed package: they are pickled
by value, as a notebook's would be.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest

from fractal_jupyter.client import FractalClient, FunctionNotRegistrable
from fractal_jupyter.client.functions import arguments_schema, pickle_function
from fractal_jupyter.demo_tasks.manifest import demo_task_bodies
from fractal_jupyter.runner.function import MAGIC, write_function_file
from tests.support.cluster import UserServer, slurm_cluster

__all__ = ["slurm_cluster"]  # the session fixture of the SLURM test

# --- functions that become tasks ---------------------------------------------------------------


def label_images(zarr_url: str, label: str, scale: float = 1.0) -> dict[str, Any]:
    """Give every image a label."""
    return {"image_list_updates": [{"zarr_url": zarr_url, "attributes": {"label": label}}]}


def count_images(zarr_urls: list[str], minimum: int = 1) -> dict[str, Any]:
    return {"filters": {"attributes": {"counted": len(zarr_urls) >= minimum}}}


def plan_copies(zarr_urls: list[str], zarr_dir: str, suffix: str = "_copy") -> dict[str, Any]:
    return {
        "parallelization_list": [
            {"zarr_url": url, "init_args": {"target": url + suffix}} for url in zarr_urls
        ]
    }


def make_copy(zarr_url: str, init_args: dict[str, Any]) -> dict[str, Any]:
    target = init_args["target"]
    Path(target).mkdir(parents=True, exist_ok=True)
    return {"image_list_updates": [{"zarr_url": target, "origin": zarr_url}]}


def fails(zarr_url: str) -> None:
    raise RuntimeError(f"cannot process {zarr_url}")


def returns_a_number(zarr_url: str) -> int:
    return 42


# --- the argument schema, client side ----------------------------------------------------------


def test_schema_leaves_out_runner_arguments_and_forbids_others():
    def segment(
        zarr_url: str, channel: Literal["DAPI", "GFP"] = "DAPI", sizes: list[int] | None = None
    ) -> None:
        """Segment nuclei."""

    schema, dropped = arguments_schema(segment, "parallel")
    assert set(schema["properties"]) == {"channel", "sizes"}
    assert schema["properties"]["channel"]["enum"] == ["DAPI", "GFP"]
    assert schema["additionalProperties"] is False
    assert "required" not in schema and schema["title"] == "segment"
    assert schema["description"] == "Segment nuclei."
    assert dropped == []
    schema, _ = arguments_schema(label_images, "parallel")
    assert schema["required"] == ["label"]
    schema, dropped = arguments_schema(count_images, "non_parallel")
    assert set(schema["properties"]) == {"minimum"}
    assert dropped == ["zarr_dir"]  # the runner passes it, the function does not take it


def _client_that_sends_nothing() -> FractalClient:
    # Port 9 answers nothing: a request would raise FractalConnectionError, not the error
    # the tests expect.
    return FractalClient("http://127.0.0.1:9/", "token")


@pytest.mark.parametrize(
    ("function", "kwargs", "message"),
    [
        (lambda zarr_url: None, {}, "a lambda cannot be registered"),
        (label_images, {"type": "non_parallel"}, "add the parameter(s) zarr_urls"),
        (plan_copies, {"type": "compound"}, "needs init="),
    ],
)
def test_bad_functions_are_refused_before_anything_is_sent(tmp_path, function, kwargs, message):
    with pytest.raises(
        FunctionNotRegistrable, match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        _client_that_sends_nothing().register_function(function, functions_dir=tmp_path, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_a_command_that_the_server_would_refuse_is_refused_first(tmp_path):
    # `$` may not be in a task command (commands.py): neither written nor sent.
    folder = tmp_path / "price$"
    with pytest.raises(FunctionNotRegistrable, match="would be refused"):
        _client_that_sends_nothing().register_function(label_images, functions_dir=folder)
    assert not folder.exists()


def test_an_interpreter_path_with_spaces_is_quoted():
    from fractal_jupyter.client.functions import _command
    from fractal_jupyter.commands import split_command

    command = _command("/opt/my python/bin/python3", Path("/data/my functions/f.pkl"))
    assert split_command(command) == [
        "/opt/my python/bin/python3",
        "-m",
        "fractal_jupyter.runner.function",
        "/data/my functions/f.pkl",
    ]


def test_unsupported_argument_types_are_named(tmp_path):
    def smooth(zarr_url: str, kernel: np.ndarray, *extra: int) -> None:
        pass

    with pytest.raises(FunctionNotRegistrable) as refused:
        _client_that_sends_nothing().register_function(smooth, functions_dir=tmp_path)
    message = str(refused.value)
    assert "kernel: ndarray cannot be given as JSON" in message
    assert "*extra" in message and "tasks are called with keyword arguments only" in message
    assert list(tmp_path.iterdir()) == []


def test_an_unpicklable_closure_is_named(tmp_path):
    lock = threading.Lock()

    def guarded(zarr_url: str) -> None:
        with lock:
            pass

    with pytest.raises(FunctionNotRegistrable) as refused:
        _client_that_sends_nothing().register_function(guarded, functions_dir=tmp_path)
    assert "cannot be pickled" in str(refused.value)
    assert "lock (lock:" in str(refused.value)
    assert list(tmp_path.iterdir()) == []


# --- the function runner -------------------------------------------------------------------------


def _run(function_file: Path, arguments: dict[str, Any], tmp_path: Path):
    args_json, out_json = tmp_path / "args.json", tmp_path / "out.json"
    args_json.write_text(json.dumps(arguments))
    process = subprocess.run(
        [
            sys.executable,
            "-m",
            "fractal_jupyter.runner.function",
            str(function_file),
            "--args-json",
            str(args_json),
            "--out-json",
            str(out_json),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    output = json.loads(out_json.read_text()) if out_json.exists() else None
    return process.returncode, process.stderr, output


def _function_file(tmp_path: Path, function: Any, **header: Any) -> Path:
    path = tmp_path / "f.pkl"
    full_header = {
        "name": function.__name__,
        "part": "parallel",
        "python": "{}.{}.{}".format(*sys.version_info[:3]),
        **header,
    }
    write_function_file(path, full_header, pickle_function(function))
    return path


def test_runner_calls_the_function_and_writes_its_output(tmp_path):
    path = _function_file(tmp_path, label_images)
    status, stderr, output = _run(path, {"zarr_url": "/a", "label": "x", "scale": "2"}, tmp_path)
    assert status == 0, stderr
    assert output == {"image_list_updates": [{"zarr_url": "/a", "attributes": {"label": "x"}}]}
    assert path.read_bytes().startswith(MAGIC)


def test_the_users_own_modules_are_pickled_by_value(tmp_path):
    # A module next to the notebook (importable there, not installed): the task's interpreter
    # cannot import it, so its code travels in the pickle.
    modules = tmp_path / "notebook-folder"
    modules.mkdir()
    (modules / "lab_local_steps.py").write_text(
        "def double(x):\n"
        "    return 2 * x\n\n"
        "def mark(zarr_url: str, value: int = 1):\n"
        '    attributes = {"value": double(value)}\n'
        '    return {"image_list_updates": [{"zarr_url": zarr_url, "attributes": attributes}]}\n'
    )
    sys.path.insert(0, str(modules))
    try:
        import lab_local_steps  # type: ignore[import-not-found]

        path = _function_file(tmp_path, lab_local_steps.mark)
    finally:
        sys.path.remove(str(modules))
        sys.modules.pop("lab_local_steps", None)
    status, stderr, output = _run(path, {"zarr_url": "/a", "value": 21}, tmp_path)
    assert status == 0, stderr
    assert output["image_list_updates"][0]["attributes"] == {"value": 42}


def test_runner_refuses_another_python_version(tmp_path):
    path = _function_file(tmp_path, label_images, python="3.1.0", python_executable="/old/python")
    status, stderr, output = _run(path, {"zarr_url": "/a", "label": "x"}, tmp_path)
    assert status == 2 and output is None
    assert "pickled by Python 3.1.0 (/old/python)" in stderr
    assert "same minor version" in stderr


def test_runner_names_a_missing_module(tmp_path):
    # A function pickled by reference to a module that the task's interpreter cannot import.
    module_dir = tmp_path / "elsewhere"
    module_dir.mkdir()
    (module_dir / "lab_helpers.py").write_text("def helper(zarr_url):\n    return None\n")
    sys.path.insert(0, str(module_dir))
    try:
        import lab_helpers  # type: ignore[import-not-found]

        payload = pickle.dumps(lab_helpers.helper)
    finally:
        sys.path.remove(str(module_dir))
        sys.modules.pop("lab_helpers", None)
    path = tmp_path / "f.pkl"
    header = {"name": "helper", "part": "parallel", "python": "{}.{}.{}".format(*sys.version_info)}
    write_function_file(path, header, payload)
    status, stderr, _ = _run(path, {"zarr_url": "/a"}, tmp_path)
    assert status == 2
    assert "needs the module 'lab_helpers'" in stderr and sys.executable in stderr


def test_runner_says_what_a_task_returns(tmp_path):
    path = _function_file(tmp_path, returns_a_number)
    status, stderr, output = _run(path, {"zarr_url": "/a"}, tmp_path)
    assert status == 2 and output is None
    assert "returned int; a task returns None or a dict with some of the keys" in stderr
    init = tmp_path / "init"
    init.mkdir()
    path = _function_file(init, label_images, part="init")
    status, stderr, _ = _run(path, {"zarr_url": "/a", "label": "x"}, init)
    assert status == 2
    assert "returned the key(s) image_list_updates" in stderr
    assert "parallelization_list" in stderr


def test_runner_shows_the_functions_traceback(tmp_path):
    status, stderr, _ = _run(_function_file(tmp_path, fails), {"zarr_url": "/img"}, tmp_path)
    assert status == 1
    assert "Traceback" in stderr and "RuntimeError: cannot process /img" in stderr


# --- against the server: versions and a job ------------------------------------------------------


async def test_register_versions_and_run_a_job(fractal_client, in_thread, tmp_path):
    client = fractal_client
    functions_dir = tmp_path / "functions"
    label = await in_thread(
        client.register_function, label_images, name="label", functions_dir=functions_dir
    )
    assert label.type == "parallel" and label.version == "1"
    assert label.source == "alice:function:label:v1" and label.owner == "alice"
    assert label.command_parallel.startswith(f"{sys.executable} -m fractal_jupyter.runner.function")
    assert set(label.args_schema_parallel["properties"]) == {"label", "scale"}
    # The same function again is the same task; other settings make the next version, and the
    # first version's function file stays as it was.
    again = await in_thread(
        client.register_function, label_images, name="label", functions_dir=functions_dir
    )
    assert again.id == label.id
    files = sorted(functions_dir.rglob("*.pkl"))
    contents = [f.read_bytes() for f in files]
    second = await in_thread(
        client.register_function,
        label_images,
        name="label",
        functions_dir=functions_dir,
        meta={"cpus_per_task": 1},
    )
    assert second.version == "2" and second.id != label.id
    assert [f.read_bytes() for f in files] == contents

    count = await in_thread(
        client.register_function, count_images, type="non_parallel", functions_dir=functions_dir
    )
    decorator = client.function_task(
        type="compound",
        init=plan_copies,
        output_types={"copied": True},
        functions_dir=functions_dir,
    )
    decorated = await in_thread(decorator, make_copy)
    assert decorated is make_copy
    copy = decorated.fractal_task
    assert copy.type == "compound" and copy.name == "make_copy"
    assert set(copy.args_schema_non_parallel["properties"]) == {"suffix"}
    assert copy.args_schema_parallel["properties"] == {}

    plate = next(body for body in demo_task_bodies() if body["source"] == "demo:create_plate")
    plate_task = await in_thread(client.create_task, plate)
    project = await in_thread(client.create_project, "p")
    dataset = await in_thread(client.create_dataset, project.id, "d", str(tmp_path / "zarr"))
    workflow = await in_thread(client.create_workflow, project.id, "wf")
    for task_id, field, args in [
        (plate_task.id, "args_non_parallel", {"rows": "A", "columns": 2, "fields": 1}),
        (label.id, "args_parallel", {"label": "seen"}),
        (copy.id, "args_non_parallel", {"suffix": "_c"}),
        # Last: its dataset filter (an attribute no image has) leaves later tasks no images.
        (count.id, "args_non_parallel", {"minimum": 2}),
    ]:
        await in_thread(
            client.create_workflow_task, project.id, workflow.id, task_id, **{field: args}
        )
    job = await in_thread(client.submit_job, project.id, workflow.id, dataset.id)
    job = await in_thread(client.wait_for_job, project.id, job.id, timeout=120, poll_interval=0.2)
    assert job.status == "done", job.log
    images = (await in_thread(client.query_images, project.id, dataset.id)).images
    originals = [i for i in images if not i.zarr_url.endswith("_c")]
    copies = [i for i in images if i.zarr_url.endswith("_c")]
    assert len(originals) == 2 and len(copies) == 2
    assert all(i.attributes["label"] == "seen" for i in images)  # copies inherit from origin
    assert all(i.types.get("copied") for i in copies)
    updated = await in_thread(client.get_dataset, project.id, dataset.id)
    assert updated.filters.attributes == {"counted": True}


async def test_a_function_that_raises_fails_the_job_with_its_traceback(
    fractal_client, in_thread, tmp_path
):
    client = fractal_client
    task = await in_thread(client.register_function, fails, functions_dir=tmp_path / "f")
    plate = next(b for b in demo_task_bodies() if b["source"] == "demo:create_plate")
    plate_task = await in_thread(client.create_task, plate)
    project = await in_thread(client.create_project, "p")
    dataset = await in_thread(client.create_dataset, project.id, "d", str(tmp_path / "zarr"))
    workflow = await in_thread(client.create_workflow, project.id, "wf")
    await in_thread(
        client.create_workflow_task,
        project.id,
        workflow.id,
        plate_task.id,
        args_non_parallel={"rows": "A", "columns": 1, "fields": 1},
    )
    await in_thread(client.create_workflow_task, project.id, workflow.id, task.id)
    job = await in_thread(client.submit_job, project.id, workflow.id, dataset.id)
    job = await in_thread(client.wait_for_job, project.id, job.id, timeout=60, poll_interval=0.2)
    assert job.status == "failed"
    assert "RuntimeError: cannot process" in (job.log or "")
    assert "Traceback" in (job.log or "")


def run_on_plate(
    client: FractalClient,
    zarr_dir: str,
    steps: list[tuple[int, dict[str, Any]]],
    plate_task_id: int | None = None,
):
    """The demo plate (2 images) then `steps` (task id, workflow task fields) as one job; the
    demo plate task is created unless its id is given."""
    if plate_task_id is None:
        plate = next(b for b in demo_task_bodies() if b["source"] == "demo:create_plate")
        plate_task_id = client.create_task(plate).id
    project = client.create_project("p")
    dataset = client.create_dataset(project.id, "d", zarr_dir)
    workflow = client.create_workflow(project.id, "wf")
    client.create_workflow_task(
        project.id,
        workflow.id,
        plate_task_id,
        args_non_parallel={"rows": "A", "columns": 2, "fields": 1},
    )
    for task_id, fields in steps:
        client.create_workflow_task(project.id, workflow.id, task_id, **fields)
    job = client.submit_job(project.id, workflow.id, dataset.id)
    job = client.wait_for_job(project.id, job.id, timeout=180, poll_interval=0.5)
    return job, client.query_images(project.id, dataset.id).images


@pytest.mark.cluster
def test_a_function_runs_on_slurm(slurm_cluster):
    root = slurm_cluster.user_dir("test_functions")
    server = UserServer(
        slurm_cluster,
        root,
        {
            "runner_backend": "slurm",
            "job_poll_interval": 0.1,
            "submit_rate_limit_seconds": 0.0,
            **slurm_cluster.slurm_settings(),
        },
    )
    server.start()
    try:
        with FractalClient(f"http://127.0.0.1:{server.port}/", server.token) as client:
            task = client.register_function(
                label_images, name="label", functions_dir=root / "functions"
            )
            job, images = run_on_plate(
                client, str(root / "zarr"), [(task.id, {"args_parallel": {"label": "slurm"}})]
            )
        assert job.status == "done", job.log
        assert [image.attributes.get("label") for image in images] == ["slurm", "slurm"]
    finally:
        server.cancel_slurm_jobs()
        server.stop()
