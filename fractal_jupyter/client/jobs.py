"""Client methods for jobs: submit, follow, stop, download; the workflow status."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..schemas.job import JobProgressRead, JobRead, StatusRead
from .data import PROJECT
from .transport import ClientBase, endpoint, fields_given
from .workflows import WORKFLOW

JOB = PROJECT + "job/{job_id}/"


class JobsMixin(ClientBase):
    @endpoint("POST", PROJECT + "job/submit/")
    def submit_job(
        self,
        project_id: int,
        workflow_id: int,
        dataset_id: int,
        *,
        first_task_index: int | None = None,
        last_task_index: int | None = None,
        slurm_account: str | None = None,
        worker_init: str | None = None,
        attribute_filters: Mapping[str, Sequence[Any]] | None = None,
        type_filters: Mapping[str, bool] | None = None,
    ) -> JobRead:
        """Run a workflow (or the slice `first_task_index`..`last_task_index`) on a dataset.

        `attribute_filters` ({key: [values]}) and `type_filters` select the images the job
        starts from; `{"__wftask_dataset_image_status__": ["failed"]}` reruns the images on
        which the first task failed.
        """
        body = fields_given(
            first_task_index=first_task_index,
            last_task_index=last_task_index,
            slurm_account=slurm_account,
            worker_init=worker_init,
            attribute_filters=(
                {key: list(values) for key, values in attribute_filters.items()}
                if attribute_filters
                else None
            ),
            type_filters=dict(type_filters) if type_filters else None,
        )
        return self._transport.call(
            JobRead,
            "POST",
            PROJECT + "job/submit/",
            {"project_id": project_id},
            params={"workflow_id": int(workflow_id), "dataset_id": int(dataset_id)},
            body=body,
        )

    @endpoint("GET", "/api/v2/job/")
    def list_user_jobs(self, log: bool = True) -> list[JobRead]:
        """The jobs of all the caller's projects (`log=False` leaves the logs out)."""
        return self._transport.call(list[JobRead], "GET", "/api/v2/job/", params={"log": log})

    @endpoint("GET", PROJECT + "job/")
    def list_jobs(self, project_id: int, log: bool = True) -> list[JobRead]:
        return self._transport.call(
            list[JobRead],
            "GET",
            PROJECT + "job/",
            {"project_id": project_id},
            params={"log": log},
        )

    @endpoint("GET", WORKFLOW + "job/")
    def list_workflow_jobs(self, project_id: int, workflow_id: int) -> list[JobRead]:
        return self._transport.call(
            list[JobRead],
            "GET",
            WORKFLOW + "job/",
            {"project_id": project_id, "workflow_id": workflow_id},
        )

    @endpoint("GET", JOB)
    def get_job(self, project_id: int, job_id: int, show_tmp_logs: bool = False) -> JobRead:
        """A job; with `show_tmp_logs`, a running job's log so far."""
        return self._transport.call(
            JobRead,
            "GET",
            JOB,
            {"project_id": project_id, "job_id": job_id},
            params={"show_tmp_logs": show_tmp_logs},
        )

    @endpoint("GET", JOB + "progress/")
    def get_job_progress(self, project_id: int, job_id: int) -> JobProgressRead:
        """Each workflow task of a job: its status and its calls done out of the total."""
        return self._transport.call(
            JobProgressRead, "GET", JOB + "progress/", {"project_id": project_id, "job_id": job_id}
        )

    @endpoint("GET", JOB + "stop/")
    def stop_job(self, project_id: int, job_id: int) -> None:
        """Stop a running job: its task processes end and the job fails."""
        self._transport.do("GET", JOB + "stop/", {"project_id": project_id, "job_id": job_id})

    @endpoint("GET", JOB + "download/")
    def download_job(self, project_id: int, job_id: int, path: str | Path | None = None) -> bytes:
        """The job folder as a zip archive (also written to `path` when given)."""
        return self._transport.download(
            JOB + "download/", {"project_id": project_id, "job_id": job_id}, path
        )

    @endpoint("GET", PROJECT + "status/")
    def get_status(self, project_id: int, dataset_id: int, workflow_id: int) -> StatusRead:
        """The status of each workflow task (by id) on a dataset."""
        return self._transport.call(
            StatusRead,
            "GET",
            PROJECT + "status/",
            {"project_id": project_id},
            params={"dataset_id": int(dataset_id), "workflow_id": int(workflow_id)},
        )

    def wait_for_job(
        self,
        project_id: int,
        job_id: int,
        timeout: float | None = None,
        poll_interval: float = 0.5,
    ) -> JobRead:
        """Poll a job until it is no longer `submitted`; TimeoutError after `timeout` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get_job(project_id, job_id)
            if job.status != "submitted":
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still running after {timeout} s")
            time.sleep(poll_interval)
