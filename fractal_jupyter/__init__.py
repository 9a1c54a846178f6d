"""fractal_jupyter: Fractal's v2 API and workflow runner as a Jupyter server extension.

Importing the package stays cheap (task processes and job processes import parts of it);
the extension app, and with it jupyter_server and SQLAlchemy, load when first asked for. A
third-party module that is slow to import and seldom used is deferred (slow_imports.py).
"""

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .slow_imports import defer_rfc3987_syntax

defer_rfc3987_syntax()

if TYPE_CHECKING:
    from .app import FractalJupyter

__all__ = ["FractalJupyter", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "FractalJupyter":
        from .app import FractalJupyter

        return FractalJupyter
    raise AttributeError(f"module 'fractal_jupyter' has no attribute {name!r}")


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import FractalJupyter

    return [{"module": "fractal_jupyter", "app": FractalJupyter}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where `jupyter labextension develop` finds the built labextension (in editable installs)."""
    return [{"src": "labextension", "dest": "fractal-jupyter-labextension"}]
