import pytest

from tests.support.tasks_core import task_create_bodies, tasks_core_manifest


@pytest.fixture
def setup(api, jp_asyncio_loop):
    """A project, and three tasks: non-parallel, parallel (with a schema), compound."""

    async def make():
        _, project = await api("POST", "api/v2/project/", {"name": "p"})
        tasks = {}
        for name, extra in {
            "np": {"command_non_parallel": "python np.py", "meta_non_parallel": {"mem": 1}},
            "par": {
                "command_parallel": "python par.py",
                "args_schema_parallel": {
                    "type": "object",
                    "properties": {
                        "zarr_url": {"type": "string"},
                        "sigma": {"type": "number"},
                        "channel": {
                            "type": "object",
                            "properties": {"label": {"type": "string"}},
                            "required": ["label"],
                            "additionalProperties": False,
                        },
                    },
                    "required": ["zarr_url", "sigma"],
                    "additionalProperties": False,
                },
            },
            "comp": {"command_non_parallel": "python i.py", "command_parallel": "python c.py"},
        }.items():
            _, tasks[name] = await api(
                "POST", "api/v2/task/", {"name": name, "source": name, **extra}
            )
        return f"api/v2/project/{project['id']}/", tasks

    return jp_asyncio_loop.run_until_complete(make())


async def new_workflow(api, project_path, name="wf"):
    status, workflow = await api("POST", project_path + "workflow/", {"name": name})
    assert status == 201, workflow
    return workflow, f"{project_path}workflow/{workflow['id']}/"


async def add_task(api, workflow_path, task, body=None, expect=201):
    status, answer = await api(
        "POST", workflow_path + "wftask/", body or {}, params={"task_id": str(task["id"])}
    )
    assert status == expect, answer
    return answer


async def test_workflow_lifecycle_and_order(api, setup):
    project_path, tasks = setup
    workflow, path = await new_workflow(api, project_path)
    assert workflow["task_list"] == [] and workflow["project"]["name"] == "p"
    first = await add_task(api, path, tasks["np"], {"meta_non_parallel": {"cpus": 2}})
    assert first["order"] == 0 and first["task_type"] == "non_parallel"
    assert first["meta_non_parallel"] == {"mem": 1, "cpus": 2}  # task defaults, overlaid
    assert first["meta_parallel"] is None and first["task"]["name"] == "np"
    second = await add_task(api, path, tasks["par"], {"args_parallel": {"sigma": 2}})
    inserted = await add_task(api, path, tasks["comp"], {"order": 1})
    _, workflow = await api("GET", path)
    assert [(t["id"], t["order"]) for t in workflow["task_list"]] == [
        (first["id"], 0),
        (inserted["id"], 1),
        (second["id"], 2),
    ]

    status, workflow = await api(
        "PATCH",
        path,
        {
            "name": "renamed",
            "reordered_workflowtask_ids": [second["id"], first["id"], inserted["id"]],
        },
    )
    assert status == 200 and workflow["name"] == "renamed"
    assert [t["id"] for t in workflow["task_list"]] == [second["id"], first["id"], inserted["id"]]
    assert [t["order"] for t in workflow["task_list"]] == [0, 1, 2]

    status, body = await api("PATCH", path, {"reordered_workflowtask_ids": [first["id"]]})
    assert status == 422 and "must be a permutation" in body["detail"]
    status, body = await api("PATCH", path, {"reordered_workflowtask_ids": [1, 1, 2]})
    assert status == 422 and "repetitions" in str(body["detail"])

    status, _ = await api("DELETE", f"{path}wftask/{second['id']}/")
    assert status == 204
    _, workflow = await api("GET", path)
    assert [(t["id"], t["order"]) for t in workflow["task_list"]] == [
        (first["id"], 0),
        (inserted["id"], 1),
    ]

    _, mine = await api("GET", "api/v2/workflow/")
    assert [w["id"] for w in mine] == [workflow["id"]]
    status, jobs = await api("GET", path + "job/")
    assert (status, jobs) == (200, [])
    status, _ = await api("DELETE", path)
    assert status == 204
    status, body = await api("GET", path)
    assert (status, body) == (404, {"detail": "Workflow not found"})
    # The task is free again once no workflow uses it.
    status, _ = await api("DELETE", f"api/v2/task/{tasks['comp']['id']}/")
    assert status == 204


