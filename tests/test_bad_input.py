"""Bad input gets a 4xx with a useful detail and changes nothing; never a 5xx."""

import pytest


@pytest.fixture
def project_path(api, jp_asyncio_loop):
    _, project = jp_asyncio_loop.run_until_complete(api("POST", "api/v2/project/", {"name": "p"}))
    return f"api/v2/project/{project['id']}/"


@pytest.mark.parametrize(
    "raw, loc",
    [
        (b"{not json", ["body"]),
        (b"[1, 2]", ["body"]),
        (b'"a string"', ["body"]),
        (b"", ["body"]),
        (b'{"name": 123}', ["body", "name"]),
        (b'{"name": true}', ["body", "name"]),
        (b'{"name": ""}', ["body", "name"]),
        (b'{"name": "' + b"n" * 5000 + b'"}', ["body", "name"]),
        (b'{"name": "x", "extra": 1}', ["body", "extra"]),
        (b"{}", ["body", "name"]),
    ],
)
async def test_bad_project_bodies(api, raw, loc):
    status, body = await api("POST", "api/v2/project/", raw_body=raw)
    assert status == 422, body
    assert isinstance(body["detail"], list)
    assert body["detail"][0]["loc"][: len(loc)] == loc, body
    assert body["detail"][0]["msg"]
    _, projects = await api("GET", "api/v2/project/")
    assert projects == []


@pytest.mark.parametrize(
    "path, status",
    [
        ("api/v2/project/abc/", 422),
        ("api/v2/project/1.5/", 422),
        ("api/v2/project/99999999999999999999999/", 422),
        ("api/v2/project/999999/", 404),
        ("api/v2/project/-1/", 404),
    ],
)
async def test_bad_path_ids(api, path, status):
    code, body = await api("GET", path)
    assert code == status
    assert "detail" in body


async def test_unknown_dataset_id(api, project_path):
    status, body = await api("GET", project_path + "dataset/424242/")
    assert (status, body) == (404, {"detail": "Dataset not found"})
    status, body = await api("POST", project_path + "dataset/424242/images/query/")
    assert status == 404


async def test_wrong_method_is_405_json(api):
    status, body = await api("PUT", "api/v2/project/", {"name": "x"})
    assert status == 405 and body == {"detail": "Method Not Allowed"}


async def test_missing_trailing_slash_redirects(jp_fetch):
    response = await jp_fetch(
        "fractal",
        "api/v2/project",
        follow_redirects=False,
        raise_error=False,
        params={"a": "b"},
    )
    assert response.code == 307
    assert response.headers["Location"].endswith("/fractal/api/v2/project/?a=b")
