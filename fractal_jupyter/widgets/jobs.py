"""`JobMonitor`: a job's status, a progress bar per workflow task, its log's tail, a stop button.

While the job runs, a daemon thread polls the server (`get_job` with the live log,
`get_job_progress`, and `get_latest_job` for each task's images by status) every `interval`
seconds and updates the widgets; the kernel stays free.
The thread ends with the job, or with `close()`.
"""

from __future__ import annotations

import html
import threading
from typing import Any

import ipywidgets as w

from ..schemas.history import TaskStatusImages
from ..schemas.job import JobProgressRead, JobRead
from ._common import MessageArea, describe_error

LOG_TAIL_LINES = 40
STATUS_COLOURS = {
    "submitted": "#1565c0",
    "done": "#2e7d32",
    "failed": "#c62828",
    "pending": "#757575",
}
BAR_STYLES = {"submitted": "info", "done": "success", "failed": "danger", "pending": ""}


def _badge(status: str) -> str:
    colour = STATUS_COLOURS.get(status, "#333")
    return f'<b style="color:{colour}">{html.escape(status)}</b>'


class JobMonitor(w.VBox):  # type: ignore[misc]
    """Follow job `job_id` of project `project_id`.

    State: `status` ("submitted", "done", "failed"), `job` (JobRead), `progress`
    (JobProgressRead), `image_counts` (each workflow task's images of the dataset by status,
    from the run history), `log_tail` (text), `following` (the polling thread runs).
    `refresh()` updates once; `stop()` stops the job (as the stop button does).
    """

    def __init__(
        self,
        client: Any,
        project_id: int,
        job_id: int,
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
        self.image_counts: dict[int, TaskStatusImages | None] = {}
        self.status = "unknown"
        self.log_tail = ""
        self.message = MessageArea()
        self.title = w.HTML(f"<b>Job {job_id}</b>")
        self.status_html = w.HTML()
        self.stop_button = w.Button(description="Stop", icon="stop", button_style="danger")
        self.stop_button.on_click(lambda _b: self.stop())
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.refresh_button.on_click(lambda _b: self._refresh_clicked())
        self.tasks_box = w.VBox([])
        self.bars: dict[int, w.IntProgress] = {}
        self.log_area = w.Textarea(
            value="", disabled=True, layout=w.Layout(width="100%", height="12em")
        )
        self.log_area.add_class("fractal-job-log")
        self.children = [
            w.HBox([self.title, self.status_html, self.refresh_button, self.stop_button]),
            self.tasks_box,
            self.log_area,
            self.message.widget,
        ]
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self.refresh()
        if follow and self.status == "submitted":
            self.follow()

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
        with self._lock:
            try:
                job = self.client.get_job(self.project_id, self.job_id, show_tmp_logs=True)
                progress = self.client.get_job_progress(self.project_id, self.job_id)
                counts = self._image_counts(job)
            except Exception as error:
                self.message.fail(f"refresh failed: {describe_error(error)}")
                return
            self.job, self.progress, self.status = job, progress, job.status
            self.image_counts = counts
            self._show()

    def _image_counts(self, job: JobRead) -> dict[int, TaskStatusImages | None]:
        if job.workflow_id is None or job.dataset_id is None:
            return {}
        latest = self.client.get_latest_job(self.project_id, job.workflow_id, job.dataset_id)
        return {int(key): counts for key, counts in latest.task_statuses.items()}

    def _refresh_clicked(self) -> None:
        self.refresh()
        if not self.message.failed:
            self.message.ok(f"refreshed: {self.status}")

    def _show(self) -> None:
        assert self.job is not None and self.progress is not None
        job = self.job
        ended = f" (ended {job.end_timestamp:%H:%M:%S})" if job.end_timestamp else ""
        self.status_html.value = f"&nbsp;{_badge(job.status)}{ended}"
        self.title.value = (
            f"<b>Job {job.id}</b>: workflow {html.escape(str(job.workflow_dump.get('name')))}"
            f" on dataset {html.escape(str(job.dataset_dump.get('name')))}"
        )
        rows = []
        for task in self.progress.tasks:
            bar = self.bars.get(task.workflow_task_id)
            if bar is None:
                bar = w.IntProgress(min=0, layout=w.Layout(width="240px"))
                self.bars[task.workflow_task_id] = bar
            total = task.calls_total or 0
            bar.max = max(total, 1)
            bar.value = min(task.calls_done, bar.max)
            bar.bar_style = BAR_STYLES.get(task.status, "")
            calls = f"{task.calls_done}/{total if task.calls_total is not None else '?'} calls"
            counts = self.image_counts.get(task.workflow_task_id)
            if counts is not None:
                calls += (
                    f"; images: {counts.num_done_images} done, {counts.num_failed_images} "
                    f"failed, {counts.num_submitted_images} running"
                )
            label = w.HTML(f"{html.escape(task.task_name)}", layout=w.Layout(width="220px"))
            rows.append(w.HBox([label, bar, w.HTML(f"&nbsp;{_badge(task.status)} {calls}")]))
        self.tasks_box.children = rows
        lines = (job.log or "").splitlines()
        self.log_tail = "\n".join(lines[-LOG_TAIL_LINES:])
        self.log_area.value = self.log_tail
        self.stop_button.disabled = job.status != "submitted"

    def stop(self) -> None:
        """Stop the job (its task processes end, the job fails)."""
        try:
            self.client.stop_job(self.project_id, self.job_id)
        except Exception as error:
            self.message.fail(f"stop failed: {describe_error(error)}")
            return
        self.message.ok("stop requested")
        self.refresh()
