"""Layout checks of the widgets: nothing is cut off in a narrow (1,280 px) notebook."""

from __future__ import annotations

import re
from collections.abc import Iterator

import ipywidgets as w

INPUTS = (w.Text, w.Textarea, w.Dropdown)
FIXED = (w.Button, w.Checkbox, w.HTML)


def descendants(widget: w.Widget) -> Iterator[w.Widget]:
    yield widget
    for child in getattr(widget, "children", ()):
        yield from descendants(child)


def clipping_risks(root: w.Widget) -> list[str]:
    """What could be cut off: a text input or drop-down that neither fills its room (width
    100%) nor shrinks with its row (flex-shrink 1), or cannot go down to nothing (min-width
    0); a box or input in a row (HBox) that cannot shrink below its content (boxes of
    buttons only keep their width). Empty: none."""
    found = []
    for widget in descendants(root):
        layout = widget.layout
        if isinstance(widget, INPUTS):
            # 100% wide, or a flex item that shrinks ("<grow> 1 <basis>").
            fills = layout.width == "100%" or re.match(r"\d+ 1 ", layout.flex or "") is not None
            if not fills or layout.min_width != "0":
                found.append(
                    f"{type(widget).__name__} {widget.description!r}: "
                    f"width={layout.width} flex={layout.flex} min_width={layout.min_width}"
                )
        if isinstance(widget, w.HBox):
            for child in widget.children:
                if isinstance(child, FIXED) or child.layout.display == "none":
                    continue
                if not any(isinstance(d, (*INPUTS, w.Select)) for d in descendants(child)):
                    continue  # buttons only: their own width
                if child.layout.min_width != "0":
                    found.append(
                        f"{type(child).__name__} in a row: min_width={child.layout.min_width}"
                    )
    return found
