"""`ImageBrowser`: a dataset's images as a paged table, filtered on the server.

One multiple choice per attribute (its values from the query's summary: an image matches one
of the chosen values) and a drop-down per type (any / true / false); the dataset's own filters
applied or not (fractal-web 1.8's toggle); the count of matching images; numbered pages of
10 to 500 images; a click on a row selects the image and shows a thumbnail from its OME-Zarr
lowest-resolution level. Every change is one `query_images` call, so a dataset of 100,000
images costs one page per view. When the deployment sets `FractalJupyter.viewer_url_template`,
each image and plate gets a "view" link to that viewer.

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
from urllib.parse import quote

import ipywidgets as w

from ..client.results import open_image, plate_of
from ..schemas.filters import IMAGE_STATUS_KEY
from ..schemas.history import ImagePageWithWarnings
from ..schemas.images import ImagePage, SingleImage
from ._common import MessageArea, describe_error
from .rows import RowTable, fit, render_log, style_sheet
from .zarr_thumbnail import ThumbnailError, plate_overview, png_bytes, thumbnail_png

ANY: Any = "(any)"
PAGE_SIZES = (10, 25, 50, 100, 200, 500)
MIN_PAGE_SIZE, MAX_PAGE_SIZE = PAGE_SIZES[0], PAGE_SIZES[-1]
PAGE_LINKS = 7  # numbered page buttons around the current page
SMALL_SIDE = 96
MIDDLE: Any = "middle"


def _tail(zarr_url: str) -> str:
    """The last three parts of a path: row/column/field of a plate's image."""
    return "/".join(zarr_url.rstrip("/").split("/")[-3:])


