"""Concurrent writers lose nothing (fractal-server 2.6.4 loses most images in this test)."""

import asyncio

CLIENTS = 8
IMAGES_PER_CLIENT = 500


async def test_concurrent_image_adds_keep_every_image(api):
    _, project = await api("POST", "api/v2/project/", {"name": "p"})
    _, dataset = await api(
        "POST", f"api/v2/project/{project['id']}/dataset/", {"name": "d", "zarr_dir": "/z"}
    )
    path = f"api/v2/project/{project['id']}/dataset/{dataset['id']}/images/"

    async def client(number: int) -> list[int]:
        statuses = []
        for index in range(IMAGES_PER_CLIENT):
            status, _ = await api(
                "POST",
                path,
                {
                    "zarr_url": f"/z/c{number}/{index}",
                    "attributes": {"client": number, "parity": index % 2},
                    "types": {"odd": index % 2 == 1},
                },
            )
            statuses.append(status)
        return statuses

    results = await asyncio.gather(*(client(number) for number in range(CLIENTS)))
    assert [status for statuses in results for status in statuses] == [201] * (
        CLIENTS * IMAGES_PER_CLIENT
    )
    _, page = await api("POST", path + "query/", params={"page_size": "1"})
    assert page["total_count"] == CLIENTS * IMAGES_PER_CLIENT
    assert sorted(page["attributes"]["client"]) == list(range(CLIENTS))
    _, odd = await api(
        "POST", path + "query/", {"filters": {"types": {"odd": True}}}, params={"page_size": "1"}
    )
    assert odd["total_count"] == CLIENTS * IMAGES_PER_CLIENT // 2
    _, one_client = await api("POST", path + "query/", {"filters": {"attributes": {"client": 3}}})
    assert sorted(image["zarr_url"] for image in one_client["images"]) == sorted(
        f"/z/c3/{index}" for index in range(IMAGES_PER_CLIENT)
    )
