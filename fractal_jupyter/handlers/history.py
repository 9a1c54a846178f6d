"""Run history and per-image status (fractal-server 2.14+ routes, shaped as in 2.26.0)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from ..schemas.filters import ImageFilterQuery
from ..schemas.history import (
    HistoryRunReadAggregated,
    HistoryUnitPage,
    ImageLogsRequest,
    ImagePageWithWarnings,
    JobWithTaskStatuses,
    RenderedStatusImagePage,
)
from ..schemas.query import (
    DatasetWorkflowTaskQuery,
    NonProcessedQuery,
    StatusImagesQuery,
    UnitLogQuery,
    UnitQuery,
    WorkflowDatasetQuery,
    WorkflowTaskIdQuery,
)
from ..services import history, images
from .base import FractalHandler, HandlerMethod, TornadoMethod, operation


def _image_filter_operation(
    summary: str, query: type[BaseModel]
) -> Callable[[HandlerMethod], TornadoMethod]:
    """A POST that only reads: optional image filters in, a list of strings out."""
    return operation(
        summary,
        query=query,
        body=ImageFilterQuery,
        body_required=False,
        response=list[str],
        writes=False,
    )


class HistoryRunListHandler(FractalHandler):
    @operation(
        "The runs of a workflow task on a dataset, with their units counted by status",
        query=DatasetWorkflowTaskQuery,
        response=list[HistoryRunReadAggregated],
    )
    async def get(
        self, project_id: int, query: DatasetWorkflowTaskQuery
    ) -> list[HistoryRunReadAggregated]:
        return await history.list_runs(
            self.db_session, self.user, project_id, query.dataset_id, query.workflowtask_id
        )


class HistoryUnitListHandler(FractalHandler):
    @operation(
        "One page of a run's units of work (task calls), optionally of one status",
        query=UnitQuery,
        response=HistoryUnitPage,
    )
    async def get(self, project_id: int, history_run_id: int, query: UnitQuery) -> HistoryUnitPage:
        return await history.list_units(
            self.db_session, self.user, project_id, history_run_id, query
        )


class StatusImagesHandler(FractalHandler):
    @operation(
        "One page of a dataset's images with their status for a workflow task "
        "(attribute `__wftask_dataset_image_status__`: done, failed, submitted or unset)",
        query=StatusImagesQuery,
        body=ImageFilterQuery,
        body_required=False,
        response=ImagePageWithWarnings,
        writes=False,
    )
    async def post(
        self, project_id: int, query: StatusImagesQuery, body: ImageFilterQuery | None
    ) -> RenderedStatusImagePage:
        return await images.query_status_images(
            self.fractal.database,
            self.user,
            project_id,
            query.dataset_id,
            query.workflowtask_id,
            body or ImageFilterQuery(),
            page=query.page,
            page_size=query.page_size,
            include_warnings=query.include_warnings,
        )


class ImageLogHandler(FractalHandler):
    @operation(
        "The log of the last run of a workflow task on an image",
        body=ImageLogsRequest,
        response=str,
        writes=False,
    )
    async def post(self, project_id: int, body: ImageLogsRequest) -> str:
        return await history.image_log(self.db_session, self.user, project_id, body)


class UnitLogHandler(FractalHandler):
    @operation("The log of a unit of work", query=UnitLogQuery, response=str)
    async def get(self, project_id: int, query: UnitLogQuery) -> str:
        return await history.unit_log(self.db_session, self.user, project_id, query)


class LatestJobHandler(FractalHandler):
    @operation(
        "The latest job of a workflow on a dataset, with each task's images by status",
        query=WorkflowDatasetQuery,
        response=JobWithTaskStatuses,
    )
    async def get(self, project_id: int, query: WorkflowDatasetQuery) -> JobWithTaskStatuses:
        return await history.latest_job(
            self.db_session, self.user, project_id, query.workflow_id, query.dataset_id
        )


class NonProcessedImagesHandler(FractalHandler):
    @_image_filter_operation(
        "The zarr_urls of matching images that the previous workflow task has not done",
        NonProcessedQuery,
    )
    async def post(
        self,
        project_id: int,
        dataset_id: int,
        query: NonProcessedQuery,
        body: ImageFilterQuery | None,
    ) -> list[str]:
        return await history.non_processed_images(
            self.db_session,
            self.user,
            project_id,
            dataset_id,
            query.workflow_id,
            query.workflowtask_id,
            body or ImageFilterQuery(),
        )


class VerifyUniqueTypesHandler(FractalHandler):
    @_image_filter_operation(
        "The type keys that are true on some of the matching images and false on others",
        WorkflowTaskIdQuery,
    )
    async def post(
        self,
        project_id: int,
        dataset_id: int,
        query: WorkflowTaskIdQuery,
        body: ImageFilterQuery | None,
    ) -> list[str]:
        return await history.verify_unique_types(
            self.db_session, self.user, project_id, dataset_id, query.workflowtask_id, body
        )


class SqueueHandler(FractalHandler):
    @operation(
        "The caller's SLURM jobs of running Fractal jobs (an empty list on the local backend)",
        response=list[dict[str, Any]],
    )
    async def get(self) -> list[dict[str, Any]]:
        return await history.squeue(self.db_session, self.user, self.fractal.runner.backend)
