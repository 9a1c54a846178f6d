"""`POST api/v2/task/collect/pip/` as a form (fractal-client 2.24's `task collect`): a wheel
uploaded as the `file` part, or a PyPI name; refusals write nothing."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest

from fractal_jupyter.client import FractalAPIError
from tests.support.task_packages import build_task_wheel, mock_manifest
from tests.test_task_collection import COLLECT, collector_of
from tests.test_task_group import GROUPS, wait_for_activity

LIMIT = 20_000


@pytest.fixture
def fractal_config(fractal_config: dict[str, Any]) -> dict[str, Any]:
    return {**fractal_config, "max_wheel_upload_bytes": LIMIT}


def multipart(
    fields: dict[str, str], file: tuple[str, bytes] | None = None
) -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body, as httpx sends fractal-client 2.24's."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
            f"{value}\r\n".encode()
        )
    if file is not None:
        filename, content = file
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{filename}"\r\nContent-Type: application/zip\r\n\r\n'.encode()
            + content
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


async def post_form(
    api: Any, fields: dict[str, str], file: tuple[str, bytes] | None = None, user: str = "admin"
) -> tuple[int, Any]:
    body, headers = multipart(fields, file)
    return await api("POST", COLLECT + "pip/", raw_body=body, headers=headers, user=user)


def public_dir(jp_serverapp: Any) -> Path:
    return Path(collector_of(jp_serverapp).tasks_dir) / ".fractal"


async def test_wheel_upload_is_collected(api: Any, jp_serverapp: Any, tmp_path: Path) -> None:
    wheel = build_task_wheel(tmp_path, manifest=mock_manifest())
    assert wheel.stat().st_size < LIMIT
    status, activity = await post_form(api, {}, (wheel.name, wheel.read_bytes()))
    assert status == 202, activity
    assert {k: activity[k] for k in ("pkg_name", "version", "status", "action")} == {
        "pkg_name": "fractal-tasks-mock",
        "version": "0.1.0",
        "status": "pending",
        "action": "collect",
    }
    # The answer is the collection's activity, which fractal-client 2.24 follows.
    final, _ = await wait_for_activity(api, activity["id"], user="admin")
    assert final["status"] == "OK", final["log"]
    stored = list((public_dir(jp_serverapp) / ".wheels").glob("*/" + wheel.name))
    assert len(stored) == 1 and stored[0].read_bytes() == wheel.read_bytes()
    status, group = await api("GET", f"{GROUPS}{final['taskgroupv2_id']}/", user="admin")
    assert status == 200, group
    freeze = (Path(group["path"]) / "collection_freeze.txt").read_text()
    assert f"fractal-tasks-mock @ file://{stored[0]}" in freeze
    _, tasks = await api("GET", "api/v2/task/")
    assert len(tasks) == len(mock_manifest()["task_list"])
    assert all(t["source"].startswith("pip_local:fractal_tasks_mock:0.1.0:") for t in tasks)
    # The same package again: refused (collected already), nothing more written.
    status, answer = await post_form(api, {}, (wheel.name, wheel.read_bytes()))
    assert status == 422 and "collected already" in answer["detail"]


async def test_pins_before_and_after_the_package(
    api: Any, jp_serverapp: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fractal-server 2.9+'s `pinned_package_versions_pre` are installed before the package,
    `_post` (2.6.4's `pinned_package_versions`) after it; from wheels here (no index)."""
    links = tmp_path / "links"
    for version in ("1.0", "2.0"):
        build_task_wheel(links, name="pinned-dep", version=version, manifest=None, files=())
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    wheel = build_task_wheel(tmp_path / "form", manifest=mock_manifest())
    pins = {
        "pinned_package_versions_pre": json.dumps({"pinned-dep": "1.0"}),
        "pinned_package_versions_post": json.dumps({"pinned-dep": "2.0"}),
    }
    status, activity = await post_form(api, pins, (wheel.name, wheel.read_bytes()))
    assert status == 202, activity
    # The JSON request (2.6.4's route) takes `pinned_package_versions_pre` too.
    other = build_task_wheel(
        tmp_path / "json", name="fractal-tasks-other", manifest=mock_manifest()
    )
    body = {"package": str(other), "pinned_package_versions_pre": {"pinned-dep": "1.0"}}
    status, state = await api("POST", COLLECT + "pip/", body, user="admin")
    assert status == 201, state

    final, _ = await wait_for_activity(api, activity["id"], user="admin")
    assert final["status"] == "OK", final["log"]
    log = final["log"]
    before = log.index("installing the pinned versions before the package: pinned-dep==1.0")
    package = log.index(f"install {public_dir(jp_serverapp)}/.wheels/")
    after = log.index("pinned-dep 1.0 is installed; the pinned version is 2.0")
    assert before < package < after, log
    status, group = await api("GET", f"{GROUPS}{final['taskgroupv2_id']}/", user="admin")
    assert status == 200, group
    assert group["pinned_package_versions_post"] == {"pinned-dep": "2.0"}
    assert group["pinned_package_versions_pre"] == {"pinned-dep": "1.0"}
    folder = Path(group["path"])
    assert "pinned-dep==2.0" in (folder / "collection_freeze.txt").read_text()
    written = json.loads((folder / "collection.json").read_text())["install_request"]
    assert written["pinned_package_versions_pre"] == {"pinned-dep": "1.0"}
    assert written["pinned_package_versions"] == {"pinned-dep": "2.0"}

    for _ in range(3000):
        status, done = await api("GET", f"{COLLECT}{state['id']}/", user="admin")
        if done["data"]["status"] in ("OK", "fail"):
            break
        await asyncio.sleep(0.1)
    assert done["data"]["status"] == "OK", done["data"]
    assert "pinned-dep==1.0" in done["data"]["freeze"]
    # Both groups keep their pins (migration 0009's column): every read shows them.
    _, listed = await api("GET", GROUPS, user="admin")
    shown = {
        name: [(g["pinned_package_versions_pre"], g["pinned_package_versions_post"]) for g in gs]
        for name, gs in listed
    }
    assert shown["fractal-tasks-mock"] == [({"pinned-dep": "1.0"}, {"pinned-dep": "2.0"})]
    assert shown["fractal-tasks-other"] == [({"pinned-dep": "1.0"}, {})]
    _, admin_read = await api("GET", f"admin/v2/task-group/{group['id']}/", user="admin")
    assert admin_read["pinned_package_versions_pre"] == {"pinned-dep": "1.0"}


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