async def test_workflow_names_are_unique_per_project(api, setup):
    project_path, _ = setup
    _, path = await new_workflow(api, project_path)
    status, body = await api("POST", project_path + "workflow/", {"name": "wf"})
    assert status == 422 and "already exists" in body["detail"]
    status, _ = await api("PATCH", path, {"name": "wf"})
    assert status == 422


async def test_workflow_task_patch(api, setup):
    project_path, tasks = setup
    _, path = await new_workflow(api, project_path)
    entry = await add_task(api, path, tasks["par"], {"args_parallel": {"sigma": 1}})
    entry_path = f"{path}wftask/{entry['id']}/"
    status, patched = await api(
        "PATCH",
        entry_path,
        {
            "args_parallel": {"sigma": 3, "channel": {"label": "DAPI"}},
            "meta_parallel": {"mem": 8},
            "input_filters": {"attributes": {"well": "A01"}, "types": {"is_3D": True}},
        },
    )
    assert status == 200
    assert patched["args_parallel"] == {"sigma": 3, "channel": {"label": "DAPI"}}
    assert patched["meta_parallel"] == {"mem": 8}
    assert patched["input_filters"] == {"attributes": {"well": "A01"}, "types": {"is_3D": True}}
    status, patched = await api("PATCH", entry_path, {"args_parallel": {}})
    assert patched["args_parallel"] is None
    status, body = await api("PATCH", entry_path, {"args_non_parallel": {"x": 1}})
    assert status == 422 and "parallel" in body["detail"]
    status, body = await api("PATCH", entry_path, {"input_filters": None})
    assert status == 422
    _, unchanged = await api("GET", entry_path)
    assert unchanged == patched


@pytest.mark.parametrize(
    "task_name, body, fragment",
    [
        ("np", {"args_parallel": {"x": 1}}, "non_parallel"),
        ("par", {"meta_non_parallel": {"x": 1}}, "parallel"),
        ("np", {"args_non_parallel": {"zarr_urls": []}}, "forbidden keys"),
        ("par", {"args_parallel": {"init_args": {}}}, "forbidden keys"),
        ("np", {"order": -1}, "order"),
        ("np", {"unknown": 1}, "unknown"),
    ],
)
async def test_bad_workflow_tasks_change_nothing(api, setup, task_name, body, fragment):
    project_path, tasks = setup
    _, path = await new_workflow(api, project_path)
    answer = await add_task(api, path, tasks[task_name], body, expect=422)
    assert fragment in str(answer["detail"])
    _, workflow = await api("GET", path)
    assert workflow["task_list"] == []


async def test_arguments_are_checked_against_the_schema(api, setup):
    project_path, tasks = setup
    _, path = await new_workflow(api, project_path)
    answer = await add_task(
        api,
        path,
        tasks["par"],
        {"args_parallel": {"sigma": "big", "channel": {"label": 3, "colour": "red"}, "extra": 1}},
        expect=422,
    )
    locations = {tuple(item["loc"]) for item in answer["detail"]}
    assert ("body", "args_parallel", "sigma") in locations
    assert ("body", "args_parallel", "channel", "label") in locations
    assert ("body", "args_parallel", "channel") in locations  # the unknown "colour"
    assert ("body", "args_parallel") in locations  # the unknown "extra"
    # Missing required arguments are fine while editing.
    entry = await add_task(api, path, tasks["par"], {"args_parallel": {"channel": {}}})
    status, answer = await api(
        "PATCH", f"{path}wftask/{entry['id']}/", {"args_parallel": {"sigma": [1]}}
    )
    assert status == 422 and answer["detail"][0]["loc"] == ["body", "args_parallel", "sigma"]


