"""Limits on what a request may carry: integers, body sizes, per-image caps, content types."""

from __future__ import annotations

import json
import threading

import pytest

HUGE = 2**70


@pytest.fixture
def dataset_path(api, project_path, jp_asyncio_loop):
    async def make():
        _, dataset = await api("POST", f"{project_path}dataset/", {"name": "d", "zarr_dir": "/z"})
        return f"{project_path}dataset/{dataset['id']}/"

    return jp_asyncio_loop.run_until_complete(make())


def assert_too_big(status, body, loc):
    assert status == 422, body
    assert [problem["loc"] for problem in body["detail"]] == [loc], body
    assert "64 bits" in body["detail"][0]["msg"]


# -- integers beyond 64 bits: one rule for every query string and body --


@pytest.mark.parametrize(
    ("path", "params", "loc"),
    [
        ("job/submit/", {"workflow_id": HUGE, "dataset_id": 1}, ["query", "workflow_id"]),
        ("status/", {"workflow_id": 1, "dataset_id": -HUGE}, ["query", "dataset_id"]),
    ],
)
async def test_query_integers_beyond_64_bits_are_refused(api, project_path, path, params, loc):
    method = "POST" if "submit" in path else "GET"
    body = {} if method == "POST" else None
    status, answer = await api(method, project_path + path, body, params=params)
    assert_too_big(status, answer, loc)


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("admin/v2/project/", "id"),
        ("admin/v2/job/", "dataset_id"),
        ("admin/v2/task/", "max_number_of_results"),
        ("admin/v2/task/", "id"),
    ],
)
async def test_admin_filters_beyond_64_bits_are_refused(api, path, name):
    status, answer = await api("GET", path, user="admin", params={name: str(HUGE)})
    assert_too_big(status, answer, ["query", name])


async def test_64_bit_limits_themselves_are_accepted(api):
    """On SQLite every 64-bit id is looked up (none is found); PostgreSQL's id columns are
    32-bit, so there a larger id is a 422 that says so (never a 500)."""
    from tests.conftest import TEST_DB_URL

    on_postgresql = TEST_DB_URL is not None and TEST_DB_URL.startswith("postgresql")
    for value in (2**63 - 1, -(2**63 - 1)):
        status, answer = await api("GET", "admin/v2/project/", user="admin", params={"id": value})
        if on_postgresql:
            assert status == 422, answer
            assert "out of the database's range" in answer["detail"], answer
        else:
            assert (status, answer) == (200, []), answer
    for value in (2**31 - 1, -(2**31)):
        status, answer = await api("GET", "admin/v2/project/", user="admin", params={"id": value})
        assert (status, answer) == (200, []), answer


async def test_body_integers_beyond_64_bits_are_refused(api):
    status, group = await api("POST", "auth/group/", {"name": "g"}, user="admin")
    assert status == 201, group
    status, answer = await api(
        "PATCH", f"auth/group/{group['id']}/", {"new_user_ids": [1, HUGE]}, user="admin"
    )
    assert_too_big(status, answer, ["body", "new_user_ids", 1])


async def test_attribute_values_beyond_64_bits_are_refused_not_rounded(api, dataset_path):
    status, answer = await api(
        "POST", dataset_path + "images/", {"zarr_url": "/z/a", "attributes": {"n": HUGE}}
    )
    assert_too_big(status, answer, ["body", "attributes", "n"])
    status, answer = await api(
        "POST", dataset_path + "images/query/", {"filters": {"attributes": {"n": HUGE}}}
    )
    assert_too_big(status, answer, ["body", "filters", "attributes", "n"])
    # Nothing was stored; a value of exactly 64 bits is kept exactly and found.
    big = 2**63 - 1
    status, answer = await api(
        "POST", dataset_path + "images/", {"zarr_url": "/z/a", "attributes": {"n": big}}
    )
    assert status == 201, answer
    status, page = await api(
        "POST", dataset_path + "images/query/", {"filters": {"attributes": {"n": big}}}
    )
    assert status == 200, page
    assert [image["attributes"] for image in page["images"]] == [{"n": big}]


