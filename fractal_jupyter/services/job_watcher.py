"""Following the running jobs, and sleeping while none runs.

A pass over the database (`sync_submitted_jobs`) applies the jobs' new events and fails those
whose process died. Passes run when something happened, never on a clock while nothing runs:

- a job was submitted here (`job_submitted`);
- a running job's process wrote to its `events.jsonl` (a file watch on its folder);
- another server of the same runner (host and uid: only those follow a job, see
  `sync_submitted_jobs`) submitted a job: a submission touches the doorbell file in the jobs
  folder, which every such server watches. That works on SQLite and PostgreSQL alike, with no
  connection kept open and no query while idle. Servers of one runner that share a database
  are expected to share the jobs folder (the default, under the user's Jupyter data dir);
- while jobs run (or a job process of ours is still to be reaped), every `poll_interval`:
  a job process that crashed writes no event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from ..db.engine import Database
from ..file_watch import FileWatch, watch_files
from ..runner.files import DOORBELL_FILE, EVENTS_FILE
from ..runner.launcher import JobLauncher
from .job_events import sync_submitted_jobs

# Longest wait between two attempts while passes fail (the database is down).
LONGEST_RETRY_SECONDS = 30.0


class JobWatcher:
    def __init__(
        self,
        database: Database,
        launcher: JobLauncher,
        jobs_dir: Path,
        log: logging.Logger,
        poll_interval: float,
        on_pass: Callable[[dict[int, Path]], None] | None = None,
    ) -> None:
        self.database = database
        self.launcher = launcher
        self.jobs_dir = jobs_dir
        self.log = log
        self.poll_interval = poll_interval
        # Told the running jobs after every pass (the server's activity, see state.py).
        self.on_pass = on_pass
        # How many passes over the database ran (for tests and logs).
        self.passes = 0
        self._news = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def job_submitted(self) -> None:
        """A job was just submitted here: follow it now, and tell the other servers."""
        self._news.set()
        try:
            # Opened and closed: the other servers' inotify sees IN_CLOSE_WRITE.
            with (self.jobs_dir / DOORBELL_FILE).open("a"):
                pass
        except OSError as error:
            self.log.warning("fractal_jupyter: could not ring %s: %s", DOORBELL_FILE, error)

    async def _run(self) -> None:
        """Runs for the life of the server; a job started before a restart is picked up by
        the first pass, since all its state is in the database and in its folder."""
        with contextlib.suppress(OSError):
            self.jobs_dir.mkdir(parents=True, exist_ok=True)
        files = watch_files((EVENTS_FILE, DOORBELL_FILE), self._news.set)
        # The doorbell is watched before the first pass, so no submission falls in between.
        files.set_folders([self.jobs_dir], busy=False)
        running: dict[int, Path] = {}
        failures = 0
        try:
            while True:
                self._news.clear()
                try:
                    running = await sync_submitted_jobs(self.database, self.launcher)
                    if self.on_pass is not None:
                        self.on_pass(running)
                    if failures:
                        self.log.info(
                            "fractal_jupyter: following the running jobs again (after %s "
                            "failed attempts)",
                            failures,
                        )
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    failures += 1
                    self._report_failure(error, failures)
                self.passes += 1
                self.launcher.reap()
                if failures:
                    # The database is down or refuses: the jobs' events wait in their files.
                    # Retry with backoff, whatever the files say meanwhile.
                    await asyncio.sleep(self._retry_delay(failures))
                    continue
                await self._wait(files, running)
        finally:
            files.close()

    def _retry_delay(self, failures: int) -> float:
        return float(min(self.poll_interval * 2 ** (failures - 1), LONGEST_RETRY_SECONDS))

    def _report_failure(self, error: Exception, failures: int) -> None:
        """The first failure with its traceback, then one line per attempt (fewer and fewer:
        the delay doubles up to LONGEST_RETRY_SECONDS)."""
        if failures == 1:
            self.log.exception("fractal_jupyter: following the running jobs failed")
            return
        reason = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        self.log.warning(
            "fractal_jupyter: following the running jobs still fails (%s attempts): %s; "
            "next attempt in %.1f s",
            failures,
            reason,
            self._retry_delay(failures),
        )

    async def _wait(self, files: FileWatch, running: dict[int, Path]) -> None:
        files.set_folders([self.jobs_dir, *running.values()], busy=bool(running))
        polling = bool(running) or self.launcher.has_children()
        # asyncio.timeout, not wait_for: Python 3.11's wait_for returns, instead of raising,
        # when news comes in the loop turn of stop()'s cancel, and stop() then waits forever.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.poll_interval if polling else None):
                await self._news.wait()