def _option_label(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def viewer_link(template: str | None, zarr_url: str, text: str = "view") -> str:
    """An HTML link to `zarr_url` in the configured viewer ("" when none is configured)."""
    if not template:
        return ""
    address = template.replace("{zarr_url}", quote(zarr_url, safe="/:"))
    return (
        f'<a href="{html.escape(address, quote=True)}" target="_blank" rel="noopener" '
        f'style="color:#1565c0;text-decoration:underline">{html.escape(text)}</a>'
    )


def page_size_problem(size: Any) -> str | None:
    if (
        isinstance(size, int)
        and not isinstance(size, bool)
        and MIN_PAGE_SIZE <= size <= MAX_PAGE_SIZE
    ):
        return None
    return f"a page holds {MIN_PAGE_SIZE} to {MAX_PAGE_SIZE} images, not {size!r}"


def _filters_text(filters: Any) -> str:
    parts = [f"{key}={_option_label(value)}" for key, value in filters.attributes.items()]
    parts += [f"{key}={'true' if flag else 'false'}" for key, flag in filters.types.items()]
    return ", ".join(parts)


class ImageBrowser(w.VBox):  # type: ignore[misc]
    """Browse dataset `dataset_id` of project `project_id`.

    State: `title`, `total_count`, `filters` ({"attributes": {name: [values]}, "types":
    {...}}), `use_dataset_filters`, `page`, `page_size`, `page_count`, `images` (this page),
    `selected` (a SingleImage or None), `attribute_values` and `type_names` (the summary),
    `viewer_url_template`. `set_filter(name, values)`, `set_type_filter(name, flag)`,
    `go(page)`, `set_page_size(n)`, `select(index)` do what the widgets do.
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
        self.page_size = page_size if page_size_problem(page_size) is None else PAGE_SIZES[1]
        self.total_count = 0
        self.images: list[SingleImage] = []
        self.selected: SingleImage | None = None
        self.attribute_values: dict[str, list[Any]] = {}
        self.type_names: list[str] = []
        self.attribute_filters: dict[str, w.SelectMultiple] = {}
        self.type_filters: dict[str, w.Dropdown] = {}
        self.workflow_id = workflow_id
        self.rerun_job_id: int | None = None
        self._quiet = False
        self.message = MessageArea()
        dataset = self.message.attempt(
            "reading the dataset", lambda: client.get_dataset(project_id, dataset_id)
        )
        self.zarr_dir: str = dataset.zarr_dir.rstrip("/") + "/" if dataset is not None else ""
        self.title = dataset.name if dataset is not None else f"dataset {dataset_id}"
        self.viewer_url_template = self._viewer_url_template()
        stored_filters = _filters_text(dataset.filters) if dataset is not None else ""
        self.dataset_filters = w.Checkbox(
            value=False,
            description=(
                f"apply the dataset's filters ({stored_filters})"
                if stored_filters
                else "apply the dataset's filters (it has none)"
            ),
            disabled=not stored_filters,
            indent=False,
            layout=w.Layout(width="auto"),
        )
        self.dataset_filters.observe(self._filter_changed, "value")
        self.count_html = w.HTML()
        self.filters_box = w.HBox([], layout=w.Layout(flex_flow="row wrap"))
        self.prev_button = w.Button(
            icon="chevron-left", tooltip="previous page", layout=w.Layout(width="36px")
        )
        self.next_button = w.Button(
            icon="chevron-right", tooltip="next page", layout=w.Layout(width="36px")
        )
        self.prev_button.on_click(lambda _b: self.go(self.page - 1))
        self.next_button.on_click(lambda _b: self.go(self.page + 1))
        self.page_buttons = w.HBox([], layout=w.Layout(flex_flow="row wrap"))
        self.page_label = w.HTML()
        self.size_input = w.Dropdown(
            options=sorted({*PAGE_SIZES, self.page_size}),
            value=self.page_size,
            description="per page",
            layout=w.Layout(width="160px"),
        )
        self.size_input.observe(self._size_changed, "value")
        self.rows = RowTable(self._picked, rows_shown=12, max_width=40)
        self.thumbnail = w.Image(format="png", layout=w.Layout(max_width="256px", display="none"))
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
        self.log_area = w.HTML(
            layout=w.Layout(
                max_height="12em", overflow="auto", width="100%", margin="0", display="none"
            )
        )
        self.log_area.add_class("fractal-log")
        self.image_log = ""
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
        self.plate_image = w.Image(format="png", layout=w.Layout(display="none"))
        self.plate_note = w.HTML()
        self.plate_box = w.VBox([self.plate_note, self.plate_image])
        self.children = [
            style_sheet(),
            w.HTML(f"<b>Images of {html.escape(self.title)}</b>"),
            w.HBox([self.status_task, self.rerun_button], layout=w.Layout(flex_flow="row wrap")),
            self.dataset_filters,
            self.filters_box,
            w.HBox(
                [
                    self.count_html,
                    self.prev_button,
                    self.page_buttons,
                    self.next_button,
                    self.page_label,
                    self.size_input,
                ],
                layout=w.Layout(align_items="center", flex_flow="row wrap"),
            ),
            self.rows.widget,
            w.HBox(
                [self.thumbnail, self.thumbnail_note],
                layout=w.Layout(flex_flow="row wrap", align_items="flex-start"),
            ),
            self.log_area,
            w.HBox([self.channel_input, self.z_input], layout=w.Layout(flex_flow="row wrap")),
            self.gallery,
            self.plate_box,
            self.message.widget,
        ]
        self.refresh()
        problem = page_size_problem(page_size)
        if problem:
            self.message.fail(f"{problem}: showing {self.page_size}")

    def _viewer_url_template(self) -> str | None:
        """The deployment's viewer URL template; None when unset (or the server is older)."""
        try:
            template: str | None = self.client.get_widget_settings().viewer_url_template
        except Exception:
            return None
        return template

    def _workflow_tasks(self) -> list[tuple[str, int]]:
        if self.workflow_id is None:
            return []
        workflow = self.message.attempt(
            "reading the workflow",
            lambda: self.client.get_workflow(self.project_id, self.workflow_id),
        )
        if workflow is None:
            return []
        return [(f"{wt.order + 1}: {wt.task.name}", wt.id) for wt in workflow.task_list]

    # state
    @property
    def filters(self) -> dict[str, dict[str, Any]]:
        attributes = {k: list(s.value) for k, s in self.attribute_filters.items() if s.value}
        types = {k: d.value for k, d in self.type_filters.items() if d.value is not ANY}
        return {"attributes": attributes, "types": types}

    @property
    def use_dataset_filters(self) -> bool:
        return bool(self.dataset_filters.value)

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
        filters = self.filters
        if self.workflowtask_id is None:
            page: ImagePage = self.client.query_images(
                self.project_id,
                self.dataset_id,
                attribute_filters=filters["attributes"],
                type_filters=filters["types"],
                page=self.page,
                page_size=self.page_size,
                use_dataset_filters=self.use_dataset_filters,
            )
            return page
        attributes, types = dict(filters["attributes"]), dict(filters["types"])
        if self.use_dataset_filters:
            # The status route knows no dataset filters: they join the query's own (a choice
            # made in the widget wins over the dataset's for the same key).
            dataset = self.client.get_dataset(self.project_id, self.dataset_id)
            for key, value in dataset.filters.attributes.items():
                if value is not None:
                    attributes.setdefault(key, [value])
            types = {**dataset.filters.types, **types}
        status_page: ImagePageWithWarnings = self.client.query_status_images(
            self.project_id,
            self.dataset_id,
            self.workflowtask_id,
            attribute_filters=attributes,
            type_filters=types,
            page=self.page,
            page_size=self.page_size,
        )
        return status_page

    def _update_filter_widgets(self, attributes: dict[str, list[Any]], types: list[str]) -> None:
        # The summary covers the whole dataset; a filter keeps the values still offered.
        self._quiet = True
        try:
            for name, values in attributes.items():
                if name not in self.attribute_filters:
                    choice = w.SelectMultiple(
                        description=name,
                        rows=min(4, max(2, len(values))),
                        layout=w.Layout(width="240px"),
                        style={"description_width": "90px"},
                        tooltip="the images with one of these values (none chosen: all)",
                    )
                    choice.observe(self._filter_changed, "value")
                    self.attribute_filters[name] = choice
                choice = self.attribute_filters[name]
                current = [value for value in choice.value if value in values]
                choice.options = [(_option_label(v), v) for v in values]
                choice.value = tuple(current)
            for name in types:
                if name not in self.type_filters:
                    dropdown = w.Dropdown(
                        options=[(ANY, ANY), ("true", True), ("false", False)],
                        description=name,
                        layout=w.Layout(width="200px"),
                        style={"description_width": "90px"},
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
        self.page_label.value = f"&nbsp;of {self.page_count}&nbsp;"
        self.prev_button.disabled = self.page <= 1
        self.next_button.disabled = self.page >= self.page_count
        self.page_buttons.children = [self._page_button(n) for n in self.page_numbers()]
        index = self.images.index(self.selected) if self.selected in self.images else None
        self._render_rows(index)
        if index is None:
            self.selected = None
            self._clear_thumbnail()
        self._show_pictures()

    def page_numbers(self) -> list[int]:
        """The numbered page buttons: the first, the last and those around the current page."""
        half = PAGE_LINKS // 2
        first = max(1, min(self.page - half, self.page_count - PAGE_LINKS + 1))
        around = range(first, min(self.page_count, first + PAGE_LINKS - 1) + 1)
        return sorted({1, *around, self.page_count})

    def _page_button(self, number: int) -> w.Button:
        current = number == self.page
        button = w.Button(
            description=str(number),
            button_style="primary" if current else "",
            tooltip=f"page {number}",
            layout=w.Layout(width=f"{max(32, 12 + 8 * len(str(number)))}px", padding="0"),
        )
        button.on_click(lambda _b: self.go(number))
        return button

    def _render_rows(self, selected: int | None) -> None:
        names = sorted({k for image in self.images for k in image.attributes})
        rows = [
            [
                self.short(image.zarr_url),
                *(_option_label(image.attributes.get(n, "")) for n in names),
                ", ".join(k for k, v in image.types.items() if v),
            ]
            for image in self.images
        ]
        header = "image" if not self.zarr_dir else f"image (in {fit(self.zarr_dir, 40)})"
        self.rows.set_rows([header, *names, "types"], rows, selected)

    def short(self, zarr_url: str) -> str:
        """A zarr_url relative to the dataset's zarr_dir (when inside it)."""
        if self.zarr_dir and zarr_url.startswith(self.zarr_dir):
            return zarr_url[len(self.zarr_dir) :]
        return zarr_url

    # actions
    def set_filter(self, attribute: str, values: Any = ANY) -> None:
        """Keep the images whose `attribute` is one of `values` (a value or a list; ANY or
        [] for all); values not in the summary are left out."""
        if attribute not in self.attribute_filters:
            self.message.fail(f"no attribute {attribute!r} in this dataset")
            return
        wanted = [] if values is ANY else values if isinstance(values, list | tuple) else [values]
        offered = self.attribute_values.get(attribute, [])
        self.attribute_filters[attribute].value = tuple(v for v in wanted if v in offered)

    def set_type_filter(self, type_name: str, flag: bool | None = None) -> None:
        if type_name not in self.type_filters:
            self.message.fail(f"no type {type_name!r} in this dataset")
            return
        self.type_filters[type_name].value = ANY if flag is None else flag

    def go(self, page: int) -> None:
        self.page = min(max(1, page), self.page_count)
        self.refresh()

    def set_page_size(self, size: int) -> None:
        """Show `size` images per page (10 to 500)."""
        problem = page_size_problem(size)
        if problem:
            self.message.fail(problem)
            return
        if size not in self.size_input.options:
            self.size_input.options = sorted({*self.size_input.options, size})
        self.size_input.value = size

    def select(self, index: int | None) -> None:
        """Select row `index` of the page, as a click does (None: no image)."""
        if index is not None and not 0 <= index < len(self.images):
            self.message.fail(f"this page has no image number {index}")
            return
        self.rows.select(index)
        if index is None:
            self.selected = None
            self._clear_thumbnail()

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

    def _picked(self, index: int) -> None:
        self.selected = self.images[index]
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
        self.image_log = log or ""
        self.log_area.value = f"<pre>{render_log(self.image_log)[0]}</pre>" if log else ""

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
                                f"{html.escape(_tail(image.zarr_url))}</small> "
                                + viewer_link(self.viewer_url_template, image.zarr_url)
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
                self.plate_note.value = (
                    f"<b>Plate</b> {html.escape(self.short(self.plate_url))} "
                    f"{viewer_link(self.viewer_url_template, self.plate_url)}<br>"
                    f"<i>No overview: {html.escape(self._without_paths(str(error)))}</i>"
                )
            else:
                self.plate_png = png_bytes(canvas)
                # Small plates are shown enlarged (up to 4x, 800 pixels wide at most).
                scale = max(1, min(4, 800 // max(1, canvas.shape[1])))
                self.plate_image.layout.width = f"{canvas.shape[1] * scale}px"
                missing = f" ({len(problems)} well(s) not shown)" if problems else ""
                self.plate_note.value = (
                    f"<b>Plate</b> {html.escape(self.short(self.plate_url))}{missing} "
                    + viewer_link(self.viewer_url_template, self.plate_url)
                )
        else:
            self.plate_note.value = ""
        self.plate_image.value = self.plate_png
        self.plate_image.layout.display = "" if self.plate_png else "none"
        self.plate_image.layout.max_width = "100%"

    def _without_paths(self, text: str) -> str:
        """A message with the dataset's folder left out of the paths it names."""
        return text.replace(self.zarr_dir, "") if self.zarr_dir else text

    def _clear_thumbnail(self) -> None:
        self.thumbnail.value = b""
        self.thumbnail.layout.display = "none"  # an empty image is a broken-image icon
        self.thumbnail_note.value = ""

    def _show_thumbnail(self, image: SingleImage) -> None:
        name = f"<small>{html.escape(fit(self.short(image.zarr_url), 48))}</small> " + viewer_link(
            self.viewer_url_template, image.zarr_url
        )
        try:
            png = thumbnail_png(image.zarr_url, channel=self.channel, z=self.z)
        except ThumbnailError as error:
            self._clear_thumbnail()
            reason = html.escape(self._without_paths(str(error)), quote=True)
            self.thumbnail_note.value = (
                f"{name}<br><i title='{reason}'>No preview: not an OME-Zarr image the widget "
                "can read.</i>"
            )
            return
        self.thumbnail.value = png
        self.thumbnail.layout.display = ""
        self.thumbnail_note.value = name

    @property
    def thumbnail_data_url(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.thumbnail.value).decode()
