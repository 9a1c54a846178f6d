"""Find the Jupyter server a notebook's kernel belongs to: its URL and credentials.

Under JupyterHub, a single-user server's kernels inherit its environment: the server's own
URL (`JUPYTERHUB_SERVICE_URL`, `http://<ip>:<port>/user/<name>/`), its prefix and the
owner's API token (`JUPYTERHUB_API_TOKEN`), which the server accepts as `token <...>`.
On a plain server, jupyter_server writes `jpserver-<pid>.json` (url, token, root_dir, pid)
to the runtime directory; the kernel's own server is the one that started it (its parent
process), else the one whose root directory holds the kernel's working directory (the
notebook's folder), else the only one running.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})


class ServerNotFound(RuntimeError):
    """No Jupyter server could be found for this kernel (say which one: url=..., token=...)."""


@dataclass(frozen=True)
class ServerInfo:
    """Where a Jupyter server answers and how to authenticate to it."""

    url: str  # the server's URL with its base_url, ending in "/"
    token: str | None
    unix_socket: str | None = None
    source: str = "arguments"  # or "JupyterHub", "runtime file"


def _with_slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def _connectable(url: str) -> str:
    """A URL with a wildcard host (a server bound to every interface) points at localhost."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host not in WILDCARD_HOSTS:
        return url
    netloc = f"127.0.0.1:{parts.port}" if parts.port else "127.0.0.1"
    return urlunsplit(parts._replace(netloc=netloc))


def from_jupyterhub(environ: Mapping[str, str]) -> ServerInfo | None:
    """The single-user server of this kernel, from the JUPYTERHUB_* variables, if any."""
    token = environ.get("JUPYTERHUB_API_TOKEN") or environ.get("JPY_API_TOKEN")
    if not token:
        return None
    service_url = environ.get("JUPYTERHUB_SERVICE_URL")
    if service_url:
        return ServerInfo(_with_slash(_connectable(service_url)), token, source="JupyterHub")
    prefix = environ.get("JUPYTERHUB_SERVICE_PREFIX")
    if not prefix:
        return None
    # No service URL (older hubs): the running server whose base_url is our prefix.
    for info in _running_servers():
        if _with_slash(str(info.get("base_url", ""))) == _with_slash(prefix):
            found = _from_runtime_info(info)
            return ServerInfo(found.url, token, found.unix_socket, "JupyterHub")
    return None


def _running_servers() -> list[dict[str, Any]]:
    from jupyter_server.serverapp import list_running_servers

    return list(list_running_servers())


def _from_runtime_info(info: Mapping[str, Any]) -> ServerInfo:
    sock = info.get("sock") or None
    if sock:
        base_url = _with_slash(str(info.get("base_url") or "/"))
        url = "http://localhost" + base_url
    else:
        url = _with_slash(_connectable(str(info["url"])))
    return ServerInfo(url, info.get("token") or None, sock, "runtime file")


def _contains(root: str, path: Path) -> bool:
    try:
        path.relative_to(Path(root).resolve())
    except ValueError:
        return False
    return True


def choose_server(
    servers: Iterable[Mapping[str, Any]], cwd: Path, parent_pid: int | None
) -> Mapping[str, Any]:
    """The kernel's server among running ones (see the module docstring for the order)."""
    servers = list(servers)
    if not servers:
        raise ServerNotFound(
            "No running Jupyter server found (no jpserver-*.json in the runtime directory and no "
            "JUPYTERHUB_* variables). Start one, or give FractalClient(url=..., token=...)."
        )
    for info in servers:
        if parent_pid is not None and info.get("pid") == parent_pid:
            return info
    holding = [
        info for info in servers if info.get("root_dir") and _contains(info["root_dir"], cwd)
    ]
    if holding:
        # The most specific root wins when servers are nested.
        return max(holding, key=lambda info: len(Path(info["root_dir"]).resolve().parts))
    if len(servers) == 1:
        return servers[0]
    listing = ", ".join(f"{info.get('url')} (root {info.get('root_dir')})" for info in servers)
    raise ServerNotFound(
        f"{len(servers)} Jupyter servers are running and none has {cwd} under its root: "
        f"{listing}. Say which one: FractalClient(url=..., token=...)."
    )


def discover(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> ServerInfo:
    """The server this kernel belongs to: JupyterHub's variables first, then runtime files."""
    environ = os.environ if environ is None else environ
    hub = from_jupyterhub(environ)
    if hub is not None:
        return hub
    here = (cwd or Path.cwd()).resolve()
    return _from_runtime_info(choose_server(_running_servers(), here, os.getppid()))
