"""A Python client for fractal_jupyter's API, for notebooks and scripts.

    from fractal_jupyter.client import FractalClient
    client = FractalClient()            # inside a kernel: finds its own Jupyter server
    client = FractalClient(url="http://127.0.0.1:8888/", token="...")
    client.list_projects()              # -> list[ProjectRead]

Methods are named after the resources and verbs of the API and return the server's pydantic
models (`fractal_jupyter.schemas`); a refused request raises `FractalAPIError` with the
HTTP `status` and the server's `detail`. Calls are synchronous (httpx).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .data import DataMixin
from .discovery import ServerInfo, ServerNotFound, discover
from .functions import FunctionNotRegistrable, FunctionsMixin
from .history import HistoryMixin
from .jobs import JobsMixin
from .results import ResultsMixin
from .task_groups import TaskGroupsMixin
from .transport import (
    DEFAULT_TIMEOUT_SECONDS,
    Endpoint,
    FractalAPIError,
    FractalConnectionError,
    FractalUnavailable,
    Transport,
    endpoints_of,
)
from .users import UsersMixin
from .workflows import WorkflowsMixin

__all__ = [
    "Endpoint",
    "FractalAPIError",
    "FractalClient",
    "FractalConnectionError",
    "FractalUnavailable",
    "FunctionNotRegistrable",
    "ServerInfo",
    "ServerNotFound",
    "discover",
    "endpoints_of",
]


def _api_root(url: str) -> str:
    url = url if url.endswith("/") else url + "/"
    return url if url.endswith("/fractal/") else url + "fractal/"


class FractalClient(
    FunctionsMixin,
    ResultsMixin,
    DataMixin,
    WorkflowsMixin,
    TaskGroupsMixin,
    JobsMixin,
    HistoryMixin,
    UsersMixin,
):
    """The Fractal API of one Jupyter server.

    With no `url`, the server is found from the kernel's environment (JupyterHub's variables,
    else jupyter_server's runtime files). `url` is the Jupyter server's URL with its base URL
    (`http://host:8888/` or `https://hub/user/alice/`); `token` a Jupyter or JupyterHub token.
    `headers` are added to every request.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        verify: bool | str = True,
        unix_socket: str | None = None,
    ) -> None:
        if url is None:
            found = discover()
            url, unix_socket = found.url, found.unix_socket
            token = found.token if token is None else token
            self.source = found.source
        else:
            self.source = "arguments"
        self.url = url if url.endswith("/") else url + "/"
        self._transport = Transport(
            _api_root(url),
            token,
            headers=headers,
            timeout=timeout,
            verify=verify,
            unix_socket=unix_socket,
        )

    @property
    def api_url(self) -> str:
        """Where the API answers: `<server url>fractal/`."""
        return self._transport.api_root

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """A raw request below the API root (`call("GET", "api/v2/project/")`): its JSON
        answer, or None for an empty one. For routes and options without a method here."""
        response = self._transport.send(method, path, body=body)
        return response.json() if response.content else None

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> FractalClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FractalClient({self.url!r}, from {self.source})"
