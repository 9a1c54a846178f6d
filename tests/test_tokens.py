"""Bearer tokens (JWT) for REST clients, the token login and logout, the JupyterHub owner rule."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any, ClassVar

import jwt
import pytest
from jupyter_server.auth import passwd
from jupyter_server.auth.identity import IdentityProvider, PasswordIdentityProvider, User
from sqlalchemy import update
from tornado import web
from tornado.httpserver import HTTPServer

from fractal_jupyter.db.models import User as UserRow
from fractal_jupyter.demo import free_port
from fractal_jupyter.token_command import fractal_client_token_path
from fractal_jupyter.tokens import KEY_FILE, TokenSigner, hub_access_scopes
from tests.conftest import fractal_state_of

SERVER_USER = "carla"
WEEK = 7 * 24 * 3600


@pytest.fixture
def fractal_config(fractal_config: dict[str, Any]) -> dict[str, Any]:
    return {**fractal_config, "default_username": SERVER_USER}


@pytest.fixture
def state(jp_serverapp: Any) -> Any:
    return fractal_state_of(jp_serverapp)


@pytest.fixture
def jupyter_token(jp_serverapp: Any) -> str:
    token: str = jp_serverapp.identity_provider.token
    assert token
    return token


async def login(
    api: Any, username: str, password: str, *, test_user: str | None = None
) -> tuple[int, Any]:
    """The token login; `X-Test-User` (tests/conftest.py's provider) names `username` unless
    `test_user` says otherwise."""
    return await api(
        "POST",
        "auth/token/login/",
        user=test_user or username,
        raw_body=urllib.parse.urlencode({"username": username, "password": password}).encode(),
        headers={"Authorization": "", "Content-Type": "application/x-www-form-urlencoded"},
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def server_key(fractal_config: dict[str, Any]) -> bytes:
    return (Path(fractal_config["data_dir"]) / KEY_FILE).read_bytes()


async def test_the_jupyter_token_buys_a_jwt_for_the_server_user(api, jupyter_token):
    status, answer = await login(api, SERVER_USER, jupyter_token)
    assert status == 200, answer
    assert answer["token_type"] == "bearer"
    claims = jwt.decode(answer["access_token"], options={"verify_signature": False})
    assert claims["sub"] == SERVER_USER
    assert claims["exp"] - claims["iat"] == WEEK
    assert jwt.get_unverified_header(answer["access_token"])["alg"] == "HS256"
    # The JWT is the caller, whatever else the request says.
    status, me = await api(
        "GET", "auth/current-user/", user="alice", headers=bearer(answer["access_token"])
    )
    assert status == 200, me
    assert me["username"] == SERVER_USER
    # The e-mail address that auth/current-user/ shows is a valid username too.
    status, again = await login(api, me["email"], jupyter_token)
    assert status == 200, again


async def test_a_wrong_credential_is_401(api, jupyter_token):
    status, answer = await login(api, SERVER_USER, jupyter_token + "x")
    assert status == 401
    assert "Bad credentials" in answer["detail"]
    # The token must be the whole password (Jupyter reads a header up to its end of line).
    for suffix in ("\nx", "\rx", " x", "\tx"):
        status, answer = await login(api, SERVER_USER, jupyter_token + suffix)
        assert status == 401, (suffix, answer)
    # The identity provider says who the token is (here: with X-Test-User): nobody else.
    status, answer = await login(api, "alice", jupyter_token, test_user=SERVER_USER)
    assert status == 401
    assert "Bad credentials" in answer["detail"]
    status, answer = await api(
        "POST",
        "auth/token/login/",
        raw_body=b"username=carla",
        headers={"Authorization": "", "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 422
    assert answer["detail"][0]["loc"] == ["body", "password"]


async def test_a_bearer_jwt_writes_without_xsrf_cookie(api, jupyter_token):
    _, answer = await login(api, SERVER_USER, jupyter_token)
    headers = bearer(answer["access_token"])
    status, project = await api("POST", "api/v2/project/", {"name": "by jwt"}, headers=headers)
    assert status == 201, project
    status, projects = await api("GET", "api/v2/project/", headers=headers)
    assert [p["name"] for p in projects] == ["by jwt"]
    # It is the server user's project, not the header identity's.
    _, alices = await api("GET", "api/v2/project/", user="alice")
    assert alices == []
    status, nothing = await api("POST", "auth/token/logout/", headers=headers)
    assert (status, nothing) == (204, None)
    # Logging out is stateless, as in fractal-server: the token still works.
    status, _ = await api("GET", "api/v2/project/", headers=headers)
    assert status == 200


async def test_expired_and_forged_tokens_are_401(api, jupyter_token, fractal_config):
    await login(api, SERVER_USER, jupyter_token)
    key = server_key(fractal_config)
    now = int(time.time())
    good = {"sub": SERVER_USER, "iss": "fractal-jupyter", "iat": now}
    cases = {
        "expired": (jwt.encode({**good, "exp": now - 5}, key, "HS256"), "expired"),
        "other key": (jwt.encode({**good, "exp": now + 60}, b"x" * 64, "HS256"), "not valid"),
        "no expiry": (jwt.encode(good, key, "HS256"), "not valid"),
        "other issuer": (
            jwt.encode({**good, "iss": "someone", "exp": now + 60}, key, "HS256"),
            "not valid",
        ),
        "unsigned": (jwt.encode({**good, "exp": now + 60}, None, "none"), "not valid"),
        "garbage": ("a.b.c", "not valid"),
    }
    for name, (token, reason) in cases.items():
        for method, body in (("GET", None), ("POST", {"name": "x"})):
            status, answer = await api(method, "api/v2/project/", body, headers=bearer(token))
            assert status == 401, (name, method, answer)
            assert reason in answer["detail"], (name, answer)
    status, projects = await api("GET", "api/v2/project/", user=SERVER_USER)
    assert (status, projects) == (200, [])


async def test_the_signing_key_is_private_and_kept(api, jupyter_token, fractal_config):
    key_path = Path(fractal_config["data_dir"]) / KEY_FILE
    assert not key_path.exists()
    _, first = await login(api, SERVER_USER, jupyter_token)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    # A new signer on the same folder (a restarted server) accepts the old tokens.
    signer = TokenSigner(key_path.parent, 60)
    assert signer.username(first["access_token"]) == SERVER_USER


def test_the_key_is_0600_whatever_the_umask(tmp_path):
    previous = os.umask(0)
    try:
        signer = TokenSigner(tmp_path / "new" / "dir", 60)
        token = signer.issue("dora")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(signer.key_path.stat().st_mode) == 0o600
    assert TokenSigner(signer.data_dir, 60).username(token) == "dora"


async def test_under_jupyterhub_only_the_owner_submits_jobs(api, state):
    state.server_owner = "alice"
    path = "api/v2/project/12345/job/submit/"
    params = {"workflow_id": "1", "dataset_id": "1"}
    status, answer = await api("POST", path, {}, user="bob", params=params)
    assert status == 403
    assert "Only 'alice' may submit jobs" in answer["detail"]
    assert "You are 'bob'" in answer["detail"]
    # The owner gets past the rule (to the next check: there is no such project).
    status, answer = await api("POST", path, {}, user="alice", params=params)
    assert (status, answer["detail"]) == (404, "Project not found")
    # Admins are no exception: jobs would run as alice.
    status, answer = await api("POST", path, {}, user="admin", params=params)
    assert status == 403


HUB_TOKENS: dict[str, dict[str, Any]] = {
    "alice-token": {"name": "alice", "scopes": ["access:servers!user=alice"]},
    "bob-token": {"name": "bob", "scopes": ["access:servers!server=alice/", "self"]},
    "carol-token": {"name": "carol", "scopes": ["read:users"]},
}


class FakeHubUser(web.RequestHandler):
    """JupyterHub's `GET /hub/api/user`: the owner of the request's API token."""

    def get(self) -> None:
        header = self.request.headers.get("Authorization", "")
        model = HUB_TOKENS.get(header.removeprefix("token "))
        if model is None:
            raise web.HTTPError(403)
        self.write(model)


@pytest.fixture
def fake_hub(state, jp_asyncio_loop):
    port = free_port(0)
    server = HTTPServer(web.Application([(r"/hub/api/user", FakeHubUser)]))
    server.listen(port, "127.0.0.1")
    state.server_owner = "alice"
    state.hub_api_url = f"http://127.0.0.1:{port}/hub/api/"
    state.hub_access_scopes = frozenset(hub_access_scopes("alice", "", ""))
    yield state
    server.stop()


async def test_under_jupyterhub_a_hub_token_of_the_user_buys_a_jwt(api, fake_hub, jupyter_token):
    status, answer = await login(api, "alice", "alice-token")
    assert status == 200, answer
    assert jwt.decode(answer["access_token"], options={"verify_signature": False})["sub"] == (
        "alice"
    )
    status, me = await api("GET", "auth/current-user/", headers=bearer(answer["access_token"]))
    assert me["username"] == "alice"
    # Someone else's token, an unknown token, the server's own Jupyter token: 401.
    for username, password in (
        ("alice", "bob-token"),
        ("alice", "nonsense"),
        (SERVER_USER, jupyter_token),
    ):
        status, answer = await login(api, username, password)
        assert status == 401, (username, password, answer)
        assert "Bad credentials" in answer["detail"]
    # A hub user without access to alice's server gets no token for it.
    status, answer = await login(api, "carol", "carol-token")
    assert status == 403
    assert "'carol' has no access to this server" in answer["detail"]
    # A user alice shared her server with gets a token, but may not run jobs.
    status, answer = await login(api, "bob", "bob-token")
    assert status == 200, answer
    status, answer = await api(
        "POST",
        "api/v2/project/1/job/submit/",
        {},
        headers=bearer(answer["access_token"]),
        params={"workflow_id": "1", "dataset_id": "1"},
    )
    assert status == 403
    assert "Only 'alice' may submit jobs" in answer["detail"]


async def test_an_unreachable_hub_is_503(api, state):
    state.hub_api_url = f"http://127.0.0.1:{free_port(0)}/hub/api"
    status, answer = await login(api, "alice", "alice-token")
    assert status == 503
    assert "JupyterHub could not check the token" in answer["detail"]


def token_command(data_dir: Path, *options: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTERHUB_", "FRACTAL_"))}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter",
            "fractal",
            "token",
            f"--FractalJupyter.data_dir={data_dir}",
            *options,
        ],
        capture_output=True,
        text=True,
        env={**clean, **env},
        check=True,
        timeout=60,
    )


async def test_jupyter_fractal_token_prints_a_token_the_server_accepts(api, fractal_config):
    done = token_command(
        Path(fractal_config["data_dir"]), f"--FractalJupyter.default_username={SERVER_USER}"
    )
    token = done.stdout.strip()
    status, me = await api("GET", "auth/current-user/", headers=bearer(token))
    assert (status, me["username"]) == (200, SERVER_USER)


def test_jupyter_fractal_token_writes_the_client_token_file(tmp_path):
    data_dir = tmp_path / "data"
    cache = tmp_path / "cache"
    done = token_command(
        data_dir,
        "--write",
        "--FractalJupyter.token_lifetime=3600",
        FRACTAL_CACHE_PATH=str(cache),
        JUPYTERHUB_USER="dora",
    )
    token_file = cache / "token.txt"
    assert f"Wrote a token for 'dora', valid for 1:00:00, to {token_file}" in done.stdout
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    assert TokenSigner(data_dir, 60).username(token) == "dora"
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 3600


def test_the_token_file_is_where_fractal_client_reads_it(monkeypatch, tmp_path):
    monkeypatch.delenv("FRACTAL_TOKEN", raising=False)
    monkeypatch.delenv("FRACTAL_CACHE_PATH", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert fractal_client_token_path() == tmp_path / ".cache" / "fractal" / "token.txt"
    monkeypatch.setenv("FRACTAL_CACHE_PATH", "/somewhere")
    assert fractal_client_token_path() == Path("/somewhere/token.txt")
    # fractal-client reads FRACTAL_TOKEN as the path of the token file.
    monkeypatch.setenv("FRACTAL_TOKEN", "/else/my-token")
    assert fractal_client_token_path() == Path("/else/my-token")


# --- The token login asks the server's identity provider, whichever it is --------------------


class TwoUserProvider(IdentityProvider):  # type: ignore[misc]
    """A deployment's own identity provider: each user has a token of their own."""

    user_tokens: ClassVar[dict[str, str]] = {"dora-secret": "dora", "emil-secret": "emil"}

    async def get_user(self, handler: Any) -> User | None:
        name = self.user_tokens.get(self.get_token(handler) or "")
        return User(username=name) if name else None


@pytest.fixture
def provider_config() -> dict[str, Any]:
    """Extra Jupyter configuration for a test (another identity provider)."""
    return {}


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any], provider_config: dict[str, Any]) -> Any:
    merged = {section: dict(values) for section, values in jp_server_config.items()}
    for section, values in provider_config.items():
        merged.setdefault(section, {}).update(values)
    return merged


