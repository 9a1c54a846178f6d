"""Request limits that the extension sets up before any route loads (no handler imports)."""

from __future__ import annotations

from typing import Any

# Defaults of the FractalJupyter traits of the same names (the body limits of a request).
DEFAULT_MAX_BODY_BYTES = 10_000_000
DEFAULT_MAX_IMPORT_BODY_BYTES = 100_000_000
DEFAULT_MAX_WHEEL_UPLOAD_BYTES = 100_000_000
# Tornado closes, without an answer, a connection whose request line and headers exceed its
# `max_header_size` (64 KiB unless set; Jupyter does not set it). The extension raises it to
# this, so that a too long URL (above MAX_URL_BYTES) gets a 414 that says why.
READABLE_HEADER_BYTES = 1024 * 1024
MAX_URL_BYTES = 32 * 1024


def read_long_headers(http_server: Any) -> None:
    """Let Jupyter's HTTP server read request heads up to READABLE_HEADER_BYTES (for new
    connections; it never lowers a larger setting)."""
    params = getattr(http_server, "conn_params", None)
    if params is not None and params.max_header_size < READABLE_HEADER_BYTES:
        params.max_header_size = READABLE_HEADER_BYTES
