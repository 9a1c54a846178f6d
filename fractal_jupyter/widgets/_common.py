"""What the widgets share: showing a client error, a style sheet, the disabled-button look."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import TypeVar

import ipywidgets as w

T = TypeVar("T")


def describe_error(error: Exception) -> str:
    """A refused call as a one-line text (status and the server's `detail`)."""
    status = getattr(error, "status", None)
    detail = getattr(error, "detail", None)
    if status == 503 and isinstance(detail, str):
        return detail  # why Fractal cannot serve (a wrong setting, its database): says it all
    if status is not None:
        shown = detail if isinstance(detail, str) else repr(detail)
        return f"{status}: {shown}"
    return f"{type(error).__name__}: {error}"


class MessageArea:
    """An HTML line for the last outcome: `ok(text)`, `fail(text)`, `text` for code and tests."""

    def __init__(self) -> None:
        self.widget = w.HTML(value="")
        self.text = ""
        self.failed = False

    def ok(self, text: str) -> None:
        self.text, self.failed = text, False
        self.widget.value = f'<span style="color:#2e7d32">{html.escape(text)}</span>'

    def fail(self, text: str) -> None:
        self.text, self.failed = text, True
        self.widget.value = f'<span style="color:#c62828">{html.escape(text)}</span>'

    def clear(self) -> None:
        self.text, self.failed = "", False
        self.widget.value = ""

    def attempt(self, what: str, action: Callable[[], T]) -> T | None:
        """Run `action`; on failure show "<what> failed: <why>" and return None."""
        try:
            return action()
        except Exception as error:
            self.fail(f"{what} failed: {describe_error(error)}")
            return None


# ipywidgets' own look of a disabled button is faint in some themes: make it plain.
DISABLED_BUTTONS_CSS = """
.fractal-widget .jupyter-button:disabled,
.fractal-widget .widget-button:disabled {
  opacity: 0.4; cursor: not-allowed; box-shadow: none; filter: grayscale(100%);
}
"""


def fill(max_width: str | None = "480px", **extra: str) -> w.Layout:
    """The layout of a text input or drop-down: the room it has (width 100%), shrinking with
    it (min-width 0: a flex item's minimum is otherwise its content's width, which pushed
    inputs past the edge at 1,280 px), at most `max_width`."""
    return w.Layout(width="100%", min_width="0", flex="1 1 auto", max_width=max_width, **extra)


def share(basis: str, max_width: str | None = "480px", **extra: str) -> w.Layout:
    """The layout of one of the controls of a row: `basis` wide, growing and shrinking with
    the row (down to nothing: min-width 0), at most `max_width`."""
    return w.Layout(width="auto", min_width="0", flex=f"1 1 {basis}", max_width=max_width, **extra)


def style_sheet(css: str) -> w.HTML:
    """A `<style>` block as a widget (ipywidgets 8 without custom JavaScript: CSS this way)."""
    sheet = w.HTML(value=f"<style>{css}</style>", layout=w.Layout(display="none"))
    sheet.add_class("fractal-style")
    return sheet
