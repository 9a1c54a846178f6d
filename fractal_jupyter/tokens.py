"""Bearer tokens for REST clients that cannot use Jupyter's own credentials (the `fractal` CLI).

A token is a JWT signed with HS256 by a key that lives in `data_dir` (mode 0600, created on
first use); `sub` is the username, `exp` comes from `FractalJupyter.token_lifetime`. Tokens are
stateless: removing the key file and restarting the server revokes all of them.

Logging in checks a Jupyter credential instead of a password of our own: one the server's
identity provider accepts for that user (handlers/token.py asks the provider), or, under
JupyterHub, an API token of the hub user (asked to the hub's `GET /user`).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from .file_modes import PRIVATE_FILE_MODE, make_private_dir, restrict_file

KEY_FILE = "jwt-signing-key"
ALGORITHM = "HS256"
ISSUER = "fractal-jupyter"
HUB_TIMEOUT_SECONDS = 10.0


class InvalidToken(Exception):
    """A bearer token that is not ours, was tampered with or has expired."""


class HubUnavailable(Exception):
    """JupyterHub's API could not tell whether a token is valid."""


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


@dataclass
class TokenSigner:
    """Issues and checks the JWTs of one server; the key is read or created on first use."""

    data_dir: Path
    lifetime_seconds: float
    _key: bytes | None = field(default=None, repr=False)

    @property
    def key_path(self) -> Path:
        return self.data_dir / KEY_FILE

    def key(self) -> bytes:
        if self._key is None:
            self._key = _read_or_create_key(self.key_path)
        return self._key

    def issue(self, username: str) -> str:
        import jwt  # with `cryptography`, 9 MiB that most servers never need

        now = int(time.time())
        claims = {
            "sub": username,
            "iss": ISSUER,
            "iat": now,
            "exp": now + int(self.lifetime_seconds),
        }
        return jwt.encode(claims, self.key(), algorithm=ALGORITHM)

    def username(self, token: str) -> str:
        """The `sub` of a valid token; `InvalidToken` says why a token is refused."""
        import jwt

        try:
            claims = jwt.decode(
                token,
                self.key(),
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["sub", "exp", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("The token has expired; log in again.") from None
        except jwt.InvalidTokenError:
            raise InvalidToken("The token is not valid on this server.") from None
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("The token names no user.")
        return subject


def _read_or_create_key(path: Path) -> bytes:
    """The signing key, created with mode 0600 if missing (two servers may race: one wins);
    an existing key that others could read is set to 0600. Its folder is created 0700."""
    make_private_dir(path.parent)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        restrict_file(path)
        key = path.read_bytes().strip()
        if not key:
            raise RuntimeError(f"The token signing key {path} is empty; remove it.") from None
        return key
    os.fchmod(descriptor, PRIVATE_FILE_MODE)
    with os.fdopen(descriptor, "wb") as file:
        key = secrets.token_hex(32).encode()
        file.write(key)
    return key


async def hub_user_of(api_url: str, token: str) -> dict[str, Any] | None:
    """JupyterHub's model of the user owning API `token` (with the token's `scopes`), or
    None when the hub does not know the token."""
    client = AsyncHTTPClient()
    try:
        response = await client.fetch(
            api_url.rstrip("/") + "/user",
            headers={"Authorization": f"token {token}"},
            request_timeout=HUB_TIMEOUT_SECONDS,
        )
    except HTTPClientError as error:
        if error.code in (401, 403, 404):
            return None
        raise HubUnavailable(f"JupyterHub answered {error.code}") from None
    except OSError as error:
        raise HubUnavailable(str(error)) from None
    model = json.loads(response.body)
    return model if isinstance(model, dict) else None


def hub_access_scopes(owner: str, server_name: str, configured: str) -> set[str]:
    """The scopes, any of which lets a hub user reach this server (the spawner's
    `JUPYTERHUB_OAUTH_ACCESS_SCOPES` when given, else JupyterHub's default)."""
    if configured:
        return set(json.loads(configured))
    return {
        f"access:servers!server={owner}/{server_name}",
        f"access:servers!user={owner}",
        "access:servers",
    }
