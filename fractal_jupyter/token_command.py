"""`jupyter fractal token`: a bearer token for the `fractal` command-line client.

It signs the token with the server's key (in `FractalJupyter.data_dir`), so it works without a
running server and only for whoever can read that key: the user running the server.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from jupyter_core.application import JupyterApp
from traitlets import Bool

from ._version import __version__
from .tokens import TokenSigner

CONFIG_FILES = ("jupyter_server_config", "jupyter_fractal_config")


def fractal_client_token_path() -> Path:
    """Where fractal-client (>= 2.9) reads its token when no user and password are given."""
    explicit = os.environ.get("FRACTAL_TOKEN")
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("FRACTAL_CACHE_PATH") or str(Path.home() / ".cache" / "fractal")
    return Path(cache).expanduser() / "token.txt"


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


class TokenApp(JupyterApp):
    name = "jupyter-fractal-token"
    version = __version__
    description = """Print a fresh bearer token for the Fractal API of this user's Jupyter server.

    The token is a JWT valid for FractalJupyter.token_lifetime seconds; the user is the
    server's (FractalJupyter.server_owner under JupyterHub, else default_username).
    With --write it goes to the file the `fractal` client reads instead
    ($FRACTAL_TOKEN, else $FRACTAL_CACHE_PATH/token.txt, else ~/.cache/fractal/token.txt).
    fractal-client 2.2.x reads no token file: give it FRACTAL_USER=<user> and
    FRACTAL_PASSWORD=<the Jupyter token> and it logs in by itself.
    """
    examples = """
    export FRACTAL_SERVER=http://127.0.0.1:8888/fractal
    jupyter fractal token --write && fractal project list
    """

    write = Bool(
        False, help="Write the token to the fractal client's token file instead of printing it."
    ).tag(config=True)

    flags = {  # noqa: RUF012 (traitlets reads it from the class)
        **JupyterApp.flags,
        "write": ({"TokenApp": {"write": True}}, write.help),
    }

    def load_config_file(self, suppress_errors: bool = True) -> None:  # type: ignore[override]
        """The same configuration files as the Jupyter server and the fractal extension."""
        for name in CONFIG_FILES:
            super(JupyterApp, self).load_config_file(name, path=self.config_file_paths)

    def start(self) -> None:
        from .app import FractalJupyter

        fractal = FractalJupyter(config=self.config)
        username = fractal.server_owner or fractal.default_username
        signer = TokenSigner(Path(fractal.data_dir), fractal.token_lifetime)
        token = signer.issue(username)
        if not self.write:
            print(token)
            return
        path = fractal_client_token_path()
        write_private(path, token + "\n")
        lifetime = timedelta(seconds=int(fractal.token_lifetime))
        print(f"Wrote a token for {username!r}, valid for {lifetime}, to {path}")
