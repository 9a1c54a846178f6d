"""Job folder downloads and dataset exports: complete, without what lies outside the job
folder, and streamed or rendered while the server keeps answering other requests."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import os
import time
import zipfile

import pytest
from tornado.httpclient import HTTPClientError

from tests.conftest import fractal_state_of


@pytest.fixture
def job_folder(project_path, jp_serverapp, jp_asyncio_loop, tmp_path):
    """(download path, folder) of a finished job of alice's project, its folder empty."""
    from fractal_jupyter.db.models import Job

    folder = tmp_path / "job_000001"
    folder.mkdir()
    project_id = int(project_path.split("/")[-2])

    async def make():
        state = fractal_state_of(jp_serverapp)
        await state.ensure_ready()
        async with state.database.session(write=True) as session:
            job = Job(
                project_id=project_id,
                user_email="alice@example.org",
                owner="alice",
                project_dump={},
                workflow_dump={},
                dataset_dump={},
                working_dir=str(folder),
                first_task_index=0,
                last_task_index=0,
                status="done",
            )
            session.add(job)
            await session.flush()
            return job.id

    job_id = jp_asyncio_loop.run_until_complete(make())
    return f"{project_path}job/{job_id}/download/", folder


async def download(jp_fetch, path, user="alice"):
    response = await jp_fetch("fractal", path, headers={"X-Test-User": user})
    assert response.headers["Content-Type"] == "application/x-zip-compressed"
    return zipfile.ZipFile(io.BytesIO(response.body))


async def test_links_are_left_out_of_the_archive(jp_fetch, job_folder, tmp_path):
    path, folder = job_folder
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("the secret outside the job folder")
    (folder / "task").mkdir()
    (folder / "task" / "0.log").write_text("a log line")
    (folder / "workflow.log").write_text("the workflow log")
    (folder / "leak.txt").symlink_to(secret)
    (folder / "task" / "leak-dir").symlink_to(secret.parent, target_is_directory=True)
    (folder / "inside-link.log").symlink_to(folder / "workflow.log")
    os.mkfifo(folder / "fifo")

    archive = await download(jp_fetch, path)
    assert sorted(archive.namelist()) == ["task/0.log", "workflow.log"]
    assert archive.read("task/0.log") == b"a log line"
    contents = b"".join(archive.read(name) for name in archive.namelist())
    assert b"secret" not in contents


async def test_the_archive_of_a_multi_megabyte_folder_is_complete(jp_fetch, job_folder):
    path, folder = job_folder
    files = {f"task_{index}/{index}.bin": os.urandom(700_000 * index) for index in range(1, 5)}
    files.update({f"small/{index:03}.log": f"line {index}\n".encode() for index in range(300)})
    for name, data in files.items():
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(data)

    archive = await download(jp_fetch, path)
    assert archive.testzip() is None
    assert {name: archive.read(name) for name in archive.namelist()} == files


async def test_a_strangers_download_is_refused(api, job_folder):
    path, folder = job_folder
    (folder / "workflow.log").write_text("private")
    status, answer = await api("GET", path, user="bob")
    assert status in (403, 404), answer


@pytest.fixture
def zip_times(monkeypatch):
    """(start, end) of each zip archive the server writes, in `time.perf_counter` seconds."""
    times = []
    original = zipfile.ZipFile

    class TimedZipFile(original):
        def __init__(self, *args, **kwargs):
            self.started = time.perf_counter()
            super().__init__(*args, **kwargs)

        def close(self):
            writing = self.fp is not None and self.mode == "w"
            super().close()
            if writing:
                times.append((self.started, time.perf_counter()))

    monkeypatch.setattr(zipfile, "ZipFile", TimedZipFile)
    return times


async def answered_while(api, work):
    """The moments other requests were answered while `work` (a future) ran."""
    answered = []
    while not work.done():
        status, _ = await api("GET", "api/alive/")
        assert status == 200
        answered.append(time.perf_counter())
    return answered


async def test_other_requests_are_answered_while_an_archive_is_written(
    api, jp_fetch, job_folder, zip_times
):
    path, folder = job_folder
    for index in range(4):
        (folder / f"{index}.bin").write_bytes(os.urandom(4_000_000))
    work = asyncio.ensure_future(download(jp_fetch, path))
    answered = await answered_while(api, work)
    archive = await work
    assert len(archive.namelist()) == 4
    [(start, end)] = zip_times
    assert any(start < moment < end for moment in answered), (start, end, answered)


async def test_an_export_is_complete_and_leaves_the_server_responsive(
    api, jp_fetch, project_path, jp_serverapp
):
    from sqlalchemy import insert

    from fractal_jupyter.db.models import Image

    filters = {"attributes": {"well": "W1"}, "types": {"is_3D": True}}
    status, dataset = await api(
        "POST", f"{project_path}dataset/", {"name": "big", "zarr_dir": "/z", "filters": filters}
    )
    assert status == 201, dataset
    images = [
        {
            "zarr_url": f"/z/plate.zarr/{index // 100}/{index % 100}/0",
            "origin": None,
            "attributes": {"well": f"W{index // 100}", "index": index, "ratio": index / 3},
            "types": {"is_3D": index % 2 == 0},
        }
        for index in range(30_000)
    ]
    # Written straight to the image table (the export reads only it): an import of this
    # size would cost the test seconds.
    state = fractal_state_of(jp_serverapp)
    async with state.database.session(write=True) as session:
        await session.execute(insert(Image), [{**i, "dataset_id": dataset["id"]} for i in images])

    started = time.perf_counter()
    work = asyncio.ensure_future(
        jp_fetch(
            "fractal",
            f"{project_path}dataset/{dataset['id']}/export/",
            headers={"X-Test-User": "alice"},
        )
    )
    answered = await answered_while(api, work)
    finished = time.perf_counter()
    exported = json.loads((await work).body)
    assert exported == {"name": "big", "zarr_dir": "/z", "images": images, "filters": filters}
    # While the export is read and rendered, other requests keep being answered: no wait
    # between two answers is anywhere near the whole export (it was all of it).
    moments = [started, *answered, finished]
    longest_wait = max(later - earlier for earlier, later in itertools.pairwise(moments))
    # (On PostgreSQL the whole export takes a fraction of a second: a wait of a few GIL
    # switches is then no stall.)
    assert longest_wait < max((finished - started) / 2, 0.5), (longest_wait, finished - started)


async def test_a_download_of_a_folder_that_is_gone_is_404(jp_fetch, job_folder):
    path, folder = job_folder
    folder.rmdir()
    with pytest.raises(HTTPClientError) as error:
        await jp_fetch("fractal", path, headers={"X-Test-User": "alice"})
    assert error.value.code == 404
