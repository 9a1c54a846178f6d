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
    "args against schema": "Arguments checked against the task's JSON Schema",
    "another user's task": "Who may run which task",
    "import of another user's task": "Who may run which task",
    "own settings cache_dir": "User settings that are not used",
}

SCHEMA = {
    "type": "object",
    "properties": {"zarr_url": {"type": "string"}, "sigma": {"type": "number"}},
    "required": ["zarr_url"],
    "additionalProperties": False,
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
    Step(
        "create task np",
        "POST",
        "api/v2/task/",
        {
            "name": "np",
            "source": "np",
            "command_non_parallel": "python np.py",
            "meta_non_parallel": {"mem": 1},
            "input_types": {"is_3D": True},
        },
        save="tnp",
    ),
    Step(
        "create task par",
        "POST",
        "api/v2/task/",
        {
            "name": "par",
            "source": "par",
            "command_parallel": "python par.py",
            "args_schema_parallel": SCHEMA,
            "docs_link": "https://example.org/x",
        },
        save="tpar",
    ),
    Step(
        "create task compound",
        "POST",
        "api/v2/task/",
        {
            "name": "comp",
            "source": "comp",
            "command_non_parallel": "python i.py",
            "command_parallel": "python c.py",
        },
        save="tcomp",
    ),
    Step(
        "task source taken",
        "POST",
        "api/v2/task/",
        {"name": "np", "source": "np", "command_non_parallel": "python np.py"},
    ),
    Step("task without command", "POST", "api/v2/task/", {"name": "x", "source": "x"}),
    Step(
        "task bad command",
        "POST",
        "api/v2/task/",
        {"name": "x", "source": "x", "command_parallel": "a; rm"},
    ),
    Step(
        "task meta for missing side",
        "POST",
        "api/v2/task/",
        {"name": "x", "source": "x", "command_parallel": "a", "meta_non_parallel": {"a": 1}},
    ),
    Step("list tasks", "GET", "api/v2/task/"),
    Step(
        "list tasks without schemas",
        "GET",
        "api/v2/task/",
        params={"args_schema_parallel": "false"},
    ),
    Step("get task", "GET", "api/v2/task/{tpar}/"),
    Step("get unknown task", "GET", "api/v2/task/9999/"),
    Step("bob patches task", "PATCH", "api/v2/task/{tpar}/", {"name": "x"}, user="bob"),
    Step("patch task", "PATCH", "api/v2/task/{tpar}/", {"name": "par2", "version": "1.0"}),
    Step(
        "patch missing command side",
        "PATCH",
        "api/v2/task/{tnp}/",
        {"command_parallel": "python x.py"},
    ),
    Step("create workflow", "POST", "api/v2/project/{p1}/workflow/", {"name": "wf"}, save="w1"),
    Step("workflow name taken", "POST", "api/v2/project/{p1}/workflow/", {"name": "wf"}),
    Step("workflow extra field", "POST", "api/v2/project/{p1}/workflow/", {"name": "wf2", "x": 1}),
    Step(
        "add np",
        "POST",
        "api/v2/project/{p1}/workflow/{w1}/wftask/",
        {"meta_non_parallel": {"cpus": 2}, "args_non_parallel": {"a": 1}},
        params={"task_id": "{tnp}"},
        save="wt1",
    ),
    Step(
        "add par first",
        "POST",
        "api/v2/project/{p1}/workflow/{w1}/wftask/",
        {"order": 0, "args_parallel": {"sigma": 1}},
        params={"task_id": "{tpar}"},
        save="wt2",
    ),
    Step(
        "add compound",
        "POST",
        "api/v2/project/{p1}/workflow/{w1}/wftask/",
        {},
        params={"task_id": "{tcomp}"},
        save="wt3",
    ),
    Step(
        "add wrong side",
        "POST",
        "api/v2/project/{p1}/workflow/{w1}/wftask/",
        {"args_parallel": {"a": 1}},
        params={"task_id": "{tnp}"},
    ),
    Step(
        "add reserved arg",
        "POST",
        "api/v2/project/{p1}/workflow/{w1}/wftask/",
        {"args_non_parallel": {"zarr_dir": "/x"}},
        params={"task_id": "{tnp}"},
    ),
    Step(
        "add unknown task",
        "POST",
        "api/v2/project/{p1}/workflow/{w1}/wftask/",
        {},
        params={"task_id": "9999"},
    ),
    Step("add without task_id", "POST", "api/v2/project/{p1}/workflow/{w1}/wftask/", {}),
    Step("get workflow", "GET", "api/v2/project/{p1}/workflow/{w1}/"),
    Step(
        "reorder",
        "PATCH",
        "api/v2/project/{p1}/workflow/{w1}/",
        {"reordered_workflowtask_ids": ["{wt1}", "{wt3}", "{wt2}"]},
    ),
    Step(
        "reorder not a permutation",
        "PATCH",
        "api/v2/project/{p1}/workflow/{w1}/",
        {"reordered_workflowtask_ids": ["{wt1}"]},
    ),
    Step(
        "rename workflow to itself", "PATCH", "api/v2/project/{p1}/workflow/{w1}/", {"name": "wf"}
    ),
    Step(
        "patch wftask",
        "PATCH",
        "api/v2/project/{p1}/workflow/{w1}/wftask/{wt2}/",
        {
            "args_parallel": {"sigma": 3},
            "meta_parallel": {"mem": 2},
            "input_filters": {"attributes": {"well": "A01"}, "types": {}},
        },
    ),
    Step(
        "patch wftask empty args",
        "PATCH",
        "api/v2/project/{p1}/workflow/{w1}/wftask/{wt1}/",
        {"args_non_parallel": {}},
    ),
    Step(
        "patch wftask wrong side",
        "PATCH",
        "api/v2/project/{p1}/workflow/{w1}/wftask/{wt1}/",
        {"args_parallel": {"a": 1}},
    ),
    Step("get wftask", "GET", "api/v2/project/{p1}/workflow/{w1}/wftask/{wt2}/"),
    Step("get unknown wftask", "GET", "api/v2/project/{p1}/workflow/{w1}/wftask/9999/"),
    Step("export workflow", "GET", "api/v2/project/{p1}/workflow/{w1}/export/"),
    Step(
        "import workflow",
        "POST",
        "api/v2/project/{p1}/workflow/import/",
        {
            "name": "imported",
            "task_list": [
                {"task": {"source": "alice:par"}, "args_parallel": {"sigma": 2}},
                {"task": {"source": "alice:np"}, "meta_non_parallel": {"x": 1}},
            ],
        },
        save="w2",
    ),
    Step(
        "import unknown source",
        "POST",
        "api/v2/project/{p1}/workflow/import/",
        {"name": "imp2", "task_list": [{"task": {"source": "nobody:x"}}]},
    ),
    Step(
        "import name taken",
        "POST",
        "api/v2/project/{p1}/workflow/import/",
        {"name": "imported", "task_list": []},
    ),
    Step("wftask through other workflow", "GET", "api/v2/project/{p1}/workflow/{w2}/wftask/{wt1}/"),
    Step("list workflows", "GET", "api/v2/project/{p1}/workflow/"),
    Step("all my workflows", "GET", "api/v2/workflow/"),
    Step("workflow jobs", "GET", "api/v2/project/{p1}/workflow/{w1}/job/"),
    Step("bob reads workflow", "GET", "api/v2/project/{p1}/workflow/{w1}/", user="bob"),
    Step("delete task in use", "DELETE", "api/v2/task/{tnp}/"),
    Step("delete wftask", "DELETE", "api/v2/project/{p1}/workflow/{w1}/wftask/{wt2}/"),
    Step("workflow after delete", "GET", "api/v2/project/{p1}/workflow/{w1}/"),
    Step("delete workflow", "DELETE", "api/v2/project/{p1}/workflow/{w2}/"),
    Step("wrong method", "PUT", "api/v2/project/", {"name": "x"}),
    Step("delete project", "DELETE", "api/v2/project/{p1}/"),
    Step("list after delete", "GET", "api/v2/project/"),
    # Users, groups, settings and the admin API (answers that name no e-mail address).
    Step("group names", "GET", "auth/group-names/"),
    Step("own settings", "GET", "auth/current-user/settings/"),
    Step(
        "patch own settings",
        "PATCH",
        "auth/current-user/settings/",
        {"slurm_accounts": ["acc"], "cache_dir": None},
    ),
    Step(
        "own settings cache_dir",
        "PATCH",
        "auth/current-user/settings/",
        {"cache_dir": "/tmp/cache"},
    ),
    Step(
        "own settings relative cache_dir",
        "PATCH",
        "auth/current-user/settings/",
        {"cache_dir": "c"},
    ),
    Step("own settings slurm_user", "PATCH", "auth/current-user/settings/", {"slurm_user": "x"}),
    Step("own viewer paths", "GET", "auth/current-user/viewer-paths/"),
    Step("self edit", "PATCH", "auth/current-user/", {"is_superuser": True}),
    Step("bob lists users", "GET", "auth/users/", user="bob"),
    Step("bob lists groups", "GET", "auth/group/", user="bob"),
    Step("bob creates group", "POST", "auth/group/", {"name": "mine"}, user="bob"),
    Step("bob admin jobs", "GET", "admin/v2/job/", user="bob"),
    Step("bob settings", "GET", "api/settings/", user="bob"),
    Step("admin groups", "GET", "auth/group/", user="admin"),
    Step("admin creates group", "POST", "auth/group/", {"name": "lab"}, user="admin", save="g"),
    Step("admin group name taken", "POST", "auth/group/", {"name": "lab"}, user="admin"),
    Step(
        "admin group relative path",
        "POST",
        "auth/group/",
        {"name": "x", "viewer_paths": ["a"]},
        user="admin",
    ),
    Step("admin group paths", "PATCH", "auth/group/{g}/", {"viewer_paths": ["/v"]}, user="admin"),
    Step(
        "admin group unknown user",
        "PATCH",
        "auth/group/{g}/",
        {"new_user_ids": [9999]},
        user="admin",
    ),
    Step("admin unknown group", "GET", "auth/group/9999/", user="admin"),
    Step("admin deletes group", "DELETE", "auth/group/{g}/", user="admin"),
    Step("admin unknown user", "GET", "auth/users/9999/", user="admin"),
    Step("admin projects", "GET", "admin/v2/project/", user="admin"),
    Step("admin jobs", "GET", "admin/v2/job/", user="admin", params={"status": "done"}),
    Step(
        "admin jobs naive timestamp",
        "GET",
        "admin/v2/job/",
        user="admin",
        params={"start_timestamp_min": "2024-01-01T00:00:00"},
    ),
    Step("admin unknown job", "GET", "admin/v2/job/9999/", user="admin"),
    Step(
        "admin fails unknown job", "PATCH", "admin/v2/job/9999/", {"status": "failed"}, user="admin"
    ),
    Step("admin tasks", "GET", "admin/v2/task/", user="admin", params={"name": "par"}),
    Step(
        "admin too many tasks",
        "GET",
        "admin/v2/task/",
        user="admin",
        params={"max_number_of_results": "1"},
    ),
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
    Step(
        "differences workflow", "POST", "api/v2/project/{p9}/workflow/", {"name": "w9"}, save="w9"
    ),
    Step(
        "args against schema",
        "POST",
        "api/v2/project/{p9}/workflow/{w9}/wftask/",
        {"args_parallel": {"sigma": "high"}},
        params={"task_id": "{tpar}"},
    ),
    Step(
        "bob's workflow",
        "POST",
        "api/v2/project/{p2}/workflow/",
        {"name": "bw"},
        user="bob",
        save="bw",
    ),
    Step(
        "another user's task",
        "POST",
        "api/v2/project/{p2}/workflow/{bw}/wftask/",
        {},
        params={"task_id": "{tpar}"},
        user="bob",
    ),
    Step(
        "import of another user's task",
        "POST",
        "api/v2/project/{p2}/workflow/import/",
        {"name": "bimp", "task_list": [{"task": {"source": "alice:par"}}]},
        user="bob",
    ),
]

