"""Client methods for the run history and each image's status (fractal-server 2.14+ routes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..schemas.filters import IMAGE_STATUS_KEY
from ..schemas.history import (
    HistoryRunReadAggregated,
    HistoryUnitPage,
    ImagePageWithWarnings,
    JobWithTaskStatuses,
)
from .data import DATASET, PROJECT
from .transport import ClientBase, endpoint, fields_given, filter_fields

STATUS = PROJECT + "status/"


def _filters(
    attribute_filters: Mapping[str, Sequence[Any]] | None,
    type_filters: Mapping[str, bool] | None,
    statuses: Sequence[str] | None = None,
) -> dict[str, Any]:
    attributes = {key: list(values) for key, values in (attribute_filters or {}).items()}
    if statuses is not None:
        attributes[IMAGE_STATUS_KEY] = list(statuses)
    return filter_fields(attributes, type_filters)


class HistoryMixin(ClientBase):
    @endpoint("GET", STATUS + "run/")
    def list_history_runs(
        self, project_id: int, dataset_id: int, workflowtask_id: int
    ) -> list[HistoryRunReadAggregated]:
        """The runs of a workflow task on a dataset, with their units counted by status."""
        return self._transport.call(
            list[HistoryRunReadAggregated],
            "GET",
            STATUS + "run/",
            {"project_id": project_id},
            params={"dataset_id": int(dataset_id), "workflowtask_id": int(workflowtask_id)},
        )

    @endpoint("GET", STATUS + "run/{history_run_id}/units/")
    def list_history_units(
        self,
        project_id: int,
        history_run_id: int,
        dataset_id: int,
        workflowtask_id: int,
        *,
        unit_status: str | None = None,
        page: int = 1,
        page_size: int | None = None,
    ) -> HistoryUnitPage:
        """One page of a run's units of work (task calls), optionally of one status."""
        params = {
            "dataset_id": int(dataset_id),
            "workflowtask_id": int(workflowtask_id),
            "page": page,
            **fields_given(unit_status=unit_status, page_size=page_size),
        }
        return self._transport.call(
            HistoryUnitPage,
            "GET",
            STATUS + "run/{history_run_id}/units/",
            {"project_id": project_id, "history_run_id": history_run_id},
            params=params,
        )

    @endpoint("POST", STATUS + "images/")
    def query_status_images(
        self,
        project_id: int,
        dataset_id: int,
        workflowtask_id: int,
        *,
        statuses: Sequence[str] | None = None,
        attribute_filters: Mapping[str, Sequence[Any]] | None = None,
        type_filters: Mapping[str, bool] | None = None,
        page: int = 1,
        page_size: int | None = None,
    ) -> ImagePageWithWarnings:
        """Images with their status for the workflow task (`statuses`: any of done, failed,
        submitted, unset), in the attribute `__wftask_dataset_image_status__`."""
        params = {
            "dataset_id": int(dataset_id),
            "workflowtask_id": int(workflowtask_id),
            "page": page,
            **fields_given(page_size=page_size),
        }
        return self._transport.call(
            ImagePageWithWarnings,
            "POST",
            STATUS + "images/",
            {"project_id": project_id},
            params=params,
            body=_filters(attribute_filters, type_filters, statuses),
        )

    @endpoint("POST", STATUS + "image-log/")
    def get_image_log(
        self, project_id: int, dataset_id: int, workflowtask_id: int, zarr_url: str
    ) -> str:
        """The log of the last run of the workflow task on the image."""
        return self._transport.call(
            str,
            "POST",
            STATUS + "image-log/",
            {"project_id": project_id},
            body={
                "dataset_id": int(dataset_id),
                "workflowtask_id": int(workflowtask_id),
                "zarr_url": zarr_url,
            },
        )

    @endpoint("GET", STATUS + "unit-log/")
    def get_unit_log(
        self,
        project_id: int,
        dataset_id: int,
        workflowtask_id: int,
        history_run_id: int,
        history_unit_id: int,
    ) -> str:
        return self._transport.call(
            str,
            "GET",
            STATUS + "unit-log/",
            {"project_id": project_id},
            params={
                "dataset_id": int(dataset_id),
                "workflowtask_id": int(workflowtask_id),
                "history_run_id": int(history_run_id),
                "history_unit_id": int(history_unit_id),
            },
        )

    @endpoint("GET", PROJECT + "latest-job/")
    def get_latest_job(
        self, project_id: int, workflow_id: int, dataset_id: int
    ) -> JobWithTaskStatuses:
        """The latest job of a workflow on a dataset, with each task's images by status."""
        return self._transport.call(
            JobWithTaskStatuses,
            "GET",
            PROJECT + "latest-job/",
            {"project_id": project_id},
            params={"workflow_id": int(workflow_id), "dataset_id": int(dataset_id)},
        )

    @endpoint("POST", DATASET + "images/non-processed/")
    def non_processed_images(
        self,
        project_id: int,
        dataset_id: int,
        workflow_id: int,
        workflowtask_id: int,
        *,
        attribute_filters: Mapping[str, Sequence[Any]] | None = None,
        type_filters: Mapping[str, bool] | None = None,
    ) -> list[str]:
        """The matching images that the previous workflow task has not done."""
        return self._filtered_dataset_images(
            "images/non-processed/",
            project_id,
            dataset_id,
            {"workflow_id": int(workflow_id), "workflowtask_id": int(workflowtask_id)},
            attribute_filters,
            type_filters,
        )

    @endpoint("POST", DATASET + "images/verify-unique-types/")
    def verify_unique_types(
        self,
        project_id: int,
        dataset_id: int,
        workflowtask_id: int,
        *,
        attribute_filters: Mapping[str, Sequence[Any]] | None = None,
        type_filters: Mapping[str, bool] | None = None,
    ) -> list[str]:
        """The type keys that are true on some matching images and false on others."""
        return self._filtered_dataset_images(
            "images/verify-unique-types/",
            project_id,
            dataset_id,
            {"workflowtask_id": int(workflowtask_id)},
            attribute_filters,
            type_filters,
        )

    def _filtered_dataset_images(
        self,
        route: str,
        project_id: int,
        dataset_id: int,
        params: Mapping[str, int],
        attribute_filters: Mapping[str, Sequence[Any]] | None,
        type_filters: Mapping[str, bool] | None,
    ) -> list[str]:
        """POST the image filters to a dataset route that answers with a list of strings."""
        return self._transport.call(
            list[str],
            "POST",
            DATASET + route,
            {"project_id": project_id, "dataset_id": dataset_id},
            params=params,
            body=_filters(attribute_filters, type_filters),
        )

    @endpoint("GET", "/api/v2/job/squeue/")
    def squeue(self) -> list[dict[str, Any]]:
        """The SLURM jobs of the caller's running jobs (empty on the local backend)."""
        return self._transport.call(list[dict[str, Any]], "GET", "/api/v2/job/squeue/")
