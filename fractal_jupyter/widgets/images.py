"""`ImageBrowser`: a dataset's images as a paged table, filtered on the server.

One drop-down per attribute (its values from the query's summary) and per type (any / true /
false); the count of matching images; pages of `page_size`; a thumbnail of the selected image
from its OME-Zarr lowest-resolution level. Every change is one `query_images` call, so a
dataset of 100,000 images costs one page per view.

With a `workflow_id`, a drop-down picks one of its tasks: the images then come with their
status for it (`query_status_images`), as the attribute `__wftask_dataset_image_status__`
(a column, and a filter like the others); the selected image's log for that task is shown, and
"Rerun failed" submits the workflow from that task on the images where it failed.

Below the table: a small thumbnail of every image of the page and, when they belong to an
OME-Zarr plate, an overview of that plate (a tile per well), both for the channel and z plane
chosen in the widget (the middle plane by default).
"""

from __future__ import annotations

import base64
import html
from typing import Any

import ipywidgets as w

from ..client.results import open_image, plate_of
from ..schemas.filters import IMAGE_STATUS_KEY
from ..schemas.history import ImagePageWithWarnings
from ..schemas.images import ImagePage, SingleImage
from ._common import MessageArea, describe_error, table
from .zarr_thumbnail import ThumbnailError, plate_overview, png_bytes, thumbnail_png

ANY: Any = "(any)"
PAGE_SIZES = (10, 25, 50, 100)
SMALL_SIDE = 96
MIDDLE: Any = "middle"


def _tail(zarr_url: str) -> str:
    """The last three parts of a path: row/column/field of a plate's image."""
    return "/".join(zarr_url.rstrip("/").split("/")[-3:])