# Same status and same kind of detail, other words (ours name the offending value).
WORDING = {
    # 2.6.4 says "Forbidden"; ours says who may.
    "bob lists users",
    "bob lists groups",
    "bob creates group",
    "bob admin jobs",
    "bob settings",
    # 2.6.4 counts every matching task first; ours stops counting past the maximum.
    "admin too many tasks",
    "image outside zarr_dir",
    "import outside zarr_dir",
    "import unknown source",
    # 2.6.4 names args_schema_non_parallel twice where it means meta_non_parallel.
    "task meta for missing side",
}
# Validation errors that both refuse, but located differently (pydantic 1 puts model-level
# errors at "__root__").
MODEL_LEVEL = {"task without command", "task bad command"}
# Task fields we keep and 2.6.4 drops (newer manifests carry them), and an imported task's
# `warning` (2.20+: which version an import by package found), and 2.26's `is_core`.
OURS_ONLY_KEYS = {"category", "modality", "tags", "authors", "warning", "is_core"}
# Workflow fields of 2.26 that 2.6.4 lacks (only on workflows and their exports: a task's
# JSON Schema has `description`s of its own).
OURS_ONLY_WORKFLOW_KEYS = {"description"}
# A workflow export names each task by package, version and name too (2.7+'s portable form).
EXPORTED_TASK_KEYS = {"pkg_name", "version", "name"}

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


