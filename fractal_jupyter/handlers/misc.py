from __future__ import annotations

from typing import Any

from .._version import __version__
from .base import FractalHandler, operation


class AliveHandler(FractalHandler):
    @operation("Is the server alive (no authentication)", response=dict[str, Any], public=True)
    async def get(self) -> dict[str, Any]:
        return {"alive": True, "version": __version__}


class OpenAPIHandler(FractalHandler):
    @operation("This OpenAPI document", response=dict[str, Any], public=True)
    async def get(self) -> dict[str, Any]:
        from .openapi import openapi_document

        return openapi_document()
