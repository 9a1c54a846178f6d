"""Errors that services raise; handlers turn them into JSON `{"detail": ...}` answers."""

from typing import Any

from pydantic import ValidationError


class FractalError(Exception):
    status_code = 400

    def __init__(self, detail: Any) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(FractalError):
    status_code = 404


class Forbidden(FractalError):
    status_code = 403


class Unprocessable(FractalError):
    status_code = 422


class Unavailable(FractalError):
    """Nothing was done: something the server needs (its database) cannot be reached."""

    status_code = 503
    # Set when the 503 lasts until an administrator acts (sent as X-Fractal-Unavailable,
    # so that clients do not retry): a retry seconds later cannot succeed.
    lasting: str | None = None


class SchemaUnavailable(Unavailable):
    """The database's schema is not this server's (older or newer): nothing was done."""

    lasting = "schema"


def validation_detail(error: ValidationError, location: str) -> list[dict[str, Any]]:
    """pydantic's errors as FastAPI's 422 `detail` (each `loc` starts with `location`)."""
    return [
        {
            "loc": [location, *item["loc"]],
            "msg": item["msg"],
            "type": item["type"],
        }
        for item in error.errors(include_url=False, include_context=False, include_input=False)
    ]
