"""FractalClient: one method per route, against a live test server, and server discovery.

The server runs on the test's event loop, so every client call goes through `in_thread`.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import re
import sys
import zipfile
from pathlib import Path

import pytest

from fractal_jupyter.client import (
    Endpoint,
    FractalAPIError,
    FractalClient,
    FractalConnectionError,
    ServerNotFound,
    endpoints_of,
)
from fractal_jupyter.client.discovery import choose_server, discover, from_jupyterhub
from fractal_jupyter.demo_tasks.manifest import demo_task_bodies
from fractal_jupyter.handlers.base import operations_of
from fractal_jupyter.handlers.routes import ROUTES
from fractal_jupyter.schemas.dataset import DatasetRead
from fractal_jupyter.schemas.images import ImagePage
from fractal_jupyter.schemas.job import JobRead
from fractal_jupyter.schemas.project import ProjectRead
from fractal_jupyter.schemas.workflow import WorkflowRead

# --- coverage of the route table -------------------------------------------------------------


def test_every_route_has_a_client_method():
    served = {
        Endpoint(method.upper(), route.path)
        for route in ROUTES
        for method in operations_of(route.handler)
    }
    implemented = endpoints_of(FractalClient)
    missing = sorted(f"{e.method} {e.path}" for e in served - implemented.keys())
    assert not missing, f"routes without a FractalClient method: {missing}"
    stale = sorted(f"{implemented[e]}: {e.method} {e.path}" for e in implemented.keys() - served)
    assert not stale, f"FractalClient methods for routes the server does not have: {stale}"


class _Sent(Exception):
    """Raised by the mock transport: the request a client method made."""


def _dummy_arguments(method) -> dict:
    arguments = {}
    for name, parameter in inspect.signature(method).parameters.items():
        if parameter.default is not inspect.Parameter.empty or parameter.kind in (
            inspect.Parameter.VAR_KEYWORD,
            inspect.Parameter.VAR_POSITIONAL,
        ):
            continue
        annotation = str(parameter.annotation)
        if name == "id" or name.endswith("_id"):
            arguments[name] = 7
        elif "Mapping" in annotation:
            arguments[name] = {}
        else:
            arguments[name] = "x"
    return arguments


def test_each_method_calls_the_route_it_declares():
    """Each declared method sends its declared HTTP method to its declared path."""
    import httpx

    def handler(request: httpx.Request) -> httpx.Response:
        raise _Sent(request.method, request.url.path)

    client = FractalClient("http://server/", "t")
    client._transport.http = httpx.Client(
        base_url=client.api_url, transport=httpx.MockTransport(handler)
    )
    for endpoint, name in endpoints_of(FractalClient).items():
        method = getattr(client, name)
        with pytest.raises(_Sent) as sent:
            method(**_dummy_arguments(method))
        expected = "/fractal" + re.sub(r"\{\w+\}", "7", endpoint.path)
        assert sent.value.args == (endpoint.method, expected), name
    client.close()


def test_method_names_are_unique_per_endpoint():
    names = list(endpoints_of(FractalClient).values())
    assert len(names) == len(set(names))
    assert all(name[0] != "_" for name in names)


# --- against the live server -----------------------------------------------------------------


async def test_projects_datasets_images(fractal_client, make_client, in_thread, tmp_path):
    client = fractal_client
    assert (await in_thread(client.alive))["alive"] is True
    assert "/api/v2/project/" in "".join((await in_thread(client.openapi))["paths"])
    me = await in_thread(client.get_current_user)
    assert me.username == "alice" and me.is_superuser is False

    project = await in_thread(client.create_project, "p1")
    assert isinstance(project, ProjectRead) and project.name == "p1"
    renamed = await in_thread(client.update_project, project.id, name="p2")
    assert renamed.name == "p2"
    assert [p.name for p in await in_thread(client.list_projects)] == ["p2"]
    assert (await in_thread(client.get_project, project.id)).id == project.id
    # Another user does not see it, and gets the server's refusal with its detail.
    with pytest.raises(FractalAPIError) as refused:
        await in_thread(make_client("bob").get_project, project.id)
    assert refused.value.status == 403 and "project" in str(refused.value.detail).lower()

    zarr = str(tmp_path / "zarr")
    dataset = await in_thread(client.create_dataset, project.id, "d", zarr)
    assert isinstance(dataset, DatasetRead) and dataset.zarr_dir == zarr
    for well, level in (("A01", "dim"), ("A02", "bright"), ("B01", "bright")):
        await in_thread(
            client.add_image,
            project.id,
            dataset.id,
            f"{zarr}/plate.zarr/{well[0]}/{well[1:]}/0",
            attributes={"well": well, "level": level},
            types={"is_3D": True},
        )
    page = await in_thread(
        client.query_images,
        project.id,
        dataset.id,
        {"attributes": {"level": "bright"}},
        page_size=1,
    )
    assert isinstance(page, ImagePage)
    assert page.total_count == 2 and page.page_size == 1 and len(page.images) == 1
    assert page.images[0].attributes["well"] == "A02"
    assert sorted(page.attributes["level"]) == ["bright", "dim"] and page.types == ["is_3D"]
    second = await in_thread(
        client.query_images,
        project.id,
        dataset.id,
        {"attributes": {"level": "bright"}},
        page=2,
        page_size=1,
    )
    assert second.current_page == 2 and second.images[0].attributes["well"] == "B01"

    url = f"{zarr}/plate.zarr/A/01/0"
    changed = await in_thread(
        client.update_image, project.id, dataset.id, url, attributes={"well": "A01", "level": "x"}
    )
    assert changed.attributes == {"well": "A01", "level": "x"} and changed.types == {"is_3D": True}
    await in_thread(client.delete_image, project.id, dataset.id, url)
    everything = await in_thread(client.query_images, project.id, dataset.id)
    assert everything.total_count == 2

    updated = await in_thread(
        client.update_dataset,
        project.id,
        dataset.id,
        name="d2",
        filters={"attributes": {"level": "bright"}, "types": {}},
    )
    assert updated.name == "d2" and updated.filters.attributes == {"level": "bright"}
    filtered = await in_thread(
        client.query_images, project.id, dataset.id, use_dataset_filters=True
    )
    assert filtered.total_count == 2

    exported = await in_thread(client.export_dataset, project.id, dataset.id)
    assert exported.name == "d2" and len(exported.images) == 2
    exported.name = "copy"
    copy = await in_thread(client.import_dataset, project.id, exported)
    assert copy.name == "copy" and copy.id != dataset.id
    assert (await in_thread(client.query_images, project.id, copy.id)).total_count == 2
    assert {d.name for d in await in_thread(client.list_datasets, project.id)} == {"d2", "copy"}
    assert len(await in_thread(client.list_user_datasets, history=False)) == 2
    assert (await in_thread(client.get_dataset, project.id, copy.id)).name == "copy"

    await in_thread(client.delete_dataset, project.id, copy.id)
    with pytest.raises(FractalAPIError) as gone:
        await in_thread(client.get_dataset, project.id, copy.id)
    assert gone.value.status == 404 and gone.value.detail
    await in_thread(client.delete_project, project.id)
    assert await in_thread(client.list_projects) == []


async def test_validation_errors_carry_the_servers_detail(fractal_client, in_thread):
    project = await in_thread(fractal_client.create_project, "p")
    with pytest.raises(FractalAPIError) as error:
        await in_thread(fractal_client.create_dataset, project.id, "d", "relative/path")
    assert error.value.status == 422
    assert isinstance(error.value.detail, list)
    assert error.value.detail[0]["loc"][:2] == ["body", "zarr_dir"]
    assert "absolute path" in error.value.detail[0]["msg"]
    assert "422" in str(error.value) and "dataset" in error.value.url


async def test_tasks_workflows_and_a_job(fractal_client, make_client, in_thread, tmp_path):
    client = fractal_client
    tasks = {}
    for body in demo_task_bodies():
        task = await in_thread(client.create_task, body)
        tasks[task.name] = task
    plate, measure, project_task = (
        tasks["Create demo plate"],
        tasks["Measure intensity"],
        tasks["Project image"],
    )
    light = await in_thread(client.list_tasks, args_schema_parallel=False)
    assert {t.name for t in light} == set(tasks) and all(
        t.args_schema_parallel is None for t in light
    )
    changed = await in_thread(client.update_task, measure.id, tags=["demo", "measure"])
    assert changed.tags == ["demo", "measure"]
    assert (await in_thread(client.get_task, measure.id)).tags == ["demo", "measure"]

    project = await in_thread(client.create_project, "p")
    dataset = await in_thread(client.create_dataset, project.id, "d", str(tmp_path / "zarr"))
    workflow = await in_thread(client.create_workflow, project.id, "wf")
    first = await in_thread(
        client.create_workflow_task,
        project.id,
        workflow.id,
        measure.id,
        args_parallel={"threshold": 150},
    )
    second = await in_thread(
        client.create_workflow_task,
        project.id,
        workflow.id,
        plate.id,
        args_non_parallel={"rows": "A", "columns": 1, "fields": 1},
    )
    assert first.task.name == "Measure intensity" and second.args_non_parallel["rows"] == "A"
    reordered = await in_thread(
        client.update_workflow,
        project.id,
        workflow.id,
        name="wf2",
        reordered_workflowtask_ids=[second.id, first.id],
    )
    assert isinstance(reordered, WorkflowRead) and reordered.name == "wf2"
    assert [wt.task.name for wt in reordered.task_list] == [
        "Create demo plate",
        "Measure intensity",
    ]
    patched = await in_thread(
        client.update_workflow_task,
        project.id,
        workflow.id,
        first.id,
        args_parallel={"threshold": 100},
    )
    assert patched.args_parallel == {"threshold": 100}
    got = await in_thread(client.get_workflow_task, project.id, workflow.id, first.id)
    assert got.args_parallel == {"threshold": 100}
    extra = await in_thread(client.create_workflow_task, project.id, workflow.id, project_task.id)
    await in_thread(client.delete_workflow_task, project.id, workflow.id, extra.id)
    assert len((await in_thread(client.get_workflow, project.id, workflow.id)).task_list) == 2

    exported = await in_thread(client.export_workflow, project.id, workflow.id)
    assert [t.task.source for t in exported.task_list] == [plate.source, measure.source]
    exported.name = "imported"
    imported = await in_thread(client.import_workflow, project.id, exported)
    assert imported.name == "imported" and len(imported.task_list) == 2
    assert {w.name for w in await in_thread(client.list_workflows, project.id)} == {
        "wf2",
        "imported",
    }
    assert len(await in_thread(client.list_user_workflows)) == 2
    await in_thread(client.delete_workflow, project.id, imported.id)

    job = await in_thread(client.submit_job, project.id, workflow.id, dataset.id)
    assert isinstance(job, JobRead) and job.status == "submitted"
    job = await in_thread(client.wait_for_job, project.id, job.id, timeout=60, poll_interval=0.1)
    assert job.status == "done", job.log
    live = await in_thread(client.get_job, project.id, job.id, show_tmp_logs=True)
    assert live.log and "Measure intensity" in live.log
    progress = await in_thread(client.get_job_progress, project.id, job.id)
    assert progress.job_id == job.id and progress.status == "done"
    assert [(t.task_name, t.status) for t in progress.tasks] == [
        ("Create demo plate", "done"),
        ("Measure intensity", "done"),
    ]
    assert progress.tasks[1].calls_done == progress.tasks[1].calls_total == 1
    await check_history_methods(client, in_thread, project.id, dataset.id, workflow.id, job.id)
    status = await in_thread(client.get_status, project.id, dataset.id, workflow.id)
    assert set(status.status.values()) == {"done"} and len(status.status) == 2
    assert [j.id for j in await in_thread(client.list_jobs, project.id, log=False)] == [job.id]
    assert (await in_thread(client.list_jobs, project.id, log=False))[0].log is None
    assert [j.id for j in await in_thread(client.list_user_jobs)] == [job.id]
    assert [j.id for j in await in_thread(client.list_workflow_jobs, project.id, workflow.id)] == [
        job.id
    ]
    images = await in_thread(client.query_images, project.id, dataset.id)
    assert images.total_count == 1 and "level" in images.images[0].attributes

    target = tmp_path / "job.zip"
    archive = await in_thread(client.download_job, project.id, job.id, target)
    assert target.read_bytes() == archive
    names = zipfile.ZipFile(io.BytesIO(archive)).namelist()
    assert any(name.endswith("workflow.log") for name in names)
    # Stopping a finished job is refused, with the reason.
    with pytest.raises(FractalAPIError) as refused:
        await in_thread(client.stop_job, project.id, job.id)
    assert refused.value.status == 422 and refused.value.detail

    admin = make_client("admin")
    assert [p.id for p in await in_thread(admin.admin_list_projects, id=project.id)] == [project.id]
    assert [j.id for j in await in_thread(admin.admin_list_jobs, status="done", log=False)] == [
        job.id
    ]
    assert (await in_thread(admin.admin_get_job, job.id)).status == "done"
    assert await in_thread(admin.admin_download_job, job.id) == archive
    with pytest.raises(FractalAPIError) as not_running:
        await in_thread(admin.admin_stop_job, job.id)
    assert not_running.value.status == 422
    infos = await in_thread(admin.admin_list_tasks, name="Measure intensity")
    assert [info.task.id for info in infos] == [measure.id]
    assert {r.workflow_id for r in infos[0].relationships} == {workflow.id}
    await in_thread(admin.admin_make_tasks_core, [measure.id])
    assert (await in_thread(client.get_task, measure.id)).is_core is True
    await in_thread(admin.admin_make_tasks_not_core, [measure.id])
    assert (await in_thread(client.get_task, measure.id)).is_core is False

    await in_thread(client.delete_task, project_task.id)
    with pytest.raises(FractalAPIError) as gone:
        await in_thread(client.get_task, project_task.id)
    assert gone.value.status == 404


async def check_history_methods(client, in_thread, project_id, dataset_id, workflow_id, job_id):
    """The run history of a done job, workflow (create plate, measure), through the client."""
    latest = await in_thread(client.get_latest_job, project_id, workflow_id, dataset_id)
    assert latest.id == job_id and len(latest.task_statuses) == 2
    plate_task, measure_task = (int(key) for key in latest.task_statuses)
    assert latest.task_statuses[str(measure_task)].num_done_images == 1
    runs = await in_thread(client.list_history_runs, project_id, dataset_id, measure_task)
    assert [run.num_done_units for run in runs] == [1]
    units = await in_thread(
        client.list_history_units,
        project_id,
        runs[0].id,
        dataset_id,
        measure_task,
        unit_status="done",
    )
    assert units.total_count == 1 and units.items[0].logfile
    unit_log = await in_thread(
        client.get_unit_log, project_id, dataset_id, measure_task, runs[0].id, units.items[0].id
    )
    assert isinstance(unit_log, str)
    page = await in_thread(
        client.query_status_images, project_id, dataset_id, measure_task, statuses=["done"]
    )
    assert page.total_count == 1
    assert page.items[0].attributes["__wftask_dataset_image_status__"] == "done"
    image_log = await in_thread(
        client.get_image_log, project_id, dataset_id, measure_task, page.items[0].zarr_url
    )
    assert image_log == unit_log
    # The plate's image was created by the first task, and counts as done by it.
    assert (
        await in_thread(
            client.non_processed_images, project_id, dataset_id, workflow_id, measure_task
        )
        == []
    )
    assert await in_thread(client.verify_unique_types, project_id, dataset_id, plate_task) == []
    assert await in_thread(client.squeue) == []


async def test_bad_token_and_unreachable_server(jp_http_port, jp_base_url, http_server, in_thread):
    client = FractalClient(f"http://127.0.0.1:{jp_http_port}{jp_base_url}", "wrong-token")
    assert (await in_thread(client.alive))["alive"] is True  # public
    with pytest.raises(FractalAPIError) as refused:
        await in_thread(client.list_projects)
    assert refused.value.status in (401, 403)
    client.close()
    with (
        FractalClient("http://127.0.0.1:9/", "t", timeout=2) as nowhere,
        pytest.raises(FractalConnectionError, match="Cannot reach the Fractal API"),
    ):
        nowhere.list_projects()


# --- discovery -------------------------------------------------------------------------------


async def test_discovery_from_the_runtime_file(
    jp_serverapp, jp_root_dir, jp_runtime_dir, http_server, in_thread, monkeypatch
):
    _forget_jupyterhub(monkeypatch)
    runtime_files = list(Path(jp_runtime_dir).glob("jpserver-*.json"))
    assert len(runtime_files) == 1, runtime_files
    notebook_dir = Path(jp_root_dir) / "notebooks"
    notebook_dir.mkdir()
    monkeypatch.chdir(notebook_dir)

    client = FractalClient(headers={"X-Test-User": "carol"})
    assert client.source == "runtime file"
    assert client.url.endswith(jp_serverapp.base_url)
    assert f":{jp_serverapp.port}/" in client.url
    me = await in_thread(client.get_current_user)
    assert me.username == "carol"
    assert (await in_thread(client.create_project, "found")).name == "found"
    client.close()


def test_discovery_under_jupyterhub(monkeypatch):
    environ = {
        "JUPYTERHUB_API_TOKEN": "hub-token",
        "JUPYTERHUB_SERVICE_URL": "http://0.0.0.0:41234/user/hubalice",
        "JUPYTERHUB_SERVICE_PREFIX": "/user/hubalice/",
        "JUPYTERHUB_USER": "hubalice",
    }
    info = discover(environ)
    assert info.url == "http://127.0.0.1:41234/user/hubalice/"
    assert info.token == "hub-token" and info.source == "JupyterHub"
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    client = FractalClient()
    assert client.api_url == "http://127.0.0.1:41234/user/hubalice/fractal/"
    assert client._transport.http.headers["Authorization"] == "token hub-token"
    client.close()

    # Without a service URL, the running server with the hub's prefix as its base_url.
    running = [
        {"url": "http://localhost:8888/", "base_url": "/", "token": "a", "pid": 1},
        {"url": "http://127.0.0.1:9999/user/hubalice/", "base_url": "/user/hubalice/", "pid": 2},
    ]
    monkeypatch.setattr("fractal_jupyter.client.discovery._running_servers", lambda: running)
    del environ["JUPYTERHUB_SERVICE_URL"]
    info = discover(environ)
    assert info.url == "http://127.0.0.1:9999/user/hubalice/" and info.token == "hub-token"
    assert from_jupyterhub({"JUPYTERHUB_SERVICE_PREFIX": "/user/x/"}) is None


def test_choosing_among_running_servers(tmp_path):
    outer, inner, other = tmp_path, tmp_path / "project", tmp_path.parent / "elsewhere"
    servers = [
        {"url": "http://h:1/", "root_dir": str(outer), "pid": 11},
        {"url": "http://h:2/", "root_dir": str(inner), "pid": 12},
        {"url": "http://h:3/", "root_dir": str(other), "pid": 13},
    ]
    inner.mkdir()
    # The kernel's parent process is its server.
    assert choose_server(servers, outer, parent_pid=13)["pid"] == 13
    # Else the deepest root holding the working directory.
    assert choose_server(servers, inner / "sub", parent_pid=None)["pid"] == 12
    assert choose_server(servers, outer, parent_pid=None)["pid"] == 11
    # Else the only one.
    assert choose_server(servers[2:], outer, parent_pid=None)["pid"] == 13
    with pytest.raises(ServerNotFound, match="none has"):
        choose_server([servers[0], servers[2]], Path("/"), parent_pid=None)
    with pytest.raises(ServerNotFound, match="No running Jupyter server"):
        choose_server([], outer, parent_pid=None)


def _forget_jupyterhub(monkeypatch):
    for name in list(os.environ):
        if name.startswith("JUPYTERHUB_") or name == "JPY_API_TOKEN":
            monkeypatch.delenv(name)


def test_no_server_found_is_a_clear_error(monkeypatch, tmp_path):
    _forget_jupyterhub(monkeypatch)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    with pytest.raises(ServerNotFound, match=r"FractalClient\(url=\.\.\., token=\.\.\.\)"):
        FractalClient()


def test_unix_socket_runtime_file(monkeypatch):
    running = [
        {"url": "http+unix://%2Ftmp%2Fj.sock/lab/", "sock": "/tmp/j.sock", "base_url": "/lab/"}
    ]
    monkeypatch.setattr("fractal_jupyter.client.discovery._running_servers", lambda: running)
    info = discover({}, cwd=Path("/"))
    assert info.url == "http://localhost/lab/" and info.unix_socket == "/tmp/j.sock"


async def test_users_groups_settings_and_tokens(make_client, in_thread, jp_serverapp):
    admin, alice = make_client("admin"), make_client("alice")
    with pytest.raises(FractalAPIError) as refused:
        await in_thread(alice.list_users)
    assert refused.value.status == 403

    bob = await in_thread(admin.register_user, "bob@example.org", username="bob")
    assert bob.email == "bob@example.org" and bob.username == "bob"
    assert "bob" in {u.username for u in await in_thread(admin.list_users)}
    changed = await in_thread(admin.update_user, bob.id, email="robert@example.org")
    assert changed.email == "robert@example.org"
    assert (await in_thread(admin.get_user, bob.id)).email == "robert@example.org"

    group = await in_thread(admin.create_group, "lab", viewer_paths=["/data/lab"])
    assert group.name == "lab" and group.viewer_paths == ["/data/lab"]
    group = await in_thread(admin.update_group, group.id, new_user_ids=[bob.id])
    assert bob.id in (await in_thread(admin.get_group, group.id)).user_ids
    assert "lab" in await in_thread(admin.list_group_names)
    assert "lab" in {g.name for g in await in_thread(admin.list_groups, user_ids=True)}
    with pytest.raises(FractalAPIError) as not_allowed:
        await in_thread(admin.delete_group, group.id)
    assert not_allowed.value.status == 405

    settings = await in_thread(admin.update_user_settings, bob.id, slurm_accounts=["acct"])
    assert settings.slurm_accounts == ["acct"]
    assert (await in_thread(admin.get_user_settings, bob.id)).slurm_accounts == ["acct"]
    as_bob = make_client("bob")
    own = await in_thread(as_bob.update_current_user_settings, slurm_accounts=["acct", "b"])
    assert own.slurm_accounts == ["acct", "b"] and own.cache_dir is None
    assert (await in_thread(as_bob.get_current_user_settings)).slurm_accounts == ["acct", "b"]
    cleared = await in_thread(as_bob.update_current_user_settings, cache_dir=None)
    assert cleared.cache_dir is None and cleared.slurm_accounts == ["acct", "b"]
    assert await in_thread(as_bob.get_viewer_paths) == ["/data/lab"]
    assert (await in_thread(as_bob.update_current_user)).username == "bob"

    # The test identity provider says the token (with X-Test-User) is alice's.
    username = "alice"
    bearer = await in_thread(alice.login, username, jp_serverapp.identity_provider.token)
    assert bearer.token_type == "bearer" and bearer.access_token.count(".") == 2
    with FractalClient(alice.url, bearer.access_token) as with_jwt:
        assert with_jwt._transport.http.headers["Authorization"].startswith("Bearer ")
        assert (await in_thread(with_jwt.get_current_user)).username == username
    with pytest.raises(FractalAPIError) as bad:
        await in_thread(alice.login, username, "not-the-token")
    assert bad.value.status in (400, 401) and "credential" in str(bad.value.detail).lower()
    await in_thread(alice.logout)
    assert "admin_users" in await in_thread(admin.get_server_settings)


async def test_task_collection(fractal_client, in_thread):
    """The pip collection itself is tested in test_task_collection.py (it takes ~20 s)."""
    import fractal_jupyter

    client = fractal_client
    with pytest.raises(FractalAPIError) as refused:
        await in_thread(client.collect_tasks_pip, "relative/path.whl")
    assert refused.value.status == 422 and "must be absolute" in json.dumps(refused.value.detail)

    manifest = {
        "manifest_version": "2",
        "task_list": [
            {"name": "Measure intensity", "executable_parallel": "demo_tasks/measure_intensity.py"}
        ],
    }
    tasks = await in_thread(
        client.collect_tasks_custom,
        {
            "manifest": manifest,
            "python_interpreter": sys.executable,
            "source": "client-demo",
            "package_root": str(Path(fractal_jupyter.__file__).parent),
        },
    )
    assert [t.name for t in tasks] == ["Measure intensity"]
    assert tasks[0].command_parallel.endswith("demo_tasks/measure_intensity.py")

    with pytest.raises(FractalAPIError) as missing:
        await in_thread(client.get_collection_state, 12345, verbose=True)
    assert missing.value.status == 404

    # Who the new task group is shared with reaches the server (the query of both routes).
    with pytest.raises(FractalAPIError) as both:
        await in_thread(client.collect_tasks_pip, "pkg", private=True, user_group_id=1)
    assert both.value.status == 422 and "Cannot set both" in str(both.value.detail)
    with pytest.raises(FractalAPIError) as unknown:
        await in_thread(
            client.collect_tasks_custom,
            {
                "manifest": manifest,
                "python_interpreter": sys.executable,
                "source": "client-demo-2",
                "package_root": str(Path(fractal_jupyter.__file__).parent),
            },
            user_group_id=999999,
        )
    assert unknown.value.status == 404 and "UserGroup 999999" in str(unknown.value.detail)


def test_busy_database_reads_are_retried(monkeypatch):
    import httpx

    monkeypatch.setattr("fractal_jupyter.client.transport.BUSY_RETRY_DELAYS", (0, 0, 0))
    busy = {"detail": "The database is busy or unavailable; nothing was changed, try again."}
    answers: list[httpx.Response] = []
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path} {request.headers['Authorization']}")
        return answers.pop(0)

    client = FractalClient("http://server/base/", "secret")
    client._transport.http = httpx.Client(
        base_url=client.api_url,
        headers=client._transport.http.headers,
        transport=httpx.MockTransport(handler),
    )
    answers[:] = [httpx.Response(503, json=busy), httpx.Response(503, json=busy)]
    answers.append(httpx.Response(200, json={"alive": True, "version": "x"}))
    assert client.alive() == {"alive": True, "version": "x"}
    assert seen == ["GET /base/fractal/api/alive/ token secret"] * 3

    answers[:] = [httpx.Response(503, json=busy)] * 4
    with pytest.raises(FractalAPIError) as still_busy:
        client.list_projects()
    assert still_busy.value.status == 503 and "busy" in still_busy.value.detail
    assert answers == []

    seen.clear()
    answers[:] = [httpx.Response(503, json=busy)]
    with pytest.raises(FractalAPIError):
        client.create_project("p")  # a write is never repeated
    assert seen == ["POST /base/fractal/api/v2/project/ token secret"]
    client.close()