def _option_label(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


class ImageBrowser(w.VBox):  # type: ignore[misc]
    """Browse dataset `dataset_id` of project `project_id`.

    State: `total_count`, `filters` ({"attributes": {...}, "types": {...}}), `page`,
    `page_size`, `page_count`, `images` (this page), `selected` (a SingleImage or None),
    `attribute_values` and `type_names` (the summary). `set_filter(name, value)`,
    `set_type_filter(name, flag)`, `go(page)`, `select(index)` do what the widgets do.
    """

    def __init__(
        self,
        client: Any,
        project_id: int,
        dataset_id: int,
        *,
        page_size: int = 25,
        workflow_id: int | None = None,
    ) -> None:
        super().__init__()
        self.add_class("fractal-image-browser")
        self.client = client
        self.project_id = project_id
        self.dataset_id = dataset_id
        self.page = 1
        self.page_size = page_size
        self.total_count = 0
        self.images: list[SingleImage] = []
        self.selected: SingleImage | None = None
        self.attribute_values: dict[str, list[Any]] = {}
        self.type_names: list[str] = []
        self.attribute_filters: dict[str, w.Dropdown] = {}
        self.type_filters: dict[str, w.Dropdown] = {}
        self.workflow_id = workflow_id
        self.rerun_job_id: int | None = None
        self._quiet = False
        self.message = MessageArea()
        dataset = self.message.attempt(
            "reading the dataset", lambda: client.get_dataset(project_id, dataset_id)
        )
        self.zarr_dir: str = dataset.zarr_dir.rstrip("/") + "/" if dataset is not None else ""
        self.count_html = w.HTML()
        self.filters_box = w.HBox([], layout=w.Layout(flex_flow="row wrap"))
        self.prev_button = w.Button(
            icon="chevron-left", tooltip="previous page", layout=w.Layout(width="40px")
        )
        self.next_button = w.Button(
            icon="chevron-right", tooltip="next page", layout=w.Layout(width="40px")
        )
        self.prev_button.on_click(lambda _b: self.go(self.page - 1))
        self.next_button.on_click(lambda _b: self.go(self.page + 1))
        self.page_label = w.HTML()
        self.size_input = w.Dropdown(
            options=sorted({*PAGE_SIZES, page_size}),
            value=page_size,
            description="per page",
            layout=w.Layout(width="160px"),
        )
        self.size_input.observe(self._size_changed, "value")
        self.table = w.HTML(layout=w.Layout(max_height="320px", overflow="auto"))
        self.picker = w.Select(options=[], rows=8, layout=w.Layout(width="100%"))
        self.picker.add_class("fractal-image-picker")
        self.picker.observe(self._picked, "value")
        self.thumbnail = w.Image(format="png", layout=w.Layout(max_width="256px"))
        self.thumbnail_note = w.HTML()
        self.status_task = w.Dropdown(
            options=[("(no status)", None), *self._workflow_tasks()],
            value=None,
            description="status of",
            layout=w.Layout(width="320px", display="" if workflow_id is not None else "none"),
        )
        self.status_task.observe(self._status_task_changed, "value")
        self.rerun_button = w.Button(
            description="Rerun failed",
            icon="redo",
            button_style="warning",
            disabled=True,
            layout=w.Layout(display="" if workflow_id is not None else "none"),
        )
        self.rerun_button.on_click(lambda _b: self.rerun_failed())
        self.log_area = w.Textarea(
            value="",
            disabled=True,
            layout=w.Layout(width="100%", height="10em", display="none"),
        )
        self.thumbnails: dict[str, bytes] = {}  # zarr_url -> PNG (b"" when not shown)
        self.channel_input = w.Dropdown(
            options=[("0", 0)], value=0, description="channel", layout=w.Layout(width="220px")
        )
        self.z_input = w.Dropdown(
            options=[(MIDDLE, MIDDLE)],
            value=MIDDLE,
            description="z",
            layout=w.Layout(width="160px"),
        )
        self.channel_input.observe(self._plane_changed, "value")
        self.z_input.observe(self._plane_changed, "value")
        self.gallery = w.HBox([], layout=w.Layout(flex_flow="row wrap"))
        self.gallery.add_class("fractal-image-gallery")
        self.plate_url: str | None = None
        self.plate_png = b""
        self.plate_image = w.Image(format="png")
        self.plate_note = w.HTML()
        self.plate_box = w.VBox([self.plate_note, self.plate_image])
        self.children = [
            w.HTML(f"<b>Images of dataset {dataset_id}</b>"),
            w.HBox([self.status_task, self.rerun_button]),
            self.filters_box,
            w.HBox(
                [
                    self.count_html,
                    self.prev_button,
                    self.page_label,
                    self.next_button,
                    self.size_input,
                ],
                layout=w.Layout(align_items="center"),
            ),
            self.table,
            w.HBox([self.picker, w.VBox([self.thumbnail, self.thumbnail_note])]),
            self.log_area,
            w.HBox([self.channel_input, self.z_input]),
            self.gallery,
            self.plate_box,
            self.message.widget,
        ]
        self.refresh()

    def _workflow_tasks(self) -> list[tuple[str, int]]:
        if self.workflow_id is None:
            return []
        workflow = self.message.attempt(
            "reading the workflow",
            lambda: self.client.get_workflow(self.project_id, self.workflow_id),
        )
        if workflow is None:
            return []
        return [(f"{wt.order}: {wt.task.name}", wt.id) for wt in workflow.task_list]

    # state
    @property
    def filters(self) -> dict[str, dict[str, Any]]:
        attributes = {k: d.value for k, d in self.attribute_filters.items() if d.value is not ANY}
        types = {k: d.value for k, d in self.type_filters.items() if d.value is not ANY}
        return {"attributes": attributes, "types": types}

    @property
    def page_count(self) -> int:
        return max(1, -(-self.total_count // self.page_size))

    @property
    def workflowtask_id(self) -> int | None:
        """The workflow task whose status the images show (None: no status)."""
        value: int | None = self.status_task.value
        return value

    def refresh(self) -> None:
        """Query the current page with the current filters."""
        answer: ImagePage | ImagePageWithWarnings | None = self.message.attempt(
            "query", self._query
        )
        if answer is None:
            return
        self.message.clear()
        self.total_count = answer.total_count
        self.page = answer.current_page
        if isinstance(answer, ImagePageWithWarnings):
            self.images = [
                SingleImage.model_construct(**item.model_dump(exclude={"has_warnings"}))
                for item in answer.items
            ]
        else:
            self.images = list(answer.images)
        self._update_filter_widgets(answer.attributes, answer.types)
        self._show()

    def _query(self) -> ImagePage | ImagePageWithWarnings:
        if self.workflowtask_id is None:
            page: ImagePage = self.client.query_images(
                self.project_id,
                self.dataset_id,
                self.filters,
                page=self.page,
                page_size=self.page_size,
            )
            return page
        filters = self.filters
        status_page: ImagePageWithWarnings = self.client.query_status_images(
            self.project_id,
            self.dataset_id,
            self.workflowtask_id,
            attribute_filters={key: [value] for key, value in filters["attributes"].items()},
            type_filters=filters["types"],
            page=self.page,
            page_size=self.page_size,
        )
        return status_page

    def _update_filter_widgets(self, attributes: dict[str, list[Any]], types: list[str]) -> None:
        # The summary covers the whole dataset; a filter keeps its choice if still offered.
        self._quiet = True
        try:
            for name, values in attributes.items():
                if name not in self.attribute_filters:
                    dropdown = w.Dropdown(description=name, layout=w.Layout(width="220px"))
                    dropdown.observe(self._filter_changed, "value")
                    self.attribute_filters[name] = dropdown
                dropdown = self.attribute_filters[name]
                current = dropdown.value
                dropdown.options = [(ANY, ANY), *((_option_label(v), v) for v in values)]
                dropdown.value = current if current in values or current is ANY else ANY
            for name in types:
                if name not in self.type_filters:
                    dropdown = w.Dropdown(
                        options=[(ANY, ANY), ("true", True), ("false", False)],
                        description=name,
                        layout=w.Layout(width="220px"),
                    )
                    dropdown.observe(self._filter_changed, "value")
                    self.type_filters[name] = dropdown
        finally:
            self._quiet = False
        self.attribute_values = dict(attributes)
        self.type_names = list(types)
        self.filters_box.children = [*self.attribute_filters.values(), *self.type_filters.values()]
        self.rerun_button.disabled = "failed" not in attributes.get(IMAGE_STATUS_KEY, [])

    def _show(self) -> None:
        self.count_html.value = f"<b>{self.total_count}</b> image(s)&nbsp;"
        self.page_label.value = f"&nbsp;page {self.page} / {self.page_count}&nbsp;"
        self.prev_button.disabled = self.page <= 1
        self.next_button.disabled = self.page >= self.page_count
        index = self.images.index(self.selected) if self.selected in self.images else None
        self._render_table(index)
        self._quiet = True
        try:
            self.picker.options = [
                (self.short(image.zarr_url), i) for i, image in enumerate(self.images)
            ]
            self.picker.value = index
        finally:
            self._quiet = False
        if index is None:
            self.selected = None
            self.thumbnail.value = b""
            self.thumbnail_note.value = ""
        self._show_pictures()

    def _render_table(self, selected: int | None) -> None:
        names = sorted({k for image in self.images for k in image.attributes})
        rows = [
            [
                self.short(image.zarr_url),
                *(image.attributes.get(n, "") for n in names),
                ", ".join(f"{k}={v}" for k, v in image.types.items()),
            ]
            for image in self.images
        ]
        header = f"zarr_url (in {self.zarr_dir})" if self.zarr_dir else "zarr_url"
        self.table.value = table([header, *names, "types"], rows, selected)

    def short(self, zarr_url: str) -> str:
        """A zarr_url relative to the dataset's zarr_dir (when inside it)."""
        if self.zarr_dir and zarr_url.startswith(self.zarr_dir):
            return zarr_url[len(self.zarr_dir) :]
        return zarr_url

    # actions
    def set_filter(self, attribute: str, value: Any = ANY) -> None:
        self.attribute_filters[attribute].value = value

    def set_type_filter(self, type_name: str, flag: bool | None = None) -> None:
        self.type_filters[type_name].value = ANY if flag is None else flag

    def go(self, page: int) -> None:
        self.page = min(max(1, page), self.page_count)
        self.refresh()

    def select(self, index: int | None) -> None:
        self.picker.value = index

    def _status_task_changed(self, _change: Any) -> None:
        if self.workflowtask_id is None and IMAGE_STATUS_KEY in self.attribute_filters:
            # No status without a task: its filter goes.
            self._quiet = True
            try:
                self.attribute_filters.pop(IMAGE_STATUS_KEY).close()
            finally:
                self._quiet = False
        self.log_area.layout.display = "none" if self.workflowtask_id is None else ""
        self.page = 1
        self.refresh()

    def rerun_failed(self) -> int | None:
        """Submit the workflow from the chosen task on the images where it failed; the job id."""
        workflowtask_id = self.workflowtask_id
        if self.workflow_id is None or workflowtask_id is None:
            return None
        workflow = self.client.get_workflow(self.project_id, self.workflow_id)
        first = [wt.id for wt in workflow.task_list].index(workflowtask_id)
        try:
            job = self.client.submit_job(
                self.project_id,
                self.workflow_id,
                self.dataset_id,
                first_task_index=first,
                attribute_filters={IMAGE_STATUS_KEY: ["failed"]},
            )
        except Exception as error:
            self.message.fail(f"rerun failed: {describe_error(error)}")
            return None
        self.rerun_job_id = job.id
        self.message.ok(f"job {job.id} reruns the failed images")
        return int(job.id)

    def _filter_changed(self, _change: Any) -> None:
        if not self._quiet:
            self.page = 1
            self.refresh()

    def _size_changed(self, change: Any) -> None:
        self.page_size = change["new"]
        self.page = 1
        self.refresh()

    def _picked(self, change: Any) -> None:
        if self._quiet or change["new"] is None:
            return
        self.selected = self.images[change["new"]]
        self._render_table(change["new"])
        self._show_thumbnail(self.selected)
        self._show_log(self.selected)

    def _show_log(self, image: SingleImage) -> None:
        workflowtask_id = self.workflowtask_id
        if workflowtask_id is None:
            return
        log = self.message.attempt(
            "reading the log",
            lambda: self.client.get_image_log(
                self.project_id, self.dataset_id, workflowtask_id, image.zarr_url
            ),
        )
        self.log_area.value = log or ""

    @property
    def channel(self) -> int:
        return int(self.channel_input.value)

    @property
    def z(self) -> int | None:
        return None if self.z_input.value is MIDDLE else int(self.z_input.value)

    def set_plane(self, channel: int | None = None, z: int | None = None) -> None:
        """Choose the channel and z plane of every picture (`z=None`: the middle plane)."""
        self._quiet = True
        try:
            if channel is not None:
                self.channel_input.value = channel
            self.z_input.value = MIDDLE if z is None else z
        finally:
            self._quiet = False
        self._show_pictures()
        if self.selected is not None:
            self._show_thumbnail(self.selected)

    def _plane_changed(self, _change: Any) -> None:
        if not self._quiet:
            self.set_plane(self.channel, self.z)

    def _learn_planes(self) -> None:
        """Channel names and z planes of the page's first readable image."""
        for image in self.images:
            try:
                found = open_image(image.zarr_url)
            except ThumbnailError:
                continue
            channels = [(f"{i}: {name}", i) for i, name in enumerate(found.channels)]
            planes = [(MIDDLE, MIDDLE), *((str(i), i) for i in range(found.size("z")))]
            self._quiet = True
            try:
                if self.channel_input.options != tuple(channels) and channels:
                    self.channel_input.options = channels
                    if self.channel_input.value not in dict(channels).values():
                        self.channel_input.value = 0
                if self.z_input.options != tuple(planes):
                    current = self.z_input.value
                    self.z_input.options = planes
                    self.z_input.value = current if current in dict(planes).values() else MIDDLE
            finally:
                self._quiet = False
            return

    def _show_pictures(self) -> None:
        """A small thumbnail per image of the page, and the overview of their plate."""
        self._learn_planes()
        self.thumbnails = {}
        tiles = []
        for image in self.images:
            try:
                png = thumbnail_png(image.zarr_url, SMALL_SIDE, channel=self.channel, z=self.z)
            except ThumbnailError:
                png = b""
            self.thumbnails[image.zarr_url] = png
            if png:
                tiles.append(
                    w.VBox(
                        [
                            w.Image(value=png, format="png"),
                            w.HTML(
                                f"<small title='{html.escape(image.zarr_url, quote=True)}'>"
                                f"{html.escape(_tail(image.zarr_url))}</small>"
                            ),
                        ],
                        layout=w.Layout(margin="2px", max_width=f"{SMALL_SIDE + 8}px"),
                    )
                )
        self.gallery.children = tiles
        plates = [plate_of(image.zarr_url) for image in self.images]
        self.plate_url = next((url for url in plates if url is not None), None)
        self.plate_png = b""
        if self.plate_url is not None:
            try:
                canvas, problems = plate_overview(self.plate_url, channel=self.channel, z=self.z)
            except ThumbnailError as error:
                self.plate_note.value = f"<i>no plate overview: {html.escape(str(error))}</i>"
            else:
                self.plate_png = png_bytes(canvas)
                # Small plates are shown enlarged (up to 4x, 800 pixels wide at most).
                scale = max(1, min(4, 800 // max(1, canvas.shape[1])))
                self.plate_image.layout.width = f"{canvas.shape[1] * scale}px"
                missing = f" ({len(problems)} well(s) not shown)" if problems else ""
                self.plate_note.value = (
                    f"<b>Plate</b> {html.escape(self.short(self.plate_url))}{missing}"
                )
        else:
            self.plate_note.value = ""
        self.plate_image.value = self.plate_png

    def _show_thumbnail(self, image: SingleImage) -> None:
        try:
            png = thumbnail_png(image.zarr_url, channel=self.channel, z=self.z)
        except ThumbnailError as error:
            self.thumbnail.value = b""
            self.thumbnail_note.value = f"<i>no thumbnail: {html.escape(str(error))}</i>"
            return
        self.thumbnail.value = png
        self.thumbnail_note.value = f"<small>{html.escape(image.zarr_url)}</small>"

    @property
    def thumbnail_data_url(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.thumbnail.value).decode()