@pytest.mark.parametrize(
    "provider_config", [{"ServerApp": {"identity_provider_class": TwoUserProvider}}]
)
async def test_each_user_of_a_custom_provider_logs_in_with_their_own_token(api, jupyter_token):
    for name, token in (("dora", "dora-secret"), ("emil", "emil-secret")):
        status, answer = await login(api, name, token)
        assert status == 200, answer
        assert (
            jwt.decode(answer["access_token"], options={"verify_signature": False})["sub"] == name
        )
        status, me = await api("GET", "auth/current-user/", headers=bearer(answer["access_token"]))
        assert (status, me["username"]) == (200, name)
    # One's token is not the other's; the server's own token means nothing to this provider.
    for name, token in (("dora", "emil-secret"), ("emil", "dora-secret"), ("dora", jupyter_token)):
        status, answer = await login(api, name, token)
        assert status == 401, (name, token, answer)
        assert answer["detail"].startswith("Bad credentials")
    # The e-mail form of the username is the same user.
    status, answer = await login(api, "emil@fractal-jupyter.localhost", "emil-secret")
    assert status == 200, answer


@pytest.mark.parametrize(
    "provider_config",
    [
        {
            "ServerApp": {"identity_provider_class": PasswordIdentityProvider},
            "PasswordIdentityProvider": {"hashed_password": passwd("the-password")},
        }
    ],
)
async def test_jupyters_own_provider_logs_in_the_server_user(api, jupyter_token):
    # Jupyter's provider knows no usernames: its token and password are default_username's.
    for password in (jupyter_token, "the-password"):
        status, answer = await login(api, SERVER_USER, password)
        assert status == 200, (password, answer)
        claims = jwt.decode(answer["access_token"], options={"verify_signature": False})
        assert claims["sub"] == SERVER_USER
    for username, password in (
        ("alice", jupyter_token),
        ("alice", "the-password"),
        (SERVER_USER, "the-passwordx"),
        (SERVER_USER, jupyter_token[:-1]),
    ):
        status, answer = await login(api, username, password)
        assert status == 401, (username, password, answer)
        assert answer["detail"].startswith("Bad credentials")