async def test_refused_uploads_write_nothing(api: Any, jp_serverapp: Any, tmp_path: Path) -> None:
    wheel = build_task_wheel(tmp_path, manifest=mock_manifest())
    good = (wheel.name, wheel.read_bytes())
    no_metadata = zip_bytes({"pkg/__init__.py": b""})
    cases: list[tuple[dict[str, str], tuple[str, bytes] | None, int, str]] = [
        ({}, ("x-1.0-py3-none-any.whl", b"not a zip"), 422, "not a zip archive"),
        ({}, ("x-1.0-py3-none-any.whl", no_metadata), 422, "no <name>.dist-info/METADATA"),
        ({}, ("x-1.0.zip", no_metadata), 422, "not named like a wheel"),
        ({}, ("../x-1.0-py3-none-any.whl", good[1]), 422, "not named like a wheel"),
        ({}, ("x.whl", good[1]), 422, "not a wheel file name"),
        ({"package": "fractal-tasks-core"}, good, 422, "not both"),
        ({}, None, 422, "needs `package`"),
        ({"package_version": "1.0"}, good, 422, "Cannot provide package version"),
        ({"pinned_package_versions_pre": '{"a": 1}'}, good, 422, "not a JSON object"),
        ({"pinned_package_versions_post": "[1]"}, good, 422, "not a JSON object"),
        ({"python_version": "2.7"}, good, 422, "not a Python version"),
        ({"file": "text"}, None, 422, "must be a file part"),
        ({}, ("big-1.0-py3-none-any.whl", b"x" * LIMIT), 413, "max_wheel_upload_bytes"),
    ]
    for fields, file, expected, words in cases:
        status, answer = await post_form(api, fields, file)
        assert status == expected, (fields, file and file[0], answer)
        assert words in json.dumps(answer["detail"]), (fields, answer)
    assert not (public_dir(jp_serverapp) / ".wheels").exists()
    status, _ = await api("GET", COLLECT + "1/")
    assert status == 404  # no collection was started