def fill(value: Any, saved: dict[str, Any]) -> Any:
    """Put the saved ids in place of "{name}" in paths, parameters and bodies."""
    if isinstance(value, str):
        whole = re.fullmatch(r"\{(\w+)\}", value)
        if whole:
            return saved[whole.group(1)]
        return re.sub(r"\{(\w+)\}", lambda m: str(saved[m.group(1)]), value)
    if isinstance(value, dict):
        return {key: fill(item, saved) for key, item in value.items()}
    if isinstance(value, list):
        return [fill(item, saved) for item in value]
    return value


def first_difference(ours: Any, theirs: Any, path: str = "") -> str:
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for key in sorted(set(ours) | set(theirs)):
            if ours.get(key, "<missing>") != theirs.get(key, "<missing>"):
                return first_difference(
                    ours.get(key, "<missing>"), theirs.get(key, "<missing>"), f"{path}.{key}"
                )
    if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            if a != b:
                return first_difference(a, b, f"{path}[{index}]")
    return f"{path}: {json.dumps(ours)[:120]} != {json.dumps(theirs)[:120]}"


def without_our_keys(value: Any) -> Any:
    if isinstance(value, dict):
        dropped = OURS_ONLY_KEYS | (OURS_ONLY_WORKFLOW_KEYS if "task_list" in value else set())
        return {k: without_our_keys(v) for k, v in value.items() if k not in dropped}
    if isinstance(value, list):
        return [without_our_keys(item) for item in value]
    return value


