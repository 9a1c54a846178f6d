async def test_alive_and_project(api):
    status, body = await api("GET", "api/alive/")
    assert status == 200 and body["alive"] is True
    status, body = await api("POST", "api/v2/project/", {"name": "p1"})
    assert status == 201, body
    status, body = await api("GET", "api/v2/project/")
    assert [p["name"] for p in body] == ["p1"]