async def test_import_attribute_values_beyond_64_bits_are_refused(api, project_path):
    body = {
        "name": "imported",
        "zarr_dir": "/z",
        "images": [{"zarr_url": "/z/a"}, {"zarr_url": "/z/b", "attributes": {"n": HUGE}}],
    }
    status, answer = await api("POST", f"{project_path}dataset/import/", body)
    assert_too_big(status, answer, ["body", "images", 1, "attributes", "n"])
    status, datasets = await api("GET", f"{project_path}dataset/")
    assert datasets == [], datasets


async def test_long_digit_runs_in_strings_and_floats_are_fine(api, dataset_path):
    digits = "1" * 40
    status, answer = await api(
        "POST",
        dataset_path + "images/",
        {"zarr_url": f"/z/{digits}", "attributes": {"x": 0.1234567890123456789012, digits: 1}},
    )
    assert status == 201, answer


# -- body sizes, per-image caps, large bodies parsed off the event loop --

BODY_LIMIT = 5_000_000
IMPORT_BODY_LIMIT = 6_000_000


@pytest.fixture
def fractal_config(fractal_config):
    return {
        **fractal_config,
        "max_body_bytes": BODY_LIMIT,
        "max_import_body_bytes": IMPORT_BODY_LIMIT,
    }


def padded(body, size):
    """`body` as JSON of exactly `size` bytes (blanks after it)."""
    text = json.dumps(body).encode()
    return text + b" " * (size - len(text))


async def test_bodies_above_the_route_limit_get_413_naming_it(api, project_path, dataset_path):
    image = {"zarr_url": "/z/a"}
    status, answer = await api(
        "POST", dataset_path + "images/", raw_body=padded(image, BODY_LIMIT + 1)
    )
    assert status == 413, answer
    assert "FractalJupyter.max_body_bytes" in answer["detail"]
    assert str(BODY_LIMIT) in answer["detail"]
    status, answer = await api("POST", dataset_path + "images/", raw_body=padded(image, BODY_LIMIT))
    assert status == 201, answer

    dataset = {"name": "imported", "zarr_dir": "/z", "images": []}
    path = f"{project_path}dataset/import/"
    status, answer = await api("POST", path, raw_body=padded(dataset, IMPORT_BODY_LIMIT + 1))
    assert status == 413, answer
    assert "FractalJupyter.max_import_body_bytes" in answer["detail"]
    status, answer = await api("POST", path, raw_body=padded(dataset, IMPORT_BODY_LIMIT))
    assert status == 201, answer


async def test_an_image_carries_at_most_1000_attributes_and_types(api, dataset_path):
    many = {f"k{index}": index for index in range(1001)}
    for field, values in (("attributes", many), ("types", dict.fromkeys(many, True))):
        status, answer = await api(
            "POST", dataset_path + "images/", {"zarr_url": "/z/a", field: values}
        )
        assert status == 422, answer
        assert answer["detail"][0]["loc"] == ["body", field]
        assert f"at most 1000 {field}" in answer["detail"][0]["msg"]
    del many["k1000"]
    status, answer = await api(
        "POST", dataset_path + "images/", {"zarr_url": "/z/a", "attributes": many}
    )
    assert status == 201, answer
    status, answer = await api(
        "PATCH", dataset_path + "images/", {"zarr_url": "/z/a", "attributes": {**many, "x": 1}}
    )
    assert status == 422, answer
    assert "at most 1000 attributes" in answer["detail"][0]["msg"]


@pytest.fixture
def parse_times(monkeypatch):
    """(start, end) of each JSON body parse of the server, in `time.perf_counter` seconds."""
    import time

    from fractal_jupyter.handlers import base

    times = []
    parse = base._parse_json_body

    def timed(model, raw):
        start = time.perf_counter()
        try:
            return parse(model, raw)
        finally:
            times.append((start, time.perf_counter(), threading.current_thread()))

    monkeypatch.setattr(base, "_parse_json_body", timed)
    return times