async def test_form_with_a_package_name(api: Any) -> None:
    """fractal-client 2.24 sends `task collect <name>` url-encoded (no file)."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    status, answer = await api(
        "POST", COLLECT + "pip/", raw_body=b"package=--index-url", headers=headers, user="admin"
    )
    assert status == 422 and "not a valid Python package name" in answer["detail"][0]["msg"]
    # A JSON body sent url-encoded (curl -d) is still read as JSON.
    status, answer = await api(
        "POST",
        COLLECT + "pip/",
        raw_body=b'{"package": "--index-url"}',
        headers=headers,
        user="admin",
    )
    assert status == 422 and "not a valid Python package name" in answer["detail"][0]["msg"]
    status, answer = await api(
        "POST", COLLECT + "pip/", raw_body=b"package_version=1", headers=headers, user="admin"
    )
    assert status == 422 and "needs `package`" in answer["detail"]


async def test_malformed_multipart(api: Any) -> None:
    """A multipart body that is not one (found by tests/test_fuzz.py): a 422, not a 500."""
    boundary = "55a93bc43a0d82eec55c13a62455a38c"
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    for raw in (f"--{boundary}\r\n[]--{boundary}--\r\n".encode(), b"", b"junk"):
        status, answer = await api(
            "POST", COLLECT + "pip/", raw_body=raw, headers=headers, user="admin"
        )
        assert status == 422, (raw, answer)
        detail = json.dumps(answer["detail"])
        assert "Not a readable form" in detail or "needs `package`" in detail, (raw, detail)
    raw = f"--{boundary}\r\n[]--{boundary}--\r\n".encode()
    _, answer = await api("POST", COLLECT + "pip/", raw_body=raw, headers=headers, user="admin")
    assert "Not a readable form: Invalid multipart/form-data" in answer["detail"][0]["msg"]


async def test_client_uploads_a_wheel(
    fractal_client: Any, make_client: Any, in_thread: Any, api: Any, tmp_path: Path
) -> None:
    wheel = build_task_wheel(tmp_path, manifest=mock_manifest())
    admin = make_client("admin")
    activity = await in_thread(admin.upload_task_wheel, wheel, pinned_package_versions={})
    assert (activity.pkg_name, activity.version, activity.status) == (
        "fractal-tasks-mock",
        "0.1.0",
        "pending",
    )
    final, _ = await wait_for_activity(api, activity.id, user="admin")
    assert final["status"] == "OK", final["log"]
    not_a_wheel = tmp_path / "x-1.0-py3-none-any.whl"
    not_a_wheel.write_bytes(b"text")
    with pytest.raises(FractalAPIError) as refused:
        await in_thread(fractal_client.upload_task_wheel, not_a_wheel)
    assert refused.value.status == 422 and "not a zip archive" in refused.value.detail
    with pytest.raises(FractalAPIError) as unknown:
        other = build_task_wheel(tmp_path / "other", name="other-tasks", manifest=mock_manifest())
        await in_thread(fractal_client.upload_task_wheel, other, user_group_id=999999)
    assert unknown.value.status == 404 and "UserGroup 999999" in str(unknown.value.detail)
