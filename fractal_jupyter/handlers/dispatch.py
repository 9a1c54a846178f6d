"""The one handler the extension registers: it loads the route table on the first request.

The route table (`routes.py`) imports every handler module, hence the schemas, the services
and SQLAlchemy: tens of MiB that an idle server (most servers of a JupyterHub) never needs.
`LazyRoutes` stands for all of `<base_url>fractal/` at start-up; the first request under it
asks the extension for the handlers (`load`), and every request is then handed to the
handler its path matches, exactly as if that handler had been registered itself (Tornado's
own `Application.get_handler_delegate`: same auth, XSRF and error behaviour).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from jupyter_server.utils import url_path_join
from tornado import httputil, web
from tornado.routing import PathMatches, Router

# Where the Fractal API lives, below the server's base_url.
PREFIX = "/fractal"
# What `LazyRoutes` stands for (a path no route matches falls through to Jupyter's 404).
PREFIX_PATTERN = PREFIX + r"/.*"

HandlerSpec = tuple[str, type[web.RequestHandler], dict[str, Any]]


class LazyRoutes(Router):
    """A Tornado router for `<base_url>fractal/...` that loads its handlers when first used."""

    def __init__(
        self,
        application: web.Application,
        base_url: str,
        load: Callable[[], Sequence[HandlerSpec]],
    ) -> None:
        self.application = application
        self.base_url = base_url
        self.load = load
        self._rules: list[tuple[PathMatches, type[web.RequestHandler], dict[str, Any]]] = []
        self._loaded = False

    def find_handler(
        self, request: httputil.HTTPServerRequest, **kwargs: Any
    ) -> httputil.HTTPMessageDelegate | None:
        if not self._loaded:
            self._rules = [
                (PathMatches(url_path_join(self.base_url, pattern)), handler, handler_kwargs)
                for pattern, handler, handler_kwargs in self.load()
            ]
            self._loaded = True
        for matcher, handler, handler_kwargs in self._rules:
            match = matcher.match(request)
            if match is not None:
                # `match`: the path's arguments (path_args, path_kwargs), if it has any.
                return self.application.get_handler_delegate(
                    request, handler, handler_kwargs, **match
                )
        return None
