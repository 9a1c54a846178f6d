"""The base handler and the `operation` decorator that every API method goes through.

`operation` declares a method's request and response models once; the same declaration
parses the request, serializes the answer and feeds the OpenAPI document.
"""

from __future__ import annotations

import functools
import hmac
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from jupyter_server import CallContext
from jupyter_server.auth import User
from jupyter_server.auth.decorator import allow_unauthenticated, authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession
from tornado import web

from ..errors import Forbidden, FractalError, validation_detail
from ..schemas.common import RenderedResponse
from ..services.access import require_server_owner
from ..services.users import CurrentUser
from ..state import FractalState
from ..tokens import InvalidToken, TokenSigner, looks_like_jwt

MAX_ID = 2**63 - 1
ADMIN_ONLY = "Forbidden: only Fractal administrators (FractalJupyter.admin_users) may do this."
HandlerMethod = Callable[..., Awaitable[Any]]
TornadoMethod = Callable[..., Awaitable[None]]


@dataclass(frozen=True)
class Operation:
    """What one HTTP method of a route takes and gives."""

    summary: str
    body: type[BaseModel] | None = None
    body_required: bool = True
    query: type[BaseModel] | None = None
    response: Any = None
    status: int = 200
    public: bool = False
    writes: bool | None = None
    # A form-encoded body (the token login), instead of a JSON one.
    form: type[BaseModel] | None = None
    # Only admins (`FractalJupyter.admin_users`): anyone else gets 403.
    admin: bool = False


class RequestError(Exception):
    """A malformed request: answered with 422 and FastAPI-shaped `detail`."""

    def __init__(self, detail: list[dict[str, Any]]) -> None:
        super().__init__(detail)
        self.detail = detail


class FractalHandler(ExtensionHandlerMixin, APIHandler):
    auth_resource = "fractal"
    db_session: AsyncSession
    user: CurrentUser
    # Set by a method that answers with something other than JSON (a zip archive).
    raw_payload: bytes | None = None
    # The user named by a valid bearer JWT of ours (tokens.py), else None.
    bearer_username: str | None = None

    @property
    def fractal(self) -> FractalState:
        state: FractalState = self.settings["fractal"]
        return state

    @property
    def tokens(self) -> TokenSigner:
        signer = self.fractal.tokens
        if signer is None:
            raise web.HTTPError(503, "Bearer tokens are not configured on this server")
        return signer

    async def prepare(self) -> None:  # type: ignore[override]
        """A valid `Authorization: Bearer <JWT of ours>` makes its `sub` the caller.

        Such a request is token-authenticated, as Jupyter's own token is: no XSRF cookie, no
        origin check. Anything else goes through Jupyter's identity provider; a JWT-shaped
        bearer that is not ours (nor Jupyter's own token) is refused with a 401 that says why.
        """
        match = re.fullmatch(
            r"bearer\s+(\S+)\s*", self.request.headers.get("Authorization", ""), re.I
        )
        token = match.group(1) if match else ""
        if not looks_like_jwt(token) or self._is_jupyter_token(token):
            await super().prepare()
            return
        try:
            username = self.tokens.username(token)
        except InvalidToken as error:
            raise web.HTTPError(401, str(error)) from None
        CallContext.set(CallContext.JUPYTER_HANDLER, self)
        if not self.check_host():
            raise web.HTTPError(403)
        self.bearer_username = username
        self._token_authenticated = True
        self.current_user = self._jupyter_current_user = User(username=username)
        self.set_cors_headers()

    def _is_jupyter_token(self, token: str) -> bool:
        jupyter_token = getattr(self.identity_provider, "token", "") or ""
        return bool(jupyter_token) and hmac.compare_digest(token.encode(), jupyter_token.encode())

    def check_xsrf_cookie(self) -> None:
        if self.bearer_username is None:
            super().check_xsrf_cookie()

    def get_login_url(self) -> str:
        # API clients get a JSON 401, never a redirect to a login page.
        raise web.HTTPError(401, "Unauthorized")

    def require_server_owner(self, action: str) -> None:
        """Under JupyterHub, 403 unless the caller owns this server (see `server_owner`)."""
        require_server_owner(self.user, self.fractal.server_owner, action)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        reason = self._reason
        exc_info = kwargs.get("exc_info")
        if exc_info is not None and isinstance(exc_info[1], web.HTTPError):
            reason = exc_info[1].log_message or reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"detail": reason}))

    def caller_username(self) -> str:
        """Who is calling: the Jupyter user, or `default_username` when Jupyter cannot tell.

        Jupyter's own identity providers (plain token or password) make up a random anonymous
        user per request; JupyterHub's and custom providers return real usernames.
        """
        if self.bearer_username is not None:
            return self.bearer_username
        return jupyter_username(
            self.identity_provider, self.current_user, self.fractal.default_username
        )

    def send_json(self, status: int, payload: bytes | None) -> None:
        self.set_status(status)
        if payload is None:
            self.finish()
            return
        self.set_header("Content-Type", "application/json")
        self.finish(payload)

    def parse_body(self, model: type[BaseModel], required: bool) -> BaseModel | None:
        raw = self.request.body
        if not raw or not raw.strip():
            if not required:
                return None
            raise RequestError([{"loc": ["body"], "msg": "Field required", "type": "missing"}])
        try:
            return model.model_validate_json(raw)
        except ValidationError as error:
            raise RequestError(validation_detail(error, "body")) from None

    def parse_form(self, model: type[BaseModel]) -> BaseModel:
        values = {
            key: self.decode_argument(items[-1], name=key)
            for key, items in self.request.body_arguments.items()
        }
        try:
            return model.model_validate(values)
        except ValidationError as error:
            raise RequestError(validation_detail(error, "body")) from None

    def parse_query(self, model: type[BaseModel]) -> BaseModel:
        values = {
            key: self.decode_argument(items[-1], name=key)
            for key, items in self.request.query_arguments.items()
        }
        try:
            return model.model_validate(values)
        except ValidationError as error:
            raise RequestError(validation_detail(error, "query")) from None


