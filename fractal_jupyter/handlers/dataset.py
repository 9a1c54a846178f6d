from __future__ import annotations

from pydantic import BaseModel

from ..db.models import Dataset
from ..schemas.dataset import (
    DatasetCreate,
    DatasetExport,
    DatasetImport,
    DatasetRead,
    DatasetUpdate,
)
from ..schemas.images import RenderedDatasetExport
from ..schemas.query import HistoryQuery
from ..services import dataset, dataset_import
from .base import FractalHandler, operation
from .limits import DEFAULT_MAX_IMPORT_BODY_BYTES


class DatasetListHandler(FractalHandler):
    @operation("A project's datasets", query=HistoryQuery, response=list[DatasetRead])
    async def get(self, project_id: int, query: HistoryQuery) -> list[DatasetRead]:
        return await dataset.list_project_datasets(
            self.db_session, self.user, project_id, query.history
        )

    @operation(
        "Create a dataset (at `zarr_dir`, or under `project_dir`: 2.18+)",
        body=DatasetCreate,
        response=DatasetRead,
        status=201,
    )
    async def post(self, project_id: int, body: DatasetCreate) -> Dataset:
        return await dataset.create_dataset(
            self.db_session, self.user, project_id, body, self.fractal.config["project_dir"]
        )


class UserDatasetListHandler(FractalHandler):
    @operation(
        "The datasets of all the caller's projects", query=HistoryQuery, response=list[DatasetRead]
    )
    async def get(self, query: HistoryQuery) -> list[DatasetRead]:
        return await dataset.list_user_datasets(self.db_session, self.user, query.history)


class DatasetHandler(FractalHandler):
    @operation("One dataset", response=DatasetRead)
    async def get(self, project_id: int, dataset_id: int) -> Dataset:
        return await dataset.get_dataset(self.db_session, self.user, project_id, dataset_id)

    @operation(
        "Change a dataset's name, zarr_dir or filters", body=DatasetUpdate, response=DatasetRead
    )
    async def patch(self, project_id: int, dataset_id: int, body: DatasetUpdate) -> Dataset:
        return await dataset.update_dataset(
            self.db_session, self.user, project_id, dataset_id, body
        )

    @operation("Delete a dataset and its images", status=204)
    async def delete(self, project_id: int, dataset_id: int) -> None:
        await dataset.delete_dataset(self.db_session, self.user, project_id, dataset_id)


class DatasetImportHandler(FractalHandler):
    body_limit = ("max_import_body_bytes", DEFAULT_MAX_IMPORT_BODY_BYTES)

    async def parse_body(self, model: type[BaseModel], required: bool) -> BaseModel | None:
        # An empty body is refused as usual; any other is read by the service, a chunk of
        # images at a time (`DatasetImport` still describes it in the OpenAPI document).
        if not self.request.body.strip():
            return await super().parse_body(model, required)
        return None

    @operation(
        "Create a dataset with its images", body=DatasetImport, response=DatasetRead, status=201
    )
    async def post(self, project_id: int, body: None) -> Dataset:
        return await dataset_import.import_dataset(
            self.db_session, self.user, project_id, self.request.body
        )


class DatasetExportHandler(FractalHandler):
    @operation("A dataset with all its images", response=DatasetExport)
    async def get(self, project_id: int, dataset_id: int) -> RenderedDatasetExport:
        return await dataset.export_dataset(
            self.db_session, self.fractal.database, self.user, project_id, dataset_id
        )
