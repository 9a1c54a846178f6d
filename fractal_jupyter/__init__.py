"""fractal_jupyter: Fractal's v2 API and workflow runner as a Jupyter server extension."""

from typing import Any

from ._version import __version__
from .app import FractalJupyter

__all__ = ["FractalJupyter", "__version__"]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    return [{"module": "fractal_jupyter", "app": FractalJupyter}]
