"""`JobMonitor`: a job's status, start and duration, a progress bar per workflow task with its
images by status, the whole log (searchable, errors highlighted, a failed job's error on top),
a stop button and a download of the job folder. `JobList`: the user's jobs, newest first, in
pages; selecting one opens its monitor below.

While a monitored job runs, a daemon thread polls the server (`get_job` with the live log,
`get_job_progress`, and `get_latest_job` for each task's images by status) every `interval`
seconds and updates the widgets; the kernel stays free.
The thread ends with the job, or with `close()`.
"""

from __future__ import annotations

import html
import threading
from pathlib import Path
from typing import Any

import ipywidgets as w

from ..schemas.job import JobProgressRead, JobRead, TaskProgressRead
from ._common import MessageArea, describe_error
from .rows import RowTable, duration, failure_summary, local_time, render_log, style_sheet
from .wording import plain_log, step_title

LOG_TAIL_LINES = 40
# The log view renders at most this much (the end of the log); the zip has all of it.
LOG_SHOWN_CHARS = 2_000_000
JOB_PAGE_SIZE = 20
STATUS_COLOURS = {
    "submitted": "#1565c0",
    "done": "#2e7d32",
    "failed": "#c62828",
    "pending": "#616161",
}
STATUS_WORDS = {"submitted": "running", "done": "done", "failed": "failed", "pending": "waiting"}
BAR_STYLES = {"submitted": "info", "done": "success", "failed": "danger", "pending": ""}


def _badge(status: str) -> str:
    colour = STATUS_COLOURS.get(status, "#333")
    return f'<b style="color:{colour}">{html.escape(STATUS_WORDS.get(status, status))}</b>'


def images_text(task: TaskProgressRead) -> str:
    """A task's input images in the job by status, in words ("" before it has any)."""
    total = task.images_submitted + task.images_done + task.images_failed
    if total == 0:
        return ""
    parts = [f"{task.images_done} done"]
    if task.images_failed:
        parts.append(f"{task.images_failed} failed")
    if task.images_submitted:
        parts.append(f"{task.images_submitted} running")
    return f"{total} image{'s' if total != 1 else ''}: {', '.join(parts)}"


def find_job(client: Any, job_id: int) -> JobRead | None:
    """One of the caller's jobs by id, whatever its project (None: not theirs, or none)."""
    jobs: list[JobRead] = client.list_user_jobs(log=False)
    return next((job for job in jobs if job.id == job_id), None)