async def test_tasks_core_schemas_check_arguments(api, setup):
    project_path, _ = setup
    bodies = {body["name"]: body for body in task_create_bodies(tasks_core_manifest())}
    _, threshold = await api("POST", "api/v2/task/", bodies["Threshold Segmentation"])
    _, projection = await api("POST", "api/v2/task/", bodies["Project Image (HCS Plate)"])
    _, path = await new_workflow(api, project_path)
    good = {"channel": {"mode": "label", "identifier": "DAPI"}, "output_label_name": "nuclei"}
    entry = await add_task(api, path, threshold, {"args_parallel": good})
    assert entry["args_parallel"] == good
    answer = await add_task(
        api, path, threshold, {"args_parallel": {**good, "output_label_name": 7}}, expect=422
    )
    assert answer["detail"][0]["loc"] == ["body", "args_parallel", "output_label_name"]
    answer = await add_task(
        api, path, projection, {"args_non_parallel": {"method": "Median projection"}}, expect=422
    )
    assert answer["detail"][0]["loc"] == ["body", "args_non_parallel", "method"]
    answer = await add_task(
        api,
        path,
        projection,
        {"args_non_parallel": {"output_plate_name": "no placeholder"}},
        expect=422,
    )
    assert "pattern" in answer["detail"][0]["type"]
    await add_task(api, path, projection, {"args_non_parallel": {"overwrite": True}})


async def test_export_then_import_elsewhere(api, setup):
    project_path, tasks = setup
    _, path = await new_workflow(api, project_path)
    await add_task(
        api,
        path,
        tasks["np"],
        {"args_non_parallel": {"a": 1}, "input_filters": {"attributes": {}, "types": {"x": True}}},
    )
    await add_task(
        api, path, tasks["par"], {"args_parallel": {"sigma": 2}, "meta_parallel": {"mem": 4}}
    )
    await add_task(api, path, tasks["comp"], {"args_parallel": {"c": 1}})
    status, exported = await api("GET", path + "export/")
    assert status == 200
    # 2.6.4's source, and 2.7+'s package identity (none: these tasks have no version).
    assert [entry["task"] for entry in exported["task_list"]] == [
        {"source": f"alice:{name}", "pkg_name": None, "version": None, "name": name}
        for name in ("np", "par", "comp")
    ]
    _, other = await api("POST", "api/v2/project/", {"name": "other"})
    status, imported = await api("POST", f"api/v2/project/{other['id']}/workflow/import/", exported)
    assert status == 201 and imported["project_id"] == other["id"]
    status, again = await api(
        "GET", f"api/v2/project/{other['id']}/workflow/{imported['id']}/export/"
    )
    assert again == exported


async def test_import_refusals_create_nothing(api, setup):
    project_path, _ = setup
    body = {"name": "imp", "task_list": [{"task": {"source": "nobody:nothing"}}]}
    status, answer = await api("POST", project_path + "workflow/import/", body)
    assert status == 422 and "'nobody:nothing'" in answer["detail"]
    body = {
        "name": "imp",
        "task_list": [{"task": {"source": "alice:par"}, "args_parallel": {"sigma": "x"}}],
    }
    status, answer = await api("POST", project_path + "workflow/import/", body)
    assert status == 422
    assert answer["detail"][0]["loc"] == ["body", "task_list", 0, "args_parallel", "sigma"]
    body = {
        "name": "imp",
        "task_list": [{"task": {"source": "alice:np"}, "args_parallel": {"x": 1}}],
    }
    status, answer = await api("POST", project_path + "workflow/import/", body)
    assert status == 422 and "task_list[0]" in answer["detail"]
    _, workflows = await api("GET", project_path + "workflow/")
    assert workflows == []


async def test_task_in_use_cannot_be_deleted(api, setup):
    project_path, tasks = setup
    workflow, path = await new_workflow(api, project_path)
    await add_task(api, path, tasks["np"])
    status, body = await api("DELETE", f"api/v2/task/{tasks['np']['id']}/")
    assert status == 422
    assert "in use in 1 current-user workflows and in 0 other-users" in body["detail"]
    assert f"'wf' (id={workflow['id']})" in body["detail"]
    status, _ = await api("GET", f"api/v2/task/{tasks['np']['id']}/")
    assert status == 200


