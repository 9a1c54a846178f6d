"""What `<base_url>fractal/` serves when the configuration could not be applied: a 503.

Inside `jupyter lab` the other extensions keep working, so the server starts; every Fractal
route then answers 503 with the reason (the setting, its value, what is accepted), rather than
Fractal running on defaults.
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.base.handlers import APIHandler

from ..client.transport import UNAVAILABLE_HEADER
from .dispatch import PREFIX

ANONYMOUS_DETAIL = (
    "Fractal is not serving on this server: its configuration is wrong. The server's log "
    "says which setting."
)


class UnavailableHandler(APIHandler):
    """503 with `{"detail": reason}` for every method; anonymous callers get no details
    (the reason names hosts and paths of the configuration)."""

    def initialize(self, detail: str) -> None:
        self.detail = detail

    def check_xsrf_cookie(self) -> None:
        """Nothing is changed, so a form post without the cookie gets the 503 too."""

    def _unavailable(self, *args: Any) -> None:
        detail = self.detail if self.current_user else ANONYMOUS_DETAIL
        self.set_status(503)
        self.set_header("Content-Type", "application/json")
        self.set_header(UNAVAILABLE_HEADER, "configuration")
        self.finish(json.dumps({"detail": detail}))

    get = post = put = patch = delete = allow_unauthenticated(_unavailable)


def unavailable_handlers(detail: str) -> list[tuple[str, type[APIHandler], dict[str, Any]]]:
    return [(PREFIX + r"(?:/.*)?", UnavailableHandler, {"detail": detail})]
