"""Task collection through HTTP: pip (a tiny wheel built here, PyPI failures), custom."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fractal_jupyter.db.models import CollectionState
from tests.conftest import fractal_state_of
from tests.support.task_packages import build_task_wheel, mock_manifest

PY = f"{sys.version_info.major}.{sys.version_info.minor}"
COLLECT = "api/v2/task/collect/"


def collector_of(jp_serverapp: Any) -> Any:
    return fractal_state_of(jp_serverapp).collector


async def wait_for_collection(
    api: Any, state_id: int, timeout: float = 300.0
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The final state, and the states seen while it ran (verbose, so with the log)."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        status, state = await api("GET", f"{COLLECT}{state_id}/", params={"verbose": "true"})
        assert status == 200, state
        if state["data"]["status"] in ("OK", "fail"):
            return state, seen
        seen.append(state)
        if time.monotonic() > deadline:
            raise AssertionError(f"collection {state_id} still running after {timeout} s")
        await asyncio.sleep(0.1)


def leftovers(tasks_dir: Path) -> list[str]:
    """What the collections left under <tasks_dir>/.fractal (the staging area is emptied)."""
    public = tasks_dir / ".fractal"
    if not public.exists():
        return []
    found = [path.name for path in public.iterdir() if path.name != ".staging"]
    staging = public / ".staging"
    if staging.exists():
        found += [f".staging/{path.name}" for path in staging.iterdir()]
    return sorted(found)


async def test_pip_collection_of_a_local_wheel(api, jp_serverapp, tmp_path):
    # An administrator's collection: tasks without owner, as in 2.6.4 (a user's own collection
    # is theirs: tests/test_task_trust.py).
    wheel = build_task_wheel(tmp_path / "wheels", manifest=mock_manifest())
    status, state = await api("POST", COLLECT + "pip/", {"package": str(wheel)}, user="admin")
    assert status == 201, state
    assert state["data"]["status"] == "pending"
    assert state["data"]["package"] == str(wheel)
    assert state["data"]["venv_path"] == ".fractal/fractal-tasks-mock0.1.0"
    assert state["data"]["info"] == (
        f"Collecting tasks in the background. GET /task/collect/{state['id']} to query "
        "collection status"
    )

    final, seen = await wait_for_collection(api, state["id"])
    assert final["data"]["status"] == "OK", final["data"].get("log")
    # The log was readable while the collection ran, and it grew.
    running = [s for s in seen if s["data"]["status"] in ("installing", "collecting")]
    assert running, "no state seen while installing"
    logs = [s["data"]["log"] for s in running if s["data"].get("log")]
    assert logs and "START collection" in logs[0]
    assert len(logs[-1]) > len(logs[0]) or len(final["data"]["log"]) > len(logs[0])
    assert final["data"]["log"].startswith(logs[0])
    assert "venv" in final["data"]["log"] and "collection OK" in final["data"]["log"]
    assert "fractal-tasks-mock @ file://" in final["data"]["freeze"]

    tasks_dir = Path(collector_of(jp_serverapp).tasks_dir)
    venv = tasks_dir / ".fractal" / "fractal-tasks-mock0.1.0"
    python = venv / "venv" / "bin" / "python"
    root = venv / "venv" / "lib" / f"python{PY}" / "site-packages" / "fractal_tasks_mock"
    by_name = {task["name"]: task for task in final["data"]["task_list"]}
    assert list(by_name) == ["Create Mock Plate", "Project Mock", "Measure Mock"]
    create = by_name["Create Mock Plate"]
    assert create["source"] == f"pip_local:fractal_tasks_mock:0.1.0::py{PY}:create_mock_plate"
    assert create["type"] == "converter_non_parallel"
    assert create["command_non_parallel"] == f"{python} {root}/create.py"
    assert create["command_parallel"] is None
    assert create["owner"] is None and create["version"] == "0.1.0"
    assert create["meta_non_parallel"] == {"cpus_per_task": 1}
    assert create["args_schema_version"] == "pydantic_v2"
    assert (create["category"], create["modality"], create["tags"]) == (
        "Conversion",
        "HCS",
        ["mock", "plate"],
    )
    assert create["docs_info"] == "Makes a plate."
    assert create["docs_link"] == "https://example.org/docs"
    assert create["authors"] == "Test Authors"
    project = by_name["Project Mock"]
    assert project["type"] == "compound"
    assert project["command_parallel"] == f"{python} {root}/tasks/project.py"
    assert project["input_types"] == {"is_3D": True}
    assert project["output_types"] == {"is_3D": False}
    measure = by_name["Measure Mock"]
    assert measure["type"] == "parallel" and measure["authors"] == "Someone Else"
    assert measure["meta_parallel"] == {"mem": 1000} and measure["meta_non_parallel"] == {}

    # The catalogue has them; the files of the venv folder are 2.6.4's.
    _, catalogue = await api("GET", "api/v2/task/")
    assert [t["source"] for t in catalogue] == [t["source"] for t in final["data"]["task_list"]]
    assert sorted(p.name for p in venv.iterdir()) == [
        "collection.json",
        "collection.log",
        "collection_freeze.txt",
        "venv",
    ]
    written = json.loads((venv / "collection.json").read_text())
    assert written["task_list"] == final["data"]["task_list"]
    assert leftovers(tasks_dir) == ["fractal-tasks-mock0.1.0"]

    # A collected task runs: its command is a real interpreter and file.
    out = tmp_path / "out.json"
    args = tmp_path / "args.json"
    args.write_text("{}")
    process = await asyncio.create_subprocess_exec(
        *create["command_non_parallel"].split(), "--args-json", str(args), "--out-json", str(out)
    )
    assert await process.wait() == 0 and json.loads(out.read_text()) == {}

    # The same package and version again: 422, nothing new.
    status, answer = await api("POST", COLLECT + "pip/", {"package": str(wheel)})
    assert status == 422, answer
    assert "fractal-tasks-mock 0.1.0" in answer["detail"]
    assert "already" in answer["detail"]
    _, catalogue_after = await api("GET", "api/v2/task/")
    assert len(catalogue_after) == 3

    # Pip-collected tasks have no owner: only an admin may change them.
    status, answer = await api("PATCH", f"api/v2/task/{create['id']}/", {"name": "x"})
    assert status == 403, answer


async def test_failed_collections_leave_nothing_behind(api, jp_serverapp, tmp_path):
    wheels = tmp_path / "wheels"
    broken_manifest = mock_manifest()
    broken_manifest["task_list"][0].pop("executable_non_parallel")
    missing_file = mock_manifest()
    missing_file["task_list"][2]["executable_parallel"] = "tasks/nowhere.py"
    cases = {
        "no manifest": (
            {"package": str(build_task_wheel(wheels / "a", name="no-manifest", manifest=None))},
            "does not include __FRACTAL_MANIFEST__.json",
        ),
        "manifest not JSON": (
            {"package": str(build_task_wheel(wheels / "b", name="bad-json", manifest="{oops"))},
            "the manifest is not valid JSON",
        ),
        "manifest version 1": (
            {
                "package": str(
                    build_task_wheel(
                        wheels / "c", name="old-manifest", manifest={"manifest_version": "1"}
                    )
                )
            },
            "manifest version '1' not supported",
        ),
        "manifest invalid": (
            {"package": str(build_task_wheel(wheels / "d", name="bad", manifest=broken_manifest))},
            "cannot be both missing",
        ),
        "executable missing (after the install)": (
            {"package": str(build_task_wheel(wheels / "e", name="half", manifest=missing_file))},
            "pointing to missing file",
        ),
        "no such package": (
            {"package": "fractal-jupyter-no-such-package-3f9a1c"},
            "No matching distribution found for fractal-jupyter-no-such-package-3f9a1c",
        ),
        "no such version": (
            {"package": "fractal-tasks-core", "package_version": "0.0.1.dev424242"},
            "No matching distribution found for fractal-tasks-core==0.0.1.dev424242",
        ),
    }
    started = {}
    for label, (body, _) in cases.items():
        status, state = await api("POST", COLLECT + "pip/", body)
        assert status == 201, (label, state)
        started[label] = state["id"]
    for label, (_, reason) in cases.items():
        final, _ = await wait_for_collection(api, started[label])
        data = final["data"]
        assert data["status"] == "fail", (label, data)
        assert reason in data["info"], (label, data["info"])
        assert data["info"].startswith("Original error: ")
        assert reason in data["log"] and "task collection failed" in data["log"], label
        assert "task_list" not in data
    assert (
        "removing"
        in (await wait_for_collection(api, started["executable missing (after the install)"]))[0][
            "data"
        ]["log"]
    )

    _, catalogue = await api("GET", "api/v2/task/")
    assert catalogue == []
    assert leftovers(Path(collector_of(jp_serverapp).tasks_dir)) == []


async def test_pip_requests_refused_at_once(api, tmp_path):
    wheel = str(build_task_wheel(tmp_path, manifest=mock_manifest()))
    cases = [
        ({"package": "relative/path.whl"}, "must be absolute"),
        ({"package": "/abs/path.tar.gz"}, "must be a wheel file"),
        ({"package": wheel, "package_version": "1.0"}, "Cannot provide package version"),
        ({"package": "pkg.whl"}, "not the absolute path to a wheel file"),
        ({"package": "--index-url=evil"}, "not a valid Python package name"),
        ({"package": "pkg", "package_version": "--pre"}, "not a valid package version"),
        ({"package": "pkg", "package_extras": "a,--b"}, "not a valid Python package name"),
        ({"package": "pkg", "pinned_package_versions": {" ": "1"}}, "keys must not be empty"),
        ({"package": "pkg", "python_version": "three"}, "not a Python version"),
        ({"package": ""}, "at least 1 character"),
    ]
    for body, message in cases:
        status, answer = await api("POST", COLLECT + "pip/", body)
        assert status == 422, (body, answer)
        assert message in json.dumps(answer), (body, answer)

    status, answer = await api(
        "POST", COLLECT + "pip/", {"package": "pkg", "python_version": "3.2"}
    )
    assert status == 422
    assert answer["detail"].startswith(
        "Python version 3.2 is not available for Fractal task collection"
    )
    status, answer = await api("GET", f"{COLLECT}12345/")
    assert status == 404 and answer["detail"] == "No task collection info with id=12345"


async def test_a_collection_whose_server_died_fails_and_is_cleaned(
    api, jp_serverapp, jp_asyncio_loop
):
    collector = collector_of(jp_serverapp)
    await api("GET", "api/v2/task/")  # the schema is in place
    venv = collector.tasks_dir / ".fractal" / "ghost1.0"
    (venv / "venv").mkdir(parents=True)
    host = collector.runner.split(":")[0]
    ghost = CollectionState(
        id=1,
        data={"status": "installing", "package": "ghost", "venv_path": ".fractal/ghost1.0"},
        runner=f"{host}:999999999",
        timestamp=datetime.now(UTC),
    )
    staging = collector.staging_dir(ghost)
    staging.mkdir(parents=True)
    (staging / "collection.log").write_text("half a log\n")
    async with collector.database.session(write=True) as session:
        session.add(ghost)
    status, state = await api("GET", f"{COLLECT}1/")
    assert status == 200, state
    assert state["data"]["status"] == "fail"
    assert "stopped before it ended" in state["data"]["info"]
    assert state["data"]["log"].startswith("half a log")
    assert not venv.exists() and not staging.exists()


def custom_manifest() -> dict[str, Any]:
    """The demo tasks of fractal_jupyter, as a manifest relative to the package root."""
    return {
        "manifest_version": "2",
        "has_args_schemas": False,
        "task_list": [
            {
                "name": "Create demo plate",
                "type": "converter_non_parallel",
                "executable_non_parallel": "demo_tasks/create_plate.py",
                "category": "Conversion",
                "tags": ["demo"],
            },
            {
                "name": "Measure intensity",
                "executable_parallel": "demo_tasks/measure_intensity.py",
            },
        ],
    }


async def test_custom_collection(api, tmp_path):
    import fractal_jupyter

    root = Path(fractal_jupyter.__file__).parent
    body = {
        "manifest": custom_manifest(),
        "python_interpreter": sys.executable,
        "source": "my-demo",
        "package_name": "fractal_jupyter",
        "version": "1.2",
    }
    status, tasks = await api("POST", COLLECT + "custom/", body)
    assert status == 201, tasks
    assert [t["source"] for t in tasks] == [
        "alice:my-demo:create_demo_plate",
        "alice:my-demo:measure_intensity",
    ]
    assert tasks[0]["command_non_parallel"] == (
        f"{sys.executable} {root}/demo_tasks/create_plate.py"
    )
    assert tasks[0]["type"] == "converter_non_parallel" and tasks[0]["tags"] == ["demo"]
    assert tasks[1]["type"] == "parallel" and tasks[1]["version"] == "1.2"
    assert all(t["owner"] == "alice" for t in tasks)
    # Custom-collected tasks belong to the caller.
    status, renamed = await api("PATCH", f"api/v2/task/{tasks[1]['id']}/", {"name": "M"})
    assert status == 200 and renamed["name"] == "M"

    status, answer = await api("POST", COLLECT + "custom/", body)
    assert status == 422
    assert answer["detail"] == (
        f"TaskV2 with ID {tasks[0]['id']} already has source='alice:my-demo:create_demo_plate'\n"
        f"TaskV2 with ID {tasks[1]['id']} already has source='alice:my-demo:measure_intensity'"
    )
    # Another user, the same label: other sources.
    status, bobs = await api(
        "POST",
        COLLECT + "custom/",
        {**body, "package_name": None, "package_root": str(root)},
        user="bob",
    )
    assert status == 201, bobs
    assert bobs[0]["source"] == "bob:my-demo:create_demo_plate"

    refused = [
        ({**body, "python_interpreter": "/no/python"}, "doesn't exist or is not a file"),
        (
            {**body, "package_name": None, "package_root": str(tmp_path / "none")},
            "doesn't exist or is not a directory",
        ),
        ({**body, "package_name": "no_such_module_x"}, "Cannot determine 'package_root'"),
        ({**body, "package_root": str(root)}, "One and only one of"),
        ({**body, "python_interpreter": "python"}, "is not an absolute path"),
        ({**body, "manifest": {"manifest_version": "1", "task_list": []}}, "manifest_version"),
    ]
    for request, message in refused:
        status, answer = await api("POST", COLLECT + "custom/", request)
        assert status == 422, (request, answer)
        assert message in json.dumps(answer), (message, answer)
    _, catalogue = await api("GET", "api/v2/task/")
    assert len(catalogue) == 4


async def test_collections_choose_their_user_group(api, jp_serverapp, tmp_path):
    """fractal-server 2.7+'s `private` and `user_group_id` query parameters of both collection
    routes: a private group, the given group (its members only), else the default rule (an
    administrator's shared with "All", anyone else's private); refusals create nothing."""
    import fractal_jupyter

    _, me = await api("GET", "auth/current-user/")
    _, lab = await api("POST", "auth/group/", {"name": "lab"}, user="admin")
    _, other = await api("POST", "auth/group/", {"name": "other"}, user="admin")
    status, _ = await api(
        "PATCH", f"auth/group/{lab['id']}/", {"new_user_ids": [me["id"]]}, user="admin"
    )
    assert status == 200
    _, groups = await api("GET", "auth/group/", user="admin")
    all_id = next(group["id"] for group in groups if group["name"] == "All")
    custom = {
        "manifest": custom_manifest(),
        "python_interpreter": sys.executable,
        "package_root": str(Path(fractal_jupyter.__file__).parent),
        "version": "1.0",
    }

    async def user_group_of(pkg_name: str) -> Any:
        status, page = await api(
            "GET", "admin/v2/task-group/", user="admin", params={"pkg_name": pkg_name}
        )
        assert status == 200 and len(page["items"]) == 1, page
        return page["items"][0]["user_group_id"]

    cases = [
        ("alice", {}, None),
        ("alice", {"private": "true"}, None),
        ("alice", {"user_group_id": str(lab["id"])}, lab["id"]),
        ("admin", {}, all_id),
        ("admin", {"private": "true"}, None),
    ]
    for number, (user, params, expected) in enumerate(cases):
        status, tasks = await api(
            "POST",
            COLLECT + "custom/",
            {**custom, "source": f"shared-{number}"},
            user=user,
            params=params,
        )
        assert status == 201, (user, params, tasks)
        assert await user_group_of(f"shared-{number}") == expected, (user, params)

    _, catalogue_before = await api("GET", "api/v2/task/")
    _, activities_before = await api("GET", "api/v2/task-group/activity/")
    wheel = str(build_task_wheel(tmp_path, manifest=mock_manifest()))
    refusals = [
        ({"user_group_id": str(other["id"])}, 403, f"User {me['id']} does not belong to UserGroup"),
        ({"user_group_id": "999999"}, 404, "UserGroup 999999 not found"),
        (
            {"user_group_id": str(lab["id"]), "private": "true"},
            422,
            f"Cannot set both user_group_id={lab['id']} and private=True",
        ),
        ({"private": "maybe"}, 422, "private"),
    ]
    for params, code, message in refusals:
        for path, body in (
            ("custom/", {**custom, "source": "refused"}),
            ("pip/", {"package": wheel}),
        ):
            status, answer = await api("POST", COLLECT + path, body, params=params)
            assert status == code, (path, params, answer)
            assert message in json.dumps(answer), (path, params, answer)
    # Nothing was made: no task, no collection, no activity, no folder.
    _, catalogue = await api("GET", "api/v2/task/")
    assert catalogue == catalogue_before
    _, activities = await api("GET", "api/v2/task-group/activity/")
    assert activities == activities_before
    assert leftovers(Path(collector_of(jp_serverapp).tasks_dir)) == []

    # A pip collection into the caller's user group: its task group has it.
    status, state = await api(
        "POST", COLLECT + "pip/", {"package": wheel}, params={"user_group_id": str(lab["id"])}
    )
    assert status == 201, state
    final, _ = await wait_for_collection(api, state["id"])
    assert final["data"]["status"] == "OK", final["data"].get("log")
    assert await user_group_of("fractal-tasks-mock") == lab["id"]