class JobMonitor(w.VBox):  # type: ignore[misc]
    """Follow job `job_id` (of project `project_id`: looked up when None).

    State: `status` ("submitted", "done", "failed"; "unknown" when the job cannot be read),
    `job` (JobRead), `progress` (JobProgressRead: per task its runs and its images by
    status in this job), `log_text` (the whole log, as the server has it), `shown_log` (the log
    in plain words: steps from 1, tasks by kind, `wording.plain_log`), `log_tail` (its last
    lines), `error_summary` (a failed job's error, in plain words), `following` (the polling
    thread runs). `refresh()` updates once;
    `stop()` stops the job; `search_log(text)` marks the lines with `text`;
    `download(folder)` saves the job folder as a zip.
    """

    def __init__(
        self,
        client: Any,
        project_id: int | None = None,
        job_id: int | None = None,
        *,
        interval: float = 1.0,
        follow: bool = True,
    ) -> None:
        super().__init__()
        self.add_class("fractal-job-monitor")
        self.client = client
        self.project_id = project_id
        self.job_id = job_id
        self.interval = interval
        self.job: JobRead | None = None
        self.progress: JobProgressRead | None = None
        self.status = "unknown"
        self.log_text = ""
        self.shown_log = ""
        self.log_tail = ""
        self.error_summary = ""
        self.downloaded: Path | None = None
        self.message = MessageArea()
        self.title = w.HTML(f"<b>Job {job_id}</b>")
        self.status_html = w.HTML()
        self.times_html = w.HTML()
        self.stop_button = w.Button(description="Stop", icon="stop", button_style="danger")
        self.stop_button.on_click(lambda _b: self.stop())
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.refresh_button.on_click(lambda _b: self._refresh_clicked())
        self.download_button = w.Button(
            description="Download (zip)",
            icon="download",
            tooltip="Save the job folder (arguments, outputs, logs) as a zip next to the notebook",
        )
        self.download_button.on_click(lambda _b: self.download())
        self.tasks_box = w.VBox([])
        self.bars: dict[int, w.IntProgress] = {}
        self.error_html = w.HTML()
        self.search_input = w.Text(
            placeholder="search the log", continuous_update=False, layout=w.Layout(width="240px")
        )
        self.search_input.observe(lambda _c: self._show_log(), "value")
        self.only_matching = w.Checkbox(
            value=False, description="only matching lines", indent=False
        )
        self.only_matching.observe(lambda _c: self._show_log(), "value")
        self.search_count = w.HTML()
        self.log_html = w.HTML(
            layout=w.Layout(max_height="24em", overflow="auto", width="100%", margin="0")
        )
        self.log_html.add_class("fractal-log")
        self.children = [
            style_sheet(),
            w.HBox(
                [self.title, self.status_html, self.times_html],
                layout=w.Layout(flex_flow="row wrap", align_items="center"),
            ),
            w.HBox(
                [self.refresh_button, self.stop_button, self.download_button],
                layout=w.Layout(flex_flow="row wrap"),
            ),
            self.tasks_box,
            self.error_html,
            w.HBox(
                [self.search_input, self.only_matching, self.search_count],
                layout=w.Layout(flex_flow="row wrap", align_items="center"),
            ),
            self.log_html,
            self.message.widget,
        ]
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        if job_id is None:
            self.message.fail("no job id given")
        elif project_id is None:
            self._find_project(job_id)
        if self.project_id is not None and self.job_id is not None:
            self.refresh()
        self._enable_buttons()
        if follow and self.status == "submitted":
            self.follow()

    @classmethod
    def from_job_id(cls, client: Any, job_id: int, **options: Any) -> JobMonitor:
        """The monitor of one of the caller's jobs, whatever its project."""
        return cls(client, None, job_id, **options)

    def _find_project(self, job_id: int) -> None:
        found = self.message.attempt("looking for the job", lambda: find_job(self.client, job_id))
        if found is None:
            if not self.message.failed:
                self.message.fail(f"job {job_id} is not one of your jobs")
            self.title.value = f"<b>Job {job_id}</b>: not found"
            return
        self.project_id = found.project_id
        if self.project_id is None:
            self.message.fail(f"job {job_id} belongs to a deleted project")

    # polling
    @property
    def following(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def follow(self) -> None:
        """Poll in a daemon thread until the job ends (or `close()`)."""
        if self.following:
            return
        self._closing.clear()
        self._thread = threading.Thread(
            target=self._follow, name=f"fractal-job-{self.job_id}", daemon=True
        )
        self._thread.start()

    def _follow(self) -> None:
        while not self._closing.wait(self.interval):
            self.refresh()
            if self.status != "submitted":
                return

    def wait(self, timeout: float | None = None) -> str:
        """Block until the polling thread ends (the job ended); the status."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.status

    def close(self) -> None:
        self._closing.set()
        super().close()

    # state
    def refresh(self) -> None:
        if self.project_id is None or self.job_id is None:
            return
        project_id, job_id = self.project_id, self.job_id
        with self._lock:
            try:
                job = self.client.get_job(project_id, job_id, show_tmp_logs=True)
                progress = self.client.get_job_progress(project_id, job_id)
            except Exception as error:
                self.message.fail(f"refresh failed: {describe_error(error)}")
                return
            self.job, self.progress, self.status = job, progress, job.status
            self._show()

    def _refresh_clicked(self) -> None:
        self.refresh()
        if not self.message.failed:
            self.message.ok(f"refreshed: {STATUS_WORDS.get(self.status, self.status)}")

    def _enable_buttons(self) -> None:
        self.stop_button.disabled = self.status != "submitted"
        self.refresh_button.disabled = self.job is None
        self.download_button.disabled = self.job is None

    def _show(self) -> None:
        assert self.job is not None and self.progress is not None
        job = self.job
        self.status_html.value = f"&nbsp;{_badge(job.status)}&nbsp;"
        ended = f", ended {local_time(job.end_timestamp)}" if job.end_timestamp else ""
        took = duration(job.start_timestamp, job.end_timestamp)
        self.times_html.value = (
            f"<span>started {local_time(job.start_timestamp)}{ended}; "
            f"{'took' if job.end_timestamp else 'running for'} {took}</span>"
        )
        self.title.value = (
            f"<b>Job {job.id}</b>: workflow {html.escape(str(job.workflow_dump.get('name')))}"
            f" on dataset {html.escape(str(job.dataset_dump.get('name')))}"
        )
        rows = []
        for task in self.progress.tasks:
            bar = self.bars.get(task.workflow_task_id)
            if bar is None:
                bar = w.IntProgress(min=0, layout=w.Layout(width="200px"))
                self.bars[task.workflow_task_id] = bar
            total = task.calls_total or 0
            bar.max = max(total, 1)
            bar.value = min(task.calls_done, bar.max) if task.status != "done" else bar.max
            bar.bar_style = BAR_STYLES.get(task.status, "")
            title = step_title(task.order, task.task_name, task.task_type)
            label = w.HTML(
                html.escape(title),
                layout=w.Layout(flex="0 1 360px", min_width="0"),
            )
            label.add_class("fractal-step-title")
            counts = images_text(task)
            text = f"&nbsp;{_badge(task.status)}&nbsp;{html.escape(counts)}"
            rows.append(w.HBox([label, bar, w.HTML(text)], layout=w.Layout(flex_flow="row wrap")))
        self.tasks_box.children = rows
        log = job.log or ""
        if log != self.log_text:
            self.log_text = log
            types = {t.order: t.task_type for t in self.progress.tasks if t.order is not None}
            self.shown_log = plain_log(log, types)
            self.log_tail = "\n".join(self.shown_log.splitlines()[-LOG_TAIL_LINES:])
            self._show_log()
        self.error_summary = failure_summary(self.shown_log) if job.status == "failed" else ""
        self.error_html.value = (
            "<div style='border-left:4px solid #c62828;background:#fdecea;color:#5f0000;"
            "padding:4px 8px;white-space:pre-wrap;font-family:var(--jp-code-font-family,"
            f"monospace);font-size:12px'><b>Why it failed</b>\n{html.escape(self.error_summary)}"
            "</div>"
            if self.error_summary
            else ""
        )
        self._enable_buttons()

    def search_log(self, text: str, only_matching: bool = False) -> int:
        """Mark the log lines that contain `text` (case-insensitive); how many do."""
        self.only_matching.value = only_matching
        self.search_input.value = text
        return self._show_log()

    def _show_log(self) -> int:
        log = self.shown_log
        cut = len(log) > LOG_SHOWN_CHARS
        if cut:
            log = log[-LOG_SHOWN_CHARS:].partition("\n")[2]
        rendered, matches = render_log(log, self.search_input.value, self.only_matching.value)
        note = (
            "<i>(the beginning of the log is left out here; the zip has all of it)</i>\n"
            if cut
            else ""
        )
        self.log_html.value = f"<pre>{note}{rendered}</pre>" if log else ""
        search = self.search_input.value
        self.search_count.value = (
            f"&nbsp;{matches} line{'s' if matches != 1 else ''} with "
            f"&ldquo;{html.escape(search)}&rdquo;"
            if search
            else ""
        )
        return matches

    def download(self, folder: str | Path | None = None) -> Path | None:
        """Save the job folder as `fractal-job-<id>.zip` in `folder` (default: the kernel's
        working directory, next to the notebook); the path, or None when refused."""
        if self.project_id is None or self.job_id is None:
            self.message.fail("no job to download")
            return None
        path = Path(folder or ".") / f"fractal-job-{self.job_id}.zip"
        project_id, job_id = self.project_id, self.job_id
        data = self.message.attempt(
            "download", lambda: self.client.download_job(project_id, job_id, path)
        )
        if data is None:
            return None
        self.downloaded = path
        where = path.resolve()
        self.message.ok(
            f"saved the job folder as {path.name} ({len(data) / 1024:.0f} KiB) in {where.parent}"
        )
        return path

    def stop(self) -> None:
        """Stop the job (its task processes end, the job fails)."""
        if self.project_id is None or self.job_id is None:
            return
        try:
            self.client.stop_job(self.project_id, self.job_id)
        except Exception as error:
            self.message.fail(f"stop failed: {describe_error(error)}")
            return
        self.message.ok("stop requested")
        self.refresh()


class JobList(w.VBox):  # type: ignore[misc]
    """The caller's jobs (of project `project_id`, or of all their projects), newest first,
    `page_size` per page; selecting one opens its `JobMonitor` below.

    State: `jobs` (all, newest first), `page`, `page_count`, `shown` (this page's jobs),
    `monitor` (the open JobMonitor or None). `refresh()` reads the jobs again; `go(page)`,
    `select(index)` (a row of the page) and `open_job(job_id)` do what the widgets do.
    """

    def __init__(
        self, client: Any, project_id: int | None = None, *, page_size: int = JOB_PAGE_SIZE
    ) -> None:
        super().__init__()
        self.add_class("fractal-job-list")
        self.client = client
        self.project_id = project_id
        self.page_size = max(1, page_size)
        self.page = 1
        self.jobs: list[JobRead] = []
        self.monitor: JobMonitor | None = None
        self.message = MessageArea()
        self.title = w.HTML(
            "<b>Jobs</b>" if project_id is None else f"<b>Jobs of project {project_id}</b>"
        )
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.prev_button = w.Button(
            icon="chevron-left", tooltip="newer jobs", layout=w.Layout(width="40px")
        )
        self.next_button = w.Button(
            icon="chevron-right", tooltip="older jobs", layout=w.Layout(width="40px")
        )
        self.prev_button.on_click(lambda _b: self.go(self.page - 1))
        self.next_button.on_click(lambda _b: self.go(self.page + 1))
        self.page_label = w.HTML()
        self.rows = RowTable(self._selected, rows_shown=min(self.page_size, 12) + 1, max_width=32)
        self.monitor_box = w.VBox([])
        self.children = [
            style_sheet(),
            w.HBox(
                [
                    self.title,
                    self.refresh_button,
                    self.prev_button,
                    self.page_label,
                    self.next_button,
                ],
                layout=w.Layout(flex_flow="row wrap", align_items="center"),
            ),
            self.rows.widget,
            self.message.widget,
            self.monitor_box,
        ]
        self.refresh()

    @property
    def page_count(self) -> int:
        return max(1, -(-len(self.jobs) // self.page_size))

    @property
    def shown(self) -> list[JobRead]:
        first = (self.page - 1) * self.page_size
        return self.jobs[first : first + self.page_size]

    def refresh(self) -> None:
        """Read the jobs again (without their logs) and show the current page."""
        if self.project_id is None:
            jobs = self.message.attempt(
                "reading the jobs", lambda: self.client.list_user_jobs(log=False)
            )
        else:
            project_id = self.project_id
            jobs = self.message.attempt(
                "reading the jobs", lambda: self.client.list_jobs(project_id, log=False)
            )
        if jobs is None:
            return
        self.message.clear()
        self.jobs = sorted(jobs, key=lambda job: (job.start_timestamp, job.id), reverse=True)
        self.go(self.page)

    def go(self, page: int) -> None:
        self.page = min(max(1, page), self.page_count)
        self.page_label.value = f"&nbsp;page {self.page} / {self.page_count}&nbsp;"
        self.prev_button.disabled = self.page <= 1
        self.next_button.disabled = self.page >= self.page_count
        open_id = self.monitor.job_id if self.monitor is not None else None
        shown = self.shown
        selected = next((i for i, job in enumerate(shown) if job.id == open_id), None)
        self.rows.set_rows(
            ["job", "status", "workflow", "dataset", "started", "duration"],
            [
                [
                    job.id,
                    STATUS_WORDS.get(job.status, job.status),
                    job.workflow_dump.get("name", ""),
                    job.dataset_dump.get("name", ""),
                    local_time(job.start_timestamp),
                    duration(job.start_timestamp, job.end_timestamp),
                ]
                for job in shown
            ],
            selected,
        )
        if not self.jobs:
            self.message.ok("no jobs yet")

    def select(self, index: int | None) -> None:
        """Select row `index` of the page, as a click does."""
        self.rows.select(index)

    def _selected(self, index: int) -> None:
        job = self.shown[index]
        self._open(job.project_id, job.id)

    def open_job(self, job_id: int) -> JobMonitor | None:
        """Open the monitor of job `job_id` (one of the list's jobs)."""
        position = next((i for i, job in enumerate(self.jobs) if job.id == job_id), None)
        if position is None:
            self.message.fail(f"job {job_id} is not in this list")
            return None
        monitor = self._open(self.jobs[position].project_id, job_id)
        self.go(position // self.page_size + 1)  # its page, its row selected
        return monitor

    def _open(self, project_id: int | None, job_id: int) -> JobMonitor | None:
        if project_id is None:
            self.message.fail(f"job {job_id} belongs to a deleted project")
            return None
        if self.monitor is not None:
            self.monitor.close()
        self.monitor = JobMonitor(self.client, project_id, job_id)
        self.monitor_box.children = [self.monitor]
        return self.monitor
