from __future__ import annotations

from typing import Any

from ..schemas.images import (
    ImagePage,
    ImageQuery,
    RenderedImagePage,
    SingleImage,
    SingleImageUpdate,
)
from ..schemas.query import ImageQueryParameters, ZarrUrlQuery
from ..services import images
from .base import FractalHandler, operation


class ImageListHandler(FractalHandler):
    # No write session: the service checks and writes in one `Database.write`.
    @operation("Add one image to a dataset", body=SingleImage, status=201, writes=False)
    async def post(self, project_id: int, dataset_id: int, body: SingleImage) -> None:
        await images.add_image(self.fractal.database, self.user, project_id, dataset_id, body)

    @operation(
        "Replace an image's attributes and/or types", body=SingleImageUpdate, response=SingleImage
    )
    async def patch(
        self, project_id: int, dataset_id: int, body: SingleImageUpdate
    ) -> dict[str, Any]:
        return await images.update_image(self.db_session, self.user, project_id, dataset_id, body)

    @operation("Remove an image from a dataset", query=ZarrUrlQuery, status=204)
    async def delete(self, project_id: int, dataset_id: int, query: ZarrUrlQuery) -> None:
        await images.delete_image(
            self.db_session, self.user, project_id, dataset_id, query.zarr_url
        )


class ImageQueryHandler(FractalHandler):
    @operation(
        "One page of the images matching the filters, with the dataset's summaries",
        body=ImageQuery,
        body_required=False,
        query=ImageQueryParameters,
        response=ImagePage,
        writes=False,
    )
    async def post(
        self,
        project_id: int,
        dataset_id: int,
        body: ImageQuery | None,
        query: ImageQueryParameters,
    ) -> RenderedImagePage:
        return await images.query_images(
            self.fractal.database,
            self.user,
            project_id,
            dataset_id,
            body,
            page=query.page,
            page_size=query.page_size,
            use_dataset_filters=query.use_dataset_filters,
        )