@pytest.mark.parametrize(
    "provider_config",
    [{"ServerApp": {"identity_provider_class": PasswordIdentityProvider, "token": ""}}],
)
async def test_a_server_without_authentication_issues_no_token(api):
    # Any password "works" here; a JWT would stay valid once authentication is turned on.
    status, answer = await login(api, SERVER_USER, "anything")
    assert status == 403
    assert "without any credential" in answer["detail"]


async def deactivate(api: Any, username: str) -> None:
    _, users = await api("GET", "auth/users/", user="admin")
    (user_id,) = [user["id"] for user in users if user["username"] == username]
    status, answer = await api(
        "PATCH", f"auth/users/{user_id}/", {"is_active": False}, user="admin"
    )
    assert (status, answer["is_active"]) == (200, False)


async def test_a_deactivated_user_gets_no_token_and_their_tokens_stop(api, jupyter_token):
    _, answer = await login(api, SERVER_USER, jupyter_token)
    headers = bearer(answer["access_token"])
    status, _ = await api("GET", "api/v2/project/", headers=headers)
    assert status == 200
    await deactivate(api, SERVER_USER)
    status, answer = await api("GET", "api/v2/project/", headers=headers)
    assert status == 403
    assert "deactivated" in answer["detail"]
    status, answer = await login(api, SERVER_USER, jupyter_token)
    assert status == 403, answer
    assert answer["detail"] == "User 'carla' has been deactivated by a Fractal administrator."


async def test_a_deactivation_through_another_server_stops_the_tokens(api, jupyter_token, state):
    """On a shared database, an admin may deactivate a user through another server: this
    server, which knows the user, must notice."""
    _, answer = await login(api, "alice", jupyter_token)
    headers = bearer(answer["access_token"])
    status, _ = await api("GET", "api/v2/project/", headers=headers)
    assert status == 200
    async with state.database.session(write=True) as session:
        await session.execute(
            update(UserRow).where(UserRow.username == "alice").values(is_active=False)
        )
    state.user_cache_seconds = 0.0
    status, answer = await api("GET", "api/v2/project/", headers=headers)
    assert status == 403
    assert "deactivated" in answer["detail"]