def jupyter_username(provider: Any, user: User, default_username: str) -> str:
    """The username of a user the identity provider authenticated.

    Jupyter's own providers (plain token or password) make up a random anonymous user per
    request: their user is `default_username`, the one the server runs for.
    """
    if type(provider).__module__.startswith("jupyter_server."):
        return default_username
    username: str = user.username
    return username


# Python's `int()` also reads "+1", " 1", "1_0" and non-ASCII (e.g. full-width) digits: one
# object must have one path, so only the plain decimal form is an id (19 digits hold any
# 64-bit one).
_PATH_ID = re.compile(r"-?[0-9]{1,19}")


def _parse_path_ids(path_arguments: dict[str, str]) -> dict[str, int]:
    ids: dict[str, int] = {}
    problems = []
    for name, text in path_arguments.items():
        value = int(text) if _PATH_ID.fullmatch(text) else None
        if value is None or not -MAX_ID <= value <= MAX_ID:
            problems.append(
                {
                    "loc": ["path", name],
                    "msg": (
                        "Input should be an integer of at most 64 bits in ASCII digits "
                        f"(optionally after '-'), not {text!r}"
                    ),
                    "type": "int_parsing",
                }
            )
        else:
            ids[name] = value
    if problems:
        raise RequestError(problems)
    return ids


