"""ipywidgets 8 views on the Fractal API, without custom JavaScript (JupyterLab, Notebook 7,
VS Code): task argument forms, a workflow builder, an image browser, a job monitor, a job list."""

from __future__ import annotations

from .builder import WorkflowBuilder
from .forms import MISSING, ArgsForm, FieldError, InvalidArguments
from .images import ImageBrowser
from .jobs import JobList, JobMonitor

__all__ = [
    "MISSING",
    "ArgsForm",
    "FieldError",
    "ImageBrowser",
    "InvalidArguments",
    "JobList",
    "JobMonitor",
    "WorkflowBuilder",
]