def slow_invalid_query():
    """An image query of 4 MB that validates for a while, then fails (zarr_url is no str,
    and there are too many filters)."""
    types = {f"type-{index}": True for index in range(200_000)}
    return {"zarr_url": 5, "filters": {"types": types}}


async def test_a_large_body_is_parsed_while_other_requests_are_answered(
    api, dataset_path, parse_times
):
    import asyncio
    import time

    big = asyncio.ensure_future(api("POST", dataset_path + "images/query/", slow_invalid_query()))
    answered = []
    while not big.done():
        status, _ = await api("GET", "api/alive/")
        assert status == 200
        answered.append(time.perf_counter())
    status, answer = await big
    assert status == 422, answer
    assert ["body", "zarr_url"] in [problem["loc"] for problem in answer["detail"]]
    # Parsed in a worker thread, so the event loop went on answering meanwhile (how many
    # answers fall inside the parse depends on the machine's load: not asserted).
    [(_start, _end, thread)] = parse_times
    assert thread is not threading.main_thread()
    assert answered


async def test_a_strangers_large_body_is_not_parsed(api, dataset_path, parse_times):
    status, answer = await api(
        "POST", dataset_path + "images/query/", slow_invalid_query(), user="bob"
    )
    assert status in (403, 404), answer
    assert "zarr_url" not in json.dumps(answer)
    assert parse_times == []
    status, answer = await api("POST", dataset_path + "images/query/", {"zarr_url": 5}, user="bob")
    assert status == 422, answer  # a small body: validated first, as fractal-server does


# -- content types --


async def test_a_text_plain_body_is_refused_naming_json(api, dataset_path):
    image = {"zarr_url": "/z/a"}
    status, answer = await api(
        "POST", dataset_path + "images/", image, headers={"Content-Type": "text/plain"}
    )
    assert status == 422, answer
    assert answer["detail"][0]["loc"] == ["body"]
    assert "application/json" in answer["detail"][0]["msg"]
    assert "text/plain" in answer["detail"][0]["msg"]
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        status, answer = await api(
            "POST", dataset_path + "images/query/", {}, headers={"Content-Type": content_type}
        )
        assert status == 200, answer


# -- URLs --


async def test_a_too_long_url_gets_414(api, dataset_path):
    status, answer = await api(
        "DELETE", dataset_path + "images/", params={"zarr_url": "x" * 40_000}
    )
    assert status == 414, answer
    assert "at most 32768" in answer["detail"]


def test_a_real_server_answers_a_100_kb_url(tmp_path):
    """Tornado's own limit on request heads (64 KiB) closed the connection without a word."""
    import http.client

    from tests.support.server import ServerProcess

    server = ServerProcess(tmp_path)
    server.start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        connection.request(
            "GET",
            "/fractal/api/v2/project/?" + "x" * 100_000,
            headers={"Authorization": f"token {server.token}"},
        )
        response = connection.getresponse()
        assert response.status == 414
        assert "at most 32768" in json.loads(response.read())["detail"]
        connection.close()
    finally:
        server.stop()


async def test_an_image_query_has_at_most_30_filters_of_each_kind(api, dataset_path):
    from fractal_jupyter.schemas.common import MAX_QUERY_FILTERS

    assert MAX_QUERY_FILTERS == 30
    many = {f"k{index}": index for index in range(MAX_QUERY_FILTERS + 1)}
    for kind, filters in (("attribute", many), ("type", dict.fromkeys(many, True))):
        status, answer = await api(
            "POST", dataset_path + "images/query/", {"filters": {f"{kind}s": filters}}
        )
        assert status == 422, answer
        assert answer["detail"][0]["loc"] == ["body", "filters"]
        assert f"at most {MAX_QUERY_FILTERS} {kind} filters" in answer["detail"][0]["msg"]
    del many[f"k{MAX_QUERY_FILTERS}"]
    # The most a query may carry is answered at once, on PostgreSQL too (planning grows
    # faster than linearly with the filters; see MAX_QUERY_FILTERS).
    status, page = await api(
        "POST",
        dataset_path + "images/query/",
        {"filters": {"attributes": many, "types": dict.fromkeys(many, True)}},
    )
    assert (status, page["total_count"]) == (200, 0), page


