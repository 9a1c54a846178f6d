"""Plain words for what the runner names in its own terms (issue 19: no runner jargon in the
UI). Task types become what they do; the job log's fractal-server lines ("SUBMIT 0-th task",
"position in Workflow: 0", "The call 0_x/0_par_0000001 ...") are shown with 1-based step
numbers and without "calls". The log itself (the API's, the zip's) keeps its words: only the
widgets' view of it is reworded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# What each task type does, in a few words (the catalogue, the step editor).
TASK_TYPE_WORDS = {
    "non_parallel": "runs once, for all images together",
    "parallel": "runs once per image",
    "compound": "prepares once, then runs once per image",
    "converter_non_parallel": "converter: runs once and makes the images",
    "converter_compound": "converter: prepares once, then makes the images one by one",
}
# The same, short, after a task's name: "task 'Create OME-Zarr' (converter)".
TASK_KINDS = {
    "non_parallel": "all images at once",
    "parallel": "per image",
    "compound": "prepared once, then per image",
    "converter_non_parallel": "converter",
    "converter_compound": "converter",
}


def task_type_words(task_type: str | None) -> str:
    """What a task of this type does; an unknown type is named as it is."""
    return TASK_TYPE_WORDS.get(task_type or "", task_type or "unknown kind")


def task_phrase(name: str, task_type: str | None = None) -> str:
    """ "task 'Create OME-Zarr' (converter)" (without the kind when the type is unknown)."""
    kind = TASK_KINDS.get(task_type or "")
    return f"task '{name}'" + (f" ({kind})" if kind else "")


def step_title(order: int | None, name: str, task_type: str | None = None) -> str:
    """ "Step 1: task 'Create OME-Zarr' (converter)" for a workflow task at `order` (0-based)."""
    step = f"Step {order + 1}: " if order is not None else ""
    return step + task_phrase(name, task_type)


_SUBMIT_END = re.compile(r'\b(SUBMIT|END) (\d+)-th task \(name="(.*)"\)')
_TASK_ERROR = re.compile(r"Task name: (.*?), position in Workflow: (\d+)")
_POSITION = re.compile(r"Task '([^']*)' \(position (\d+)\)")
_CALL = re.compile(r"\bThe call \S+ on image ")
_ONE_CALL = re.compile(r"\bThe call \S+ failed")
_CALLS = re.compile(r"\b(\d+) calls\b")
_PER_CALL = re.compile(r"\b(per|every|each) call\b")


def plain_log(text: str, types_by_order: Mapping[int, str | None] | None = None) -> str:
    """The job log as a user reads it: steps counted from 1, tasks named with their kind
    (from `types_by_order`, the workflow task types by 0-based position), images and runs
    instead of calls."""
    types = types_by_order or {}

    def phrase(name: str, order: str) -> str:
        return f"{task_phrase(name, types.get(int(order)))} at step {int(order) + 1}"

    def submit_end(match: re.Match[str]) -> str:
        verb = "started" if match.group(1) == "SUBMIT" else "ended"
        order, name = int(match.group(2)), match.group(3)
        return f"Step {order + 1}: {task_phrase(name, types.get(order))} {verb}"

    text = _SUBMIT_END.sub(submit_end, text)
    text = _TASK_ERROR.sub(lambda m: phrase(m.group(1), m.group(2)), text)
    text = _POSITION.sub(lambda m: "T" + phrase(m.group(1), m.group(2))[1:], text)
    text = _CALL.sub("The run on image ", text)
    text = _ONE_CALL.sub("The run failed", text)
    text = _CALLS.sub(r"\1 runs", text)
    return _PER_CALL.sub(lambda m: f"{m.group(1)} run", text)
