"""The HTTP layer of the client: one sync `httpx.Client`, path templates, errors, models.

Every public client method is declared with `endpoint(method, path)`, where `path` is the
route's path as written in `handlers/routes.py` (`/api/v2/project/{project_id}/`); a test
checks that every route of the server has a client method.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx
from pydantic import BaseModel, TypeAdapter

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

DEFAULT_TIMEOUT_SECONDS = 60.0
BUSY_RETRY_DELAYS = (0.2, 1.0, 3.0)


class FractalAPIError(Exception):
    """The server refused a request: `status` is the HTTP status, `detail` its explanation.

    `detail` is the server's `detail` field (a string, or a list of FastAPI-shaped problems
    for a 422 about the request's shape).
    """

    def __init__(self, status: int, detail: Any, method: str, url: str) -> None:
        super().__init__(f"{method} {url} -> {status}: {detail}")
        self.status = status
        self.detail = detail
        self.method = method
        self.url = url


class FractalUnavailable(FractalAPIError):
    """503: the server cannot serve Fractal now; `detail` says why (e.g. which setting of
    its configuration is wrong, or that its database cannot be reached).

    In a notebook it shows as that message alone: a traceback through the client would
    only hide it.
    """

    def __str__(self) -> str:
        return str(self.detail)

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of the traceback."""
        return [f"{type(self).__name__}: {self.detail}"]


# The header of a 503 that lasts until the server is reconfigured (not worth a retry).
UNAVAILABLE_HEADER = "X-Fractal-Unavailable"


class FractalConnectionError(ConnectionError):
    """The server could not be reached (not running, wrong URL, network trouble)."""


@dataclass(frozen=True)
class Endpoint:
    """One HTTP method of one route, as a client method declares it."""

    method: str
    path: str


def endpoint(method: str, path: str) -> Callable[[F], F]:
    """Declare which route and HTTP method a client method calls (for the coverage test)."""

    def mark(function: F) -> F:
        function.fractal_endpoint = Endpoint(method, path)  # type: ignore[attr-defined]
        return function

    return mark


def endpoints_of(cls: type) -> dict[Endpoint, str]:
    """The endpoints a client class implements, with the name of the method for each."""
    found: dict[Endpoint, str] = {}
    for name in dir(cls):
        spec = getattr(getattr(cls, name, None), "fractal_endpoint", None)
        if isinstance(spec, Endpoint):
            found[spec] = name
    return found


@functools.cache
def _adapter(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation)


def body_json(value: BaseModel | Mapping[str, Any] | list[Any] | None) -> Any:
    """A request body as JSON data: models keep only the fields that were set; a list (of
    ids) is sent as it is."""
    if value is None:
        return None
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_unset=True)
    if isinstance(value, list):
        return value
    return dict(value)


def fields_given(**fields: Any) -> dict[str, Any]:
    """Keyword arguments that are not None, as a request body (None means "left out")."""
    return {
        key: body_json(value) if isinstance(value, BaseModel) else value
        for key, value in fields.items()
        if value is not None
    }


def filter_fields(
    attribute_filters: Mapping[str, Sequence[Any]] | None,
    type_filters: Mapping[str, bool] | None,
) -> dict[str, Any]:
    """fractal-server 2.11+'s `attribute_filters` ({key: [values]}) and `type_filters` as
    body fields (left out when empty)."""
    return fields_given(
        attribute_filters=(
            {key: list(values) for key, values in attribute_filters.items()}
            if attribute_filters
            else None
        ),
        type_filters=dict(type_filters) if type_filters else None,
    )


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def changes_body(changes: BaseModel | Mapping[str, Any] | None, fields: Mapping[str, Any]) -> Any:
    """A PATCH body from a model or mapping plus keyword arguments, explicit None kept
    (where the server reads null as "clear this")."""
    return {**(body_json(changes) or {}), **fields}


def _detail(response: httpx.Response) -> Any:
    try:
        payload = response.json()
    except ValueError:
        return response.text or response.reason_phrase
    if isinstance(payload, dict) and "detail" in payload:
        return payload["detail"]
    return payload


class Transport:
    """Sends requests below `<server url>fractal/` with the Jupyter token."""

    def __init__(
        self,
        api_root: str,
        token: str | None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        verify: bool | str = True,
        unix_socket: str | None = None,
    ) -> None:
        self.api_root = api_root
        all_headers = {"Accept": "application/json", **(headers or {})}
        if token:
            # A JWT from `login()` / `jupyter fractal token` is a bearer token; Jupyter's and
            # JupyterHub's own tokens are sent as `token <...>` (both forms work for them).
            scheme = "Bearer" if token.count(".") == 2 else "token"
            all_headers["Authorization"] = f"{scheme} {token}"
        transport = httpx.HTTPTransport(uds=unix_socket, verify=verify) if unix_socket else None
        self.http = httpx.Client(
            base_url=api_root,
            headers=all_headers,
            timeout=timeout,
            verify=verify,
            transport=transport,
        )

    def close(self) -> None:
        self.http.close()

    def send(
        self,
        method: str,
        path: str,
        ids: Mapping[str, int] | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        form: Mapping[str, str] | None = None,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
    ) -> httpx.Response:
        """Send one request; raise `FractalAPIError` for an error status. `files` makes a
        multipart form of `form` and the files (name: (file name, content, media type))."""
        url = path if ids is None else path.format(**{k: int(v) for k, v in ids.items()})
        query = {
            key: _query_value(value) for key, value in (params or {}).items() if value is not None
        }
        for delay in (*BUSY_RETRY_DELAYS, None):
            try:
                response = self.http.request(
                    method,
                    url.lstrip("/"),
                    params=query,
                    json=body_json(body),
                    data=form,
                    files=files,
                )
            except httpx.TransportError as error:
                raise FractalConnectionError(
                    f"Cannot reach the Fractal API at {self.api_root}: {error}"
                ) from error
            # 503: the database was busy and nothing was done; reads are worth another try,
            # unless the server says it is not configured to serve at all.
            if (
                response.status_code != 503
                or method != "GET"
                or delay is None
                or UNAVAILABLE_HEADER in response.headers
            ):
                break
            time.sleep(delay)
        if response.status_code == 503:
            raise FractalUnavailable(503, _detail(response), method, str(response.url))
        if response.is_error:
            raise FractalAPIError(
                response.status_code, _detail(response), method, str(response.url)
            )
        return response

    def call(
        self,
        response_type: type[T],
        method: str,
        path: str,
        ids: Mapping[str, int] | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        form: Mapping[str, str] | None = None,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
    ) -> T:
        """Send one request and parse its JSON answer as `response_type`."""
        response = self.send(method, path, ids, params=params, body=body, form=form, files=files)
        result: T = _adapter(cast(Hashable, response_type)).validate_json(response.content)
        return result

    def download(
        self, path: str, ids: Mapping[str, int], target: str | os.PathLike[str] | None
    ) -> bytes:
        """A binary answer (a zip archive), also written to `target` when given."""
        content = self.send("GET", path, ids).content
        if target is not None:
            Path(target).write_bytes(content)
        return content

    def do(
        self,
        method: str,
        path: str,
        ids: Mapping[str, int] | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> None:
        """Send one request whose answer has no content."""
        self.send(method, path, ids, params=params, body=body)


class ClientBase:
    """What the resource mixins of `FractalClient` share: the transport."""

    _transport: Transport
