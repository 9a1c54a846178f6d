"""What the front ends need to know of the deployment (not in fractal-server)."""

from __future__ import annotations

from .common import ResponseModel


class WidgetSettings(ResponseModel):
    """`GET api/settings/widgets/`: deployment settings the notebook widgets follow."""

    # FractalJupyter.viewer_url_template: a viewer's address with `{zarr_url}`; None: no viewer.
    viewer_url_template: str | None
