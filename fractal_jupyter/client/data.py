"""Client methods for the server itself, the caller, projects, datasets and images."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..schemas.common import Filters
from ..schemas.dataset import DatasetExport, DatasetImport, DatasetRead
from ..schemas.images import ImagePage, SingleImage
from ..schemas.project import ProjectRead
from ..schemas.user import UserRead
from .transport import ClientBase, endpoint, fields_given, filter_fields

PROJECT = "/api/v2/project/{project_id}/"
DATASET = PROJECT + "dataset/{dataset_id}/"

FiltersLike = Filters | Mapping[str, Any]


class DataMixin(ClientBase):
    # --- server and caller -----------------------------------------------------------------

    @endpoint("GET", "/api/alive/")
    def alive(self) -> dict[str, Any]:
        """`{"alive": True, "version": ...}` (no authentication needed)."""
        return self._transport.call(dict[str, Any], "GET", "/api/alive/")

    @endpoint("GET", "/openapi.json")
    def openapi(self) -> dict[str, Any]:
        """The server's OpenAPI document."""
        return self._transport.call(dict[str, Any], "GET", "/openapi.json")

    @endpoint("GET", "/auth/current-user/")
    def get_current_user(self, group_names: bool = False) -> UserRead:
        """The caller as Fractal sees it."""
        return self._transport.call(
            UserRead, "GET", "/auth/current-user/", params={"group_names": group_names}
        )

    # --- projects --------------------------------------------------------------------------

    @endpoint("GET", "/api/v2/project/")
    def list_projects(self) -> list[ProjectRead]:
        return self._transport.call(list[ProjectRead], "GET", "/api/v2/project/")

    @endpoint("POST", "/api/v2/project/")
    def create_project(self, name: str) -> ProjectRead:
        return self._transport.call(ProjectRead, "POST", "/api/v2/project/", body={"name": name})

    @endpoint("GET", PROJECT)
    def get_project(self, project_id: int) -> ProjectRead:
        return self._transport.call(ProjectRead, "GET", PROJECT, {"project_id": project_id})

    @endpoint("PATCH", PROJECT)
    def update_project(self, project_id: int, name: str | None = None) -> ProjectRead:
        return self._transport.call(
            ProjectRead, "PATCH", PROJECT, {"project_id": project_id}, body=fields_given(name=name)
        )

    @endpoint("DELETE", PROJECT)
    def delete_project(self, project_id: int) -> None:
        """Delete a project with its datasets, workflows and images."""
        self._transport.do("DELETE", PROJECT, {"project_id": project_id})

    # --- datasets --------------------------------------------------------------------------

    @endpoint("GET", "/api/v2/dataset/")
    def list_user_datasets(self, history: bool = True) -> list[DatasetRead]:
        """The datasets of all the caller's projects."""
        return self._transport.call(
            list[DatasetRead], "GET", "/api/v2/dataset/", params={"history": history}
        )

    @endpoint("GET", PROJECT + "dataset/")
    def list_datasets(self, project_id: int, history: bool = True) -> list[DatasetRead]:
        return self._transport.call(
            list[DatasetRead],
            "GET",
            PROJECT + "dataset/",
            {"project_id": project_id},
            params={"history": history},
        )

    @endpoint("POST", PROJECT + "dataset/")
    def create_dataset(
        self,
        project_id: int,
        name: str,
        zarr_dir: str | None = None,
        filters: FiltersLike | None = None,
        *,
        project_dir: str | None = None,
        zarr_subfolder: str | None = None,
    ) -> DatasetRead:
        """A dataset at `zarr_dir`; or, without it, at `<project_dir>/<zarr_subfolder>` (the
        server's `project_dir` and a subfolder named after project and dataset by default)."""
        body = fields_given(
            name=name,
            zarr_dir=None if zarr_dir is None else str(zarr_dir),
            filters=filters,
            project_dir=project_dir,
            zarr_subfolder=zarr_subfolder,
        )
        return self._transport.call(
            DatasetRead, "POST", PROJECT + "dataset/", {"project_id": project_id}, body=body
        )

    @endpoint("POST", PROJECT + "dataset/import/")
    def import_dataset(
        self, project_id: int, dataset: DatasetImport | DatasetExport | Mapping[str, Any]
    ) -> DatasetRead:
        """Create a dataset with its images (the body of `export_dataset` fits)."""
        return self._transport.call(
            DatasetRead,
            "POST",
            PROJECT + "dataset/import/",
            {"project_id": project_id},
            body=dataset,
        )

    @endpoint("GET", DATASET)
    def get_dataset(self, project_id: int, dataset_id: int) -> DatasetRead:
        return self._transport.call(
            DatasetRead, "GET", DATASET, {"project_id": project_id, "dataset_id": dataset_id}
        )

    @endpoint("PATCH", DATASET)
    def update_dataset(
        self,
        project_id: int,
        dataset_id: int,
        *,
        name: str | None = None,
        zarr_dir: str | None = None,
        filters: FiltersLike | None = None,
    ) -> DatasetRead:
        """Change what is given (None leaves a field as it is)."""
        body = fields_given(name=name, zarr_dir=zarr_dir, filters=filters)
        return self._transport.call(
            DatasetRead,
            "PATCH",
            DATASET,
            {"project_id": project_id, "dataset_id": dataset_id},
            body=body,
        )

    @endpoint("DELETE", DATASET)
    def delete_dataset(self, project_id: int, dataset_id: int) -> None:
        self._transport.do("DELETE", DATASET, {"project_id": project_id, "dataset_id": dataset_id})

    @endpoint("GET", DATASET + "export/")
    def export_dataset(self, project_id: int, dataset_id: int) -> DatasetExport:
        """The dataset with all its images, without ids (for `import_dataset`)."""
        return self._transport.call(
            DatasetExport,
            "GET",
            DATASET + "export/",
            {"project_id": project_id, "dataset_id": dataset_id},
        )

    # --- images ----------------------------------------------------------------------------

    @endpoint("POST", DATASET + "images/")
    def add_image(
        self,
        project_id: int,
        dataset_id: int,
        zarr_url: str,
        *,
        attributes: Mapping[str, Any] | None = None,
        types: Mapping[str, bool] | None = None,
        origin: str | None = None,
    ) -> None:
        body = fields_given(zarr_url=zarr_url, attributes=attributes, types=types, origin=origin)
        self._transport.do(
            "POST",
            DATASET + "images/",
            {"project_id": project_id, "dataset_id": dataset_id},
            body=body,
        )

    @endpoint("PATCH", DATASET + "images/")
    def update_image(
        self,
        project_id: int,
        dataset_id: int,
        zarr_url: str,
        *,
        attributes: Mapping[str, Any] | None = None,
        types: Mapping[str, bool] | None = None,
    ) -> SingleImage:
        """Replace an image's attributes and/or types (each given one whole)."""
        body = fields_given(zarr_url=zarr_url, attributes=attributes, types=types)
        return self._transport.call(
            SingleImage,
            "PATCH",
            DATASET + "images/",
            {"project_id": project_id, "dataset_id": dataset_id},
            body=body,
        )

    @endpoint("DELETE", DATASET + "images/")
    def delete_image(self, project_id: int, dataset_id: int, zarr_url: str) -> None:
        self._transport.do(
            "DELETE",
            DATASET + "images/",
            {"project_id": project_id, "dataset_id": dataset_id},
            params={"zarr_url": zarr_url},
        )

    @endpoint("POST", DATASET + "images/query/")
    def query_images(
        self,
        project_id: int,
        dataset_id: int,
        filters: FiltersLike | None = None,
        *,
        zarr_url: str | None = None,
        page: int = 1,
        page_size: int | None = None,
        use_dataset_filters: bool = False,
        attribute_filters: Mapping[str, Sequence[Any]] | None = None,
        type_filters: Mapping[str, bool] | None = None,
    ) -> ImagePage:
        """One page of the images matching `filters` (`{"attributes": {...}, "types": {...}}`),
        with the total count and the dataset's attribute values and types.

        `attribute_filters` ({key: [values]}: one of the values) and `type_filters` are
        fractal-server 2.11+'s filters; an image matches these and `filters`."""
        body = {
            **fields_given(filters=filters, zarr_url=zarr_url),
            **filter_fields(attribute_filters, type_filters),
        }
        return self._transport.call(
            ImagePage,
            "POST",
            DATASET + "images/query/",
            {"project_id": project_id, "dataset_id": dataset_id},
            params={
                "page": page,
                "page_size": page_size,
                "use_dataset_filters": use_dataset_filters,
            },
            body=body,
        )
