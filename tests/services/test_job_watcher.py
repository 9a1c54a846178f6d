"""The job watcher while its database is down: it retries with backoff, however often the
running jobs write events, and says so once with a traceback, then in one line per attempt.
And at the server's stop: it ends, whatever arrives at that moment."""

from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path
from typing import Any

import pytest

from fractal_jupyter.runner.launcher import JobLauncher
from fractal_jupyter.services import job_watcher
from fractal_jupyter.services.job_watcher import JobWatcher


def _watcher_without_database(jobs_dir: Path, poll_interval: float) -> JobWatcher:
    """The tests replace `sync_submitted_jobs`, the watcher's only use of its database."""
    return JobWatcher(
        database=None,  # type: ignore[arg-type]
        launcher=JobLauncher(),
        jobs_dir=jobs_dir,
        log=logging.getLogger("watcher"),
        poll_interval=poll_interval,
    )


def test_passes_that_fail_back_off_and_log_one_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    attempts: list[float] = []
    down_until = 6

    async def sync_submitted_jobs(database: Any, launcher: Any) -> dict[int, Path]:
        attempts.append(asyncio.get_running_loop().time())
        if len(attempts) <= down_until:
            raise OSError("Connect call failed ('127.0.0.1', 5432)")
        return {}

    monkeypatch.setattr(job_watcher, "sync_submitted_jobs", sync_submitted_jobs)

    async def run() -> None:
        watcher = _watcher_without_database(tmp_path, poll_interval=0.02)
        watcher.start()
        # A running job writes events all the time: each is news for the watcher. Sent
        # until the database is back (a loaded machine stretches the loop, not the backoff).
        deadline = asyncio.get_running_loop().time() + 30
        while len(attempts) <= down_until and asyncio.get_running_loop().time() < deadline:
            watcher.job_submitted()
            events_while_down.append(1)
            await asyncio.sleep(0.01)
        await watcher.stop()

    events_while_down: list[int] = []
    with caplog.at_level(logging.INFO, logger="watcher"):
        asyncio.run(run())
    assert len(attempts) > down_until, "the watcher did not try again until it recovered"
    # 0.02, 0.04, 0.08, 0.16, 0.32, 0.64 s between failed attempts: not one per event.
    failed = attempts[: down_until + 1]
    assert len(events_while_down) > 2 * len(failed)
    gaps = [later - earlier for earlier, later in itertools.pairwise(failed)]
    assert all(gap >= 0.015 * 2**index for index, gap in enumerate(gaps)), gaps
    tracebacks = [record for record in caplog.records if record.exc_info]
    assert len(tracebacks) == 1
    still = [record for record in caplog.records if "still fails" in record.getMessage()]
    assert len(still) == down_until - 1
    assert "Connect call failed" in still[0].getMessage()
    assert any("following the running jobs again" in r.getMessage() for r in caplog.records)


def test_stop_ends_the_watcher_when_news_comes_in_the_same_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A running job's event and the server's stop in one loop turn: the stop must end the
    watcher (Python 3.11's wait_for used to return there and the watcher waited on)."""
    passes: list[int] = []

    async def sync_submitted_jobs(database: Any, launcher: Any) -> dict[int, Path]:
        passes.append(1)
        return {1: tmp_path}  # a job runs: the watcher waits with a timeout between passes

    monkeypatch.setattr(job_watcher, "sync_submitted_jobs", sync_submitted_jobs)

    async def run() -> None:
        watcher = _watcher_without_database(tmp_path, poll_interval=60)
        watcher.start()
        while not passes:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # the watcher waits for news
        # The stop's first step (the cancel) and the news land in the same loop turn.
        stopping = asyncio.ensure_future(watcher.stop())
        watcher.job_submitted()
        stopped, _ = await asyncio.wait({stopping}, timeout=5)
        assert stopped, "the watcher went on after stop() (its cancel was lost)"
        after_stop = len(passes)
        watcher.job_submitted()
        await asyncio.sleep(0.2)
        assert len(passes) == after_stop, "the watcher still makes passes after its stop"

    asyncio.run(run())
