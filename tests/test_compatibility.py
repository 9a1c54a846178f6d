"""The same scripted requests against fractal-server 2.6.4 and against us, answers compared.

The peer is pip-installed into `.peer/venv` on first use (about a minute). Deliberate
differences are listed in `DIFFERENCES`, each with the section of docs/compatibility.md that
explains it; every other answer must match in status code and (normalised) body.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support.peer import PeerServer, ensure_peer_venv


@dataclass
class Step:
    name: str
    method: str
    path: str
    body: Any = None
    params: dict[str, str] = field(default_factory=dict)
    user: str = "alice"
    save: str | None = None  # remember the answer's "id" under this name


# name -> (what differs, section of docs/compatibility.md)
DIFFERENCES: dict[str, str] = {
    "image outside zarr_dir by string prefix": "Paths are compared as paths",
    "import without images": "Import without images",
    "name of wrong type": "Strict types",
    "types flag of wrong type": "Strict types",
    "patch dataset zarr_dir null": "null in dataset PATCH",
}

STEPS = [
    Step("list no projects", "GET", "api/v2/project/"),
    Step("create project", "POST", "api/v2/project/", {"name": "p1"}, save="p1"),
    Step("create same name", "POST", "api/v2/project/", {"name": "p1"}),
    Step("create extra field", "POST", "api/v2/project/", {"name": "p2", "x": 1}),
    Step("create empty name", "POST", "api/v2/project/", {"name": "  "}),
    Step("get project", "GET", "api/v2/project/{p1}/"),
    Step("get unknown project", "GET", "api/v2/project/9999/"),
    Step("get project non-int", "GET", "api/v2/project/abc/"),
    Step("rename to same name", "PATCH", "api/v2/project/{p1}/", {"name": "p1"}),
    Step("rename", "PATCH", "api/v2/project/{p1}/", {"name": "p1b", "ignored": 1}),
    Step("bob reads project", "GET", "api/v2/project/{p1}/", user="bob"),
    Step("bob lists", "GET", "api/v2/project/", user="bob"),
    Step(
        "create dataset",
        "POST",
        "api/v2/project/{p1}/dataset/",
        {"name": "d1", "zarr_dir": "/tmp/z//a/", "filters": {"attributes": {}, "types": {}}},
        save="d1",
    ),
    Step(
        "dataset relative", "POST", "api/v2/project/{p1}/dataset/", {"name": "x", "zarr_dir": "a"}
    ),
    Step("dataset s3", "POST", "api/v2/project/{p1}/dataset/", {"name": "x", "zarr_dir": "s3://b"}),
    Step(
        "dataset extra",
        "POST",
        "api/v2/project/{p1}/dataset/",
        {"name": "x", "zarr_dir": "/a", "extra": 1},
    ),
    Step("get dataset", "GET", "api/v2/project/{p1}/dataset/{d1}/"),
    Step("get unknown dataset", "GET", "api/v2/project/{p1}/dataset/9999/"),
    Step("list datasets", "GET", "api/v2/project/{p1}/dataset/"),
    Step(
        "list datasets no history",
        "GET",
        "api/v2/project/{p1}/dataset/",
        params={"history": "false"},
    ),
    Step("all my datasets", "GET", "api/v2/dataset/"),
    Step(
        "add image",
        "POST",
        "api/v2/project/{p1}/dataset/{d1}/images/",
        {
            "zarr_url": "/tmp/z/a/img0/",
            "attributes": {"well": "A01", "n": 1},
            "types": {"is_3D": True},
        },
    ),
    Step(
        "add image 2",
        "POST",
        "api/v2/project/{p1}/dataset/{d1}/images/",
        {
            "zarr_url": "/tmp/z/a/img1",
            "origin": "/tmp/z/a/img0",
            "attributes": {"well": "A02", "n": 1.0},
            "types": {"is_3D": False},
        },
    ),
    Step(
        "add image 3",
        "POST",
        "api/v2/project/{p1}/dataset/{d1}/images/",
        {"zarr_url": "/tmp/z/a/img2", "attributes": {"well": "A02", "n": "1"}},
    ),
    Step(
        "add duplicate image",
        "POST",
        "api/v2/project/{p1}/dataset/{d1}/images/",
        {"zarr_url": "/tmp/z/a/img0"},
    ),
    Step(
        "image equal to zarr_dir",
        "POST",
        "api/v2/project/{p1}/dataset/{d1}/images/",
        {"zarr_url": "/tmp/z/a"},
    ),
    Step(
        "image outside zarr_dir",
        "POST",
        "api/v2/project/{p1}/dataset/{d1}/images/",
        {"zarr_url": "/elsewhere/img"},
    ),
    Step(
        "image null attribute",
        "POST",
        "api/v2/project/{p1}/dataset/{d1}/images/",
        {"zarr_url": "/tmp/z/a/x", "attributes": {"k": None}},
    ),
    Step("query all", "POST", "api/v2/project/{p1}/dataset/{d1}/images/query/"),
    Step(
        "query n=1",
        "POST",
        "api/v2/project/{p1}/dataset/{d1}/images/query/",
        {"filters": {"attributes": {"n": 1}}},
    ),
    Step(
        "query n='1'",
        "POST",
        "api/v2/project/{p1}/dataset/{d1}/images/query/",
        {"filters": {"attributes": {"n": "1"}}},
    ),
    Step(
        "query n=True",
        "POST",
        "api/v2/project/{p1}/dataset/{d1}/images/query/",
        {"filters": {"attributes": {"n": True}}},
    ),
    Step(
        "query not 3D",
        "POST",
        "api/v2/project/{p1}/dataset/{d1}/images/query/",
        {"filters": {"types": {"is_3D": False}}},
    ),
    Step(
        "query null attribute filter",
        "POST",
        "api/v2/project/{p1}/dataset/{d1}/images/query/",
        {"filters": {"attributes": {"well": None}}},
    ),
    Step(
        "query zarr_url",
        "POST",
        "api/v2/project/{p1}/dataset/{d1}/images/query/",
        {"zarr_url": "/tmp/z/a/img1"},
    ),
    Step(
        "query page 2",
        "POST",
        "api/v2/project/{p1}/dataset/{d1}/images/query/",
        params={"page": "2", "page_size": "2"},
    ),
    Step(
        "query page past end",
        "POST",
        "api/v2/project/{p1}/dataset/{d1}/images/query/",
        params={"page": "7", "page_size": "2"},
    ),
    Step(
        "query page 0",
        "POST",
        "api/v2/project/{p1}/dataset/{d1}/images/query/",
        params={"page": "0"},
    ),
    Step(
        "query page_size 0",
        "POST",
        "api/v2/project/{p1}/dataset/{d1}/images/query/",
        params={"page_size": "0"},
    ),
    Step(
        "query empty result",
        "POST",
        "api/v2/project/{p1}/dataset/{d1}/images/query/",
        {"zarr_url": "/nope"},
        params={"page_size": "5", "page": "3"},
    ),
    Step(
        "patch image",
        "PATCH",
        "api/v2/project/{p1}/dataset/{d1}/images/",
        {"zarr_url": "/tmp/z/a/img1", "attributes": {"well": "B01"}},
    ),
    Step(
        "patch missing image",
        "PATCH",
        "api/v2/project/{p1}/dataset/{d1}/images/",
        {"zarr_url": "/tmp/z/a/none", "types": {}},
    ),
    Step(
        "query after patch",
        "POST",
        "api/v2/project/{p1}/dataset/{d1}/images/query/",
        {"filters": {"attributes": {"well": "B01"}}},
    ),
    Step(
        "patch dataset zarr_dir with images",
        "PATCH",
        "api/v2/project/{p1}/dataset/{d1}/",
        {"zarr_dir": "/other"},
    ),
    Step(
        "patch dataset zarr_dir null",
        "PATCH",
        "api/v2/project/{p1}/dataset/{d1}/",
        {"zarr_dir": None},
    ),
    Step(
        "patch dataset filters",
        "PATCH",
        "api/v2/project/{p1}/dataset/{d1}/",
        {"name": "d1b", "filters": {"attributes": {"well": "A01"}, "types": {}}},
    ),
    Step(
        "query with dataset filters",
        "POST",
        "api/v2/project/{p1}/dataset/{d1}/images/query/",
        params={"use_dataset_filters": "true"},
    ),
    Step("export", "GET", "api/v2/project/{p1}/dataset/{d1}/export/"),
    Step(
        "delete image",
        "DELETE",
        "api/v2/project/{p1}/dataset/{d1}/images/",
        params={"zarr_url": "/tmp/z/a/img2"},
    ),
    Step(
        "delete image again",
        "DELETE",
        "api/v2/project/{p1}/dataset/{d1}/images/",
        params={"zarr_url": "/tmp/z/a/img2"},
    ),
    Step(
        "bob queries images", "POST", "api/v2/project/{p1}/dataset/{d1}/images/query/", user="bob"
    ),
    Step("bob project", "POST", "api/v2/project/", {"name": "bobs"}, user="bob", save="p2"),
    Step("dataset through wrong project", "GET", "api/v2/project/{p2}/dataset/{d1}/", user="bob"),
    Step(
        "import",
        "POST",
        "api/v2/project/{p1}/dataset/import/",
        {
            "name": "imp",
            "zarr_dir": "/tmp/i",
            "filters": {"attributes": {}, "types": {}},
            "images": [
                {"zarr_url": "/tmp/i/a", "attributes": {"x": 1}, "types": {}, "origin": None}
            ],
        },
        save="d2",
    ),
    Step(
        "import outside zarr_dir",
        "POST",
        "api/v2/project/{p1}/dataset/import/",
        {"name": "imp", "zarr_dir": "/tmp/i", "images": [{"zarr_url": "/tmp/j/a"}]},
    ),
    Step(
        "import without images",
        "POST",
        "api/v2/project/{p1}/dataset/import/",
        {"name": "imp", "zarr_dir": "/tmp/i"},
    ),
    Step("export imported", "GET", "api/v2/project/{p1}/dataset/{d2}/export/"),
    Step("delete dataset", "DELETE", "api/v2/project/{p1}/dataset/{d2}/"),
    Step("delete dataset again", "DELETE", "api/v2/project/{p1}/dataset/{d2}/"),
    Step("wrong method", "PUT", "api/v2/project/", {"name": "x"}),
    Step("delete project", "DELETE", "api/v2/project/{p1}/"),
    Step("list after delete", "GET", "api/v2/project/"),
    # Deliberate differences last: the peer accepts these and keeps what it accepted.
    Step("differences project", "POST", "api/v2/project/", {"name": "p9"}, save="p9"),
    Step(
        "differences dataset",
        "POST",
        "api/v2/project/{p9}/dataset/",
        {"name": "d9", "zarr_dir": "/tmp/z/a"},
        save="d9",
    ),
    Step(
        "image outside zarr_dir by string prefix",
        "POST",
        "api/v2/project/{p9}/dataset/{d9}/images/",
        {"zarr_url": "/tmp/z/abc/img"},
    ),
    Step(
        "types flag of wrong type",
        "POST",
        "api/v2/project/{p9}/dataset/{d9}/images/",
        {"zarr_url": "/tmp/z/a/y", "types": {"k": "yes"}},
    ),
    Step("name of wrong type", "POST", "api/v2/project/", {"name": 123}),
]

# Same status and same kind of detail, other words (ours name the offending value).
WORDING = {"image outside zarr_dir", "import outside zarr_dir"}

VOLATILE_KEYS = {"timestamp_created"}


def normalise(value: Any) -> Any:
    """Drop what legitimately differs (timestamps); make order-free lists comparable."""
    if isinstance(value, dict):
        result = {k: normalise(v) for k, v in value.items() if k not in VOLATILE_KEYS}
        if set(result) >= {"total_count", "attributes", "types"}:
            result["attributes"] = {
                k: sorted(map(json.dumps, v)) for k, v in result["attributes"].items()
            }
            result["types"] = sorted(result["types"])
        return result
    if isinstance(value, list):
        return [normalise(item) for item in value]
    return value


def comparable_detail(body: Any) -> Any:
    """Validation errors: pydantic 1 and 2 word them differently; compare where they point."""
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list) and all(isinstance(item, dict) for item in detail):
        return {"validation error at": sorted(tuple(item["loc"][:2]) for item in detail)}
    return normalise(body)


def fill(path: str, saved: dict[str, Any]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: str(saved[m.group(1)]), path)


@pytest.fixture(scope="module")
def peer(tmp_path_factory):
    venv = ensure_peer_venv()
    server = PeerServer(venv, tmp_path_factory.mktemp("peer"))
    server.start()
    yield server
    server.stop()


async def test_answers_match_fractal_server_2_6_4(api, peer):
    tokens = {
        user: peer.create_user(f"{user}@example.org", "password", user) for user in ("alice", "bob")
    }
    ours_saved: dict[str, Any] = {}
    peer_saved: dict[str, Any] = {}
    mismatches = []
    for step in STEPS:
        status, body = await api(
            step.method, fill(step.path, ours_saved), step.body, user=step.user, params=step.params
        )
        with peer.client(tokens[step.user]) as client:
            response = client.request(
                step.method,
                "/" + fill(step.path, peer_saved),
                json=step.body,
                params=step.params,
            )
        try:
            peer_body = response.json() if response.content else None
        except ValueError:
            peer_body = response.text
        if step.save:
            ours_saved[step.save] = body["id"] if status < 300 else 0
            peer_saved[step.save] = peer_body["id"] if response.status_code < 300 else 0
        if step.name in WORDING:
            same = status == response.status_code and isinstance(body["detail"], str)
            same = same and isinstance(peer_body["detail"], str)
        else:
            same = (status, comparable_detail(body)) == (
                response.status_code,
                comparable_detail(peer_body),
            )
        if step.name in DIFFERENCES:
            assert not same, f"{step.name}: listed as a difference but answers match"
            continue
        if not same:
            mismatches.append(
                f"{step.name}: ours {status} {json.dumps(body)[:300]}\n"
                f"      peer {response.status_code} {json.dumps(peer_body)[:300]}"
            )
    assert not mismatches, "\n".join(mismatches)
