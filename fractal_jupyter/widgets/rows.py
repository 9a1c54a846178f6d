"""What the job list, the job monitor and the image browser share: a table whose rows are
selected by a click (a monospaced `Select` under a header line: no custom JavaScript), a
readable log view, and the style sheet of these widgets."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import ipywidgets as w

# Scoped to the widgets' own classes. Disabled buttons fade and lose their colour; the log is
# dark text on a light background; wide content scrolls inside the widget, never past it.
STYLE = """<style>
.fractal-rows select, .fractal-rows-header, .fractal-log pre {
  font-family: var(--jp-code-font-family, monospace); font-size: 12px;
}
.fractal-rows-header { white-space: pre; font-weight: bold; padding: 0 5px; overflow: hidden; }
.fractal-job-list button:disabled, .fractal-job-monitor button:disabled,
.fractal-image-browser button:disabled {
  opacity: 0.35; filter: grayscale(1); cursor: not-allowed;
}
.fractal-log pre { color: #1f1f1f; background: #fafafa; margin: 0; padding: 4px 6px;
  white-space: pre-wrap; word-break: break-all; }
.fractal-log .fractal-log-error { background: #fdecea; color: #8e0000; display: block; }
.fractal-log mark { background: #ffe082; color: inherit; }
.fractal-job-list, .fractal-job-monitor, .fractal-image-browser { max-width: 100%; }
</style>"""

ELLIPSIS = "…"
# A log line that reports an error (the job log's "- ERROR -" records, tracebacks, exits).
ERROR_LINE = re.compile(r" - ERROR - |Traceback|(?:TASK|JOB|UNKNOWN) ERROR|\w+Error\b")
LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - (\w+) - ")


def style_sheet() -> w.HTML:
    """The widgets' style sheet, as a widget that takes no room."""
    return w.HTML(STYLE, layout=w.Layout(display="none"))


def fit(text: str, width: int) -> str:
    """`text` on one line, cut to `width` characters (an ellipsis says it was cut)."""
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + ELLIPSIS


class RowTable:
    """A table of text rows, one selected at a time: `widget`, `set_rows(headers, rows)`,
    `selected` (a row index or None), `select(index)`; `on_select(index)` is called on a
    click (not on `set_rows`)."""

    def __init__(
        self,
        on_select: Callable[[int], None],
        *,
        rows_shown: int = 12,
        max_width: int = 48,
        css_class: str = "",
    ) -> None:
        self._on_select = on_select
        self._quiet = False
        self.rows_shown = rows_shown
        self.max_width = max_width
        # As wide as the longest row, at least as the widget: wider rows scroll sideways.
        self.header = w.HTML(layout=w.Layout(width="max-content", min_width="100%", margin="0"))
        self.header.add_class("fractal-rows-header")
        self.select_widget = w.Select(
            options=[],
            rows=rows_shown,
            layout=w.Layout(width="max-content", min_width="100%", margin="0"),
        )
        self.select_widget.observe(self._changed, "value")
        self.widget = w.VBox(
            [self.header, self.select_widget], layout=w.Layout(width="100%", overflow="auto")
        )
        self.widget.add_class("fractal-rows")
        if css_class:
            self.widget.add_class(css_class)
        self.lines: list[str] = []

    @property
    def selected(self) -> int | None:
        value: int | None = self.select_widget.value
        return value

    def set_rows(
        self, headers: Sequence[str], rows: Sequence[Sequence[Any]], selected: int | None = None
    ) -> None:
        cells = [[fit(str(cell), self.max_width) for cell in row] for row in rows]
        widths = [
            max([len(header), *(len(row[i]) for row in cells)]) for i, header in enumerate(headers)
        ]
        self.header.value = html.escape(
            "  ".join(h.ljust(width) for h, width in zip(headers, widths, strict=True)).rstrip()
        )
        self.lines = [
            "  ".join(c.ljust(width) for c, width in zip(row, widths, strict=True)).rstrip()
            for row in cells
        ]
        self._quiet = True
        try:
            # The index makes equal lines distinct options.
            self.select_widget.options = [(line, i) for i, line in enumerate(self.lines)]
            self.select_widget.rows = max(2, min(len(self.lines), self.rows_shown))
            self.select_widget.value = selected
        finally:
            self._quiet = False

    def select(self, index: int | None) -> None:
        """Select row `index` as a click does (None: no row)."""
        self.select_widget.value = index

    def _changed(self, change: Any) -> None:
        if not self._quiet and change["new"] is not None:
            self._on_select(change["new"])


def local_time(moment: datetime | None) -> str:
    """A timestamp in the kernel's time zone, to the second ("" for none)."""
    if moment is None:
        return ""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration(start: datetime | None, end: datetime | None) -> str:
    """How long from `start` to `end` (now, when `end` is None), as "1 h 02 min", "3 min 05 s"."""
    if start is None:
        return ""
    stop = end if end is not None else datetime.now(start.tzinfo)
    seconds = max(0, int((stop - start) / timedelta(seconds=1)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {seconds:02d} s"
    return f"{seconds} s"


def failure_summary(log: str) -> str:
    """The error a failed job's log ends with: its last ERROR record (with the lines that
    continue it), else the last line that reports an error; "" when there is none."""
    lines = log.splitlines()
    for start in range(len(lines) - 1, -1, -1):
        record = LOG_RECORD.match(lines[start])
        if record and record.group(1) == "ERROR":
            end = start + 1
            while end < len(lines) and not LOG_RECORD.match(lines[end]):
                end += 1
            first = lines[start][record.end() :]
            return "\n".join([first, *lines[start + 1 : end]]).strip()
    for line in reversed(lines):
        if ERROR_LINE.search(line):
            return line.strip()
    return ""


def render_log(log: str, search: str = "", only_matching: bool = False) -> tuple[str, int]:
    """The log as HTML: error lines highlighted (an ERROR record with the lines that continue
    it), `search` (case-insensitive) marked; with `only_matching`, only the lines that contain
    it. Also the number of lines that contain it."""
    found_in = re.compile(re.escape(search), re.I) if search else None
    marked = re.compile(re.escape(html.escape(search)), re.I) if search else None
    shown = []
    matches = 0
    in_error = False
    for line in log.splitlines():
        record = LOG_RECORD.match(line)
        if record is not None:
            in_error = record.group(1) in ("ERROR", "CRITICAL")
        found = found_in is not None and found_in.search(line) is not None
        matches += found
        if only_matching and found_in is not None and not found:
            continue
        text = html.escape(line)
        if found and marked is not None:
            text = marked.sub(lambda m: f"<mark>{m.group(0)}</mark>", text)
        if in_error or ERROR_LINE.search(line):
            shown.append(f"<span class='fractal-log-error'>{text or '&nbsp;'}</span>")
        else:
            shown.append(text + "\n")
    return "".join(shown), matches
