"""Errors that services raise; handlers turn them into JSON `{"detail": ...}` answers."""

from typing import Any


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