def operation(
    summary: str,
    *,
    body: type[BaseModel] | None = None,
    body_required: bool = True,
    query: type[BaseModel] | None = None,
    response: Any = None,
    status: int = 200,
    public: bool = False,
    writes: bool | None = None,
    form: type[BaseModel] | None = None,
    admin: bool = False,
) -> Callable[[HandlerMethod], TornadoMethod]:
    """Wrap a handler method: auth, parsing, a DB session, the call, errors, serialization.

    The method receives the path ids as ints, plus `body` and `query` when declared, with
    `self.db_session` and `self.user` set; it returns what `response` describes. A method
    runs in a write transaction unless it is a GET or declares `writes=False` (a POST that
    only reads, like the image query, must not queue behind SQLite writers).
    """
    spec = Operation(
        summary, body, body_required, query, response, status, public, writes, form, admin
    )
    adapter = TypeAdapter(response) if response is not None else None

    def decorate(method: HandlerMethod) -> TornadoMethod:
        @functools.wraps(method)
        async def wrapper(self: FractalHandler, **path_arguments: str) -> None:
            try:
                kwargs: dict[str, Any] = _parse_path_ids(path_arguments)
                if body is not None:
                    kwargs["body"] = self.parse_body(body, body_required)
                if form is not None:
                    kwargs["form"] = self.parse_form(form)
                if query is not None:
                    kwargs["query"] = self.parse_query(query)
            except RequestError as error:
                self.send_json(422, json.dumps({"detail": error.detail}).encode())
                return
            if public:
                result = await method(self, **kwargs)
                self.send_json(status, adapter.dump_json(result) if adapter else None)
                return
            state = self.fractal
            try:
                await state.ensure_ready()
                self.user = await state.user(self.caller_username())
                if admin and not self.user.is_superuser:
                    raise Forbidden(ADMIN_ONLY)
                write = self.request.method not in ("GET", "HEAD") if writes is None else writes
                async with state.database.session(write=write) as session:
                    self.db_session = session
                    result = await method(self, **kwargs)
                    if isinstance(result, RenderedResponse):
                        payload = result.to_json()
                    elif adapter is not None:
                        payload = adapter.dump_json(
                            adapter.validate_python(result, from_attributes=True)
                        )
                    else:
                        payload = None
            except FractalError as error:
                self.send_json(error.status_code, json.dumps({"detail": error.detail}).encode())
                return
            except IntegrityError as error:
                state.log.warning("Refused a conflicting write: %s", error.orig)
                detail = "The request conflicts with the current state; nothing was changed."
                self.send_json(422, json.dumps({"detail": detail}).encode())
                return
            except (OperationalError, OSError) as error:
                state.log.error("Database unavailable: %s", error)
                detail = "The database is busy or unavailable; nothing was changed, try again."
                self.send_json(503, json.dumps({"detail": detail}).encode())
                return
            if self.raw_payload is not None:
                self.set_status(status)
                content_type = self._headers.get("Content-Type", "application/octet-stream")
                self.finish(self.raw_payload, set_content_type=content_type)
                return
            self.send_json(status, payload)

        wrapper.fractal_operation = spec  # type: ignore[attr-defined]
        if public:
            return allow_unauthenticated(wrapper)
        return cast(TornadoMethod, web.authenticated(_authorized(wrapper)))

    return decorate


def _authorized(method: TornadoMethod) -> TornadoMethod:
    """Jupyter's `authorized`, except for bearer-JWT callers under JupyterHub.

    JupyterHub's authorizer only re-checks the hub access scopes of the request, which a
    JWT request has not got; the login that issued the JWT checked them.
    """
    checked = authorized(method)

    @functools.wraps(method)
    async def wrapper(self: FractalHandler, **path_arguments: str) -> None:
        authorizer_module = type(self.authorizer).__module__
        if self.bearer_username is not None and authorizer_module.startswith("jupyterhub."):
            await method(self, **path_arguments)
            return
        await checked(self, **path_arguments)

    return wrapper


def operations_of(handler: type[web.RequestHandler]) -> dict[str, Operation]:
    """The declared operations of a handler class, by lower-case HTTP method."""
    found = {}
    for method in ("get", "post", "patch", "put", "delete"):
        function = getattr(handler, method, None)
        spec = getattr(function, "fractal_operation", None)
        if spec is not None:
            found[method] = spec
    return found