async def test_a_large_invalid_import_is_validated_while_other_requests_are_answered(
    api, project_path, monkeypatch
):
    import asyncio
    import sys
    import time

    from fractal_jupyter.services import dataset_import

    times = []
    validate = dataset_import._validate_whole

    def timed(raw):
        start = time.perf_counter()
        try:
            return validate(raw)
        finally:
            times.append((start, time.perf_counter()))

    monkeypatch.setattr(dataset_import, "_validate_whole", timed)
    # The invalid image first: the import goes straight to validating the whole body.
    images = [{"zarr_url": 5}]
    images += [{"zarr_url": f"/z/{index}", "attributes": {"i": index}} for index in range(40_000)]
    body = {"name": "imported", "zarr_dir": "/z", "images": images}
    # The validating thread hands the interpreter over every switch interval; a request's
    # round trip (client and server on this loop) takes a dozen hand-overs: at the default
    # 5 ms a loaded machine fitted none in the validation's 50 ms (seen on 2 busy CPUs).
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    try:
        work = asyncio.ensure_future(api("POST", f"{project_path}dataset/import/", body))
        answered = []
        while not work.done():
            status, _ = await api("GET", "api/alive/")
            answered.append(time.perf_counter())
        status, answer = await work
    finally:
        sys.setswitchinterval(interval)
    assert status == 422, answer
    assert [problem["loc"] for problem in answer["detail"]] == [["body", "images", 0, "zarr_url"]]
    [(start, end)] = times
    assert any(start < moment < end for moment in answered), (start, end, answered)


async def test_a_body_too_large_by_its_content_length_is_refused_before_it_is_sent(
    dataset_path, jp_http_port, jp_base_url, jp_serverapp
):
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", jp_http_port)
    token = jp_serverapp.identity_provider.token
    head = (
        f"POST {jp_base_url}fractal/{dataset_path}images/ HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        f"Authorization: token {token}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {10 * BODY_LIMIT}\r\n\r\n"
    )
    writer.write(head.encode())
    await writer.drain()
    # Not a byte of the body is sent: the answer comes all the same.
    answer = await asyncio.wait_for(reader.read(), timeout=30)
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    assert b" 413 " in status_line, answer
    assert b"FractalJupyter.max_body_bytes" in rest


async def test_a_refused_request_keeps_its_connection_open(
    api, jp_http_port, jp_base_url, jp_serverapp, in_thread
):
    """A refusal while the request is admitted (no credentials) must not close the keep-alive
    connection: clients reuse it for their next request."""
    import http.client

    token = jp_serverapp.identity_provider.token
    path = f"{jp_base_url}fractal/api/v2/project/"

    def two_requests_on_one_connection() -> list[tuple[int, bytes]]:
        connection = http.client.HTTPConnection("127.0.0.1", jp_http_port, timeout=30)
        answers = []
        try:
            for headers in ({}, {"Authorization": f"token {token}"}):
                connection.request("GET", path, headers=headers)
                response = connection.getresponse()
                answers.append((response.status, response.read()))
        finally:
            connection.close()
        return answers

    (refused, refusal), (status, projects) = await in_thread(two_requests_on_one_connection)
    assert refused in (401, 403), refusal
    assert b'"detail"' in refusal
    assert status == 200, projects


async def test_nan_is_refused_even_where_the_model_ignores_the_key(api, project_path):
    for token in ("NaN", "Infinity", "-Infinity"):
        body = f'{{"name": "renamed", "unknown": {token}}}'.encode()
        status, answer = await api("PATCH", project_path, raw_body=body)
        assert status == 422, answer
        assert answer["detail"][0]["loc"] == ["body"]
        assert token.lstrip("-") in answer["detail"][0]["msg"]
    status, project = await api("GET", project_path)
    assert project["name"] == "project"
    # The words themselves are fine inside strings.
    status, project = await api("PATCH", project_path, {"name": "NaN and Infinity"})
    assert status == 200, project
    assert project["name"] == "NaN and Infinity"