def without_exported_task_keys(step: Step, body: Any) -> Any:
    if not step.path.endswith("/export/") or not isinstance(body, dict):
        return body
    for entry in body.get("task_list", []):
        for key in EXPORTED_TASK_KEYS:
            entry["task"].pop(key, None)
    return body


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
    tokens["admin"] = peer.admin_token
    ours_saved: dict[str, Any] = {}
    peer_saved: dict[str, Any] = {}
    mismatches = []
    for step in STEPS:
        print("STEP", step.name, flush=True)
        status, body = await api(
            step.method,
            fill(step.path, ours_saved),
            fill(step.body, ours_saved),
            user=step.user,
            params={k: str(v) for k, v in fill(step.params, ours_saved).items()},
        )
        body = without_exported_task_keys(step, without_our_keys(body))
        with peer.client(tokens[step.user]) as client:
            response = client.request(
                step.method,
                "/" + fill(step.path, peer_saved),
                json=fill(step.body, peer_saved),
                params={k: str(v) for k, v in fill(step.params, peer_saved).items()},
            )
        try:
            peer_body = response.json() if response.content else None
        except ValueError:
            peer_body = response.text
        if step.save:
            ours_saved[step.save] = body["id"] if status < 300 else 0
            peer_saved[step.save] = peer_body["id"] if response.status_code < 300 else 0
        if step.name in MODEL_LEVEL:
            same = status == response.status_code == 422
            same = same and isinstance(body["detail"], list)
            same = same and isinstance(peer_body["detail"], list)
        elif step.name in WORDING:
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
                f"      peer {response.status_code} {json.dumps(peer_body)[:300]}\n"
                f"      first difference: {first_difference(normalise(body), normalise(peer_body))}"
            )
    assert not mismatches, "\n".join(mismatches)