async def test_other_users_cannot_see_or_change_workflows(api, setup):
    project_path, tasks = setup
    _, path = await new_workflow(api, project_path)
    entry = await add_task(api, path, tasks["np"])
    project_id = project_path.split("/")[-2]
    for method, target, body in [
        ("GET", path, None),
        ("PATCH", path, {"name": "x"}),
        ("DELETE", path, None),
        ("GET", path + "export/", None),
        ("GET", f"{path}wftask/{entry['id']}/", None),
        ("PATCH", f"{path}wftask/{entry['id']}/", {"args_non_parallel": {"a": 1}}),
        ("DELETE", f"{path}wftask/{entry['id']}/", None),
        ("GET", project_path + "workflow/", None),
        ("POST", project_path + "workflow/", {"name": "mine"}),
    ]:
        status, answer = await api(method, target, body, user="bob")
        assert (status, answer) == (403, {"detail": f"Not allowed on project {project_id}"})
    _, mine = await api("GET", "api/v2/workflow/", user="bob")
    assert mine == []
    _, same = await api("GET", path)
    assert same["name"] == "wf" and len(same["task_list"]) == 1
    # A wftask addressed through another of alice's workflows is a 422, as in 2.6.4.
    _, other_path = await new_workflow(api, project_path, "other")
    status, body = await api("GET", f"{other_path}wftask/{entry['id']}/")
    assert status == 422 and "Invalid workflow_id" in body["detail"]


async def test_deleting_the_project_deletes_its_workflows(api, setup):
    project_path, tasks = setup
    _, path = await new_workflow(api, project_path)
    await add_task(api, path, tasks["np"])
    await api("DELETE", project_path)
    _, workflows = await api("GET", "api/v2/workflow/")
    assert workflows == []
    status, _ = await api("DELETE", f"api/v2/task/{tasks['np']['id']}/")
    assert status == 204


async def test_workflow_description_create_patch_clear_export_import(api, setup):
    """fractal-server 2.26's `description`: set at creation, changed, cleared with null,
    kept by a PATCH that leaves it out, exported and imported; bad values change nothing."""
    project_path, tasks = setup
    status, workflow = await api(
        "POST", project_path + "workflow/", {"name": "d", "description": "  Segment nuclei  "}
    )
    assert status == 201 and workflow["description"] == "Segment nuclei"
    path = f"{project_path}workflow/{workflow['id']}/"
    _, plain = await new_workflow(api, project_path, name="plain")
    _, read = await api("GET", plain)
    assert read["description"] is None

    for bad in ("", "   ", 7, "x" * 10_001):
        status, answer = await api("PATCH", path, {"description": bad})
        assert status == 422 and answer["detail"][0]["loc"][-1] == "description", answer
        status, _ = await api("POST", project_path + "workflow/", {"name": "e", "description": bad})
        assert status == 422
    _, read = await api("GET", path)
    assert read["description"] == "Segment nuclei"
    _, listed = await api("GET", project_path + "workflow/")
    assert [w["name"] for w in listed] == ["d", "plain"]

    status, read = await api("PATCH", path, {"name": "d2"})
    assert status == 200 and read["description"] == "Segment nuclei"
    status, read = await api("PATCH", path, {"description": "Segment and measure"})
    assert status == 200 and read["description"] == "Segment and measure"

    await add_task(api, path, tasks["np"])
    _, exported = await api("GET", path + "export/")
    assert list(exported) == ["name", "description", "task_list"]
    assert exported["description"] == "Segment and measure"
    _, other = await api("POST", "api/v2/project/", {"name": "other"})
    imports = f"api/v2/project/{other['id']}/workflow/import/"
    status, imported = await api("POST", imports, exported)
    assert status == 201 and imported["description"] == "Segment and measure"
    # A 2.6.4 export has no description.
    status, old = await api("POST", imports, {**exported, "name": "old", "description": None})
    assert status == 201 and old["description"] is None
    del exported["description"]
    status, older = await api("POST", imports, {**exported, "name": "older"})
    assert status == 201 and older["description"] is None
    status, _ = await api("POST", imports, {**exported, "name": "bad", "description": ""})
    assert status == 422

    status, read = await api("PATCH", path, {"description": None})
    assert status == 200 and read["description"] is None
    _, read = await api("GET", path)
    assert read["description"] is None and read["name"] == "d2"
