"""The base handler and the `operation` decorator that every API method goes through.

`operation` declares a method's request and response models once; the same declaration
parses the request, serializes the answer and feeds the OpenAPI document.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hmac
import json
import re
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

from jupyter_server import CallContext
from jupyter_server.auth import User
from jupyter_server.auth.decorator import allow_unauthenticated, authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from pydantic import BaseModel, RootModel, TypeAdapter, ValidationError
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession
from tornado import httputil, web
from tornado.iostream import StreamClosedError

from ..client.transport import UNAVAILABLE_HEADER
from ..errors import Forbidden, FractalError, Unavailable, validation_detail
from ..schemas.common import MAX_INTEGER, TOO_BIG_INTEGER, RenderedResponse
from ..services.access import (
    get_dataset_for_member,
    get_project_for_member,
    require_server_owner,
)
from ..services.users import CurrentUser
from ..state import FractalState
from ..tokens import InvalidToken, TokenSigner, looks_like_jwt
from .limits import (
    DEFAULT_MAX_BODY_BYTES,
    MAX_URL_BYTES,
)

MAX_ID = MAX_INTEGER
# A body above this size is parsed in a worker thread, so that other requests are answered
# meanwhile, and under a project only once the caller is known to be a member.
LARGE_BODY_BYTES = 256 * 1024
# The shortest run of digits that may be an integer beyond 64 bits: a body without one (the
# usual case) is not looked at again for such integers.
_LONG_DIGIT_RUN = re.compile(rb"[0-9]{19}")
# Python's and pydantic's JSON parsers read these tokens, which JSON does not have.
_NON_FINITE_TOKEN = re.compile(rb"NaN|Infinity")
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
    # A JSON array body is read as a list of these instead of as `body` (a route that newer
    # fractal-server versions feed a list).
    list_body: type[BaseModel] | None = None
    # The operation that serves a form body of the same method (`by_content_type`).
    form_alternative: Operation | None = None


class RequestError(Exception):
    """A malformed request: answered with 422 and FastAPI-shaped `detail`."""

    def __init__(self, detail: list[dict[str, Any]]) -> None:
        super().__init__(detail)
        self.detail = detail


# A streamed answer goes out in chunks of this size; a few wait while the client is slow.
STREAM_CHUNK_BYTES = 1024 * 1024
STREAM_QUEUE_CHUNKS = 4


class _StreamStopped(Exception):
    """The streamed answer's reader is gone (the client left, or the loop stopped)."""


class ChunkPipe:
    """A write-only, unseekable file for a worker thread whose bytes the event loop sends.

    `write` blocks the thread while `STREAM_QUEUE_CHUNKS` chunks wait, so memory stays a few
    chunks however slow the client; it raises `_StreamStopped` once the reader is gone.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.chunks: asyncio.Queue[bytes | None] = asyncio.Queue(STREAM_QUEUE_CHUNKS)
        self.stopped = threading.Event()
        self._buffer = bytearray()

    def write(self, data: bytes, /) -> int:
        self._buffer += data
        if len(self._buffer) >= STREAM_CHUNK_BYTES:
            self._send(bytes(self._buffer))
            self._buffer.clear()
        return len(data)

    def flush(self) -> None:
        """Bytes are sent by the chunk (zipfile calls this at its end)."""

    def close(self) -> None:
        """The end is sent by `run`."""

    def run(self, produce: Callable[[ChunkPipe], None]) -> None:
        """In the worker thread: `produce` writes the answer; then the end is sent."""
        try:
            produce(self)
            if self._buffer:
                self._send(bytes(self._buffer))
        finally:
            with contextlib.suppress(_StreamStopped):
                self._send(None)

    def _send(self, chunk: bytes | None) -> None:
        future = asyncio.run_coroutine_threadsafe(self.chunks.put(chunk), self.loop)
        while True:
            if self.stopped.is_set() or self.loop.is_closed():
                future.cancel()
                raise _StreamStopped
            try:
                future.result(timeout=1.0)
                return
            except TimeoutError:
                continue


class PayloadTooLarge(FractalError):
    status_code = 413


def _too_big_integers(value: Any, loc: list[str | int]) -> Iterator[list[str | int]]:
    """Where decoded JSON (or a dumped model) holds an integer beyond 64 bits."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not -MAX_INTEGER <= value <= MAX_INTEGER:
            yield loc
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _too_big_integers(item, [*loc, key])
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _too_big_integers(item, [*loc, index])


def refuse_too_big_integers(value: Any, location: str) -> None:
    """422 for every integer beyond 64 bits: the database would refuse it (a 500) or keep
    a rounded float that no filter finds again."""
    problems = [
        {"loc": loc, "msg": TOO_BIG_INTEGER, "type": "int_parsing"}
        for loc in _too_big_integers(value, [location])
    ]
    if problems:
        raise RequestError(problems)


def is_form_request(request: httputil.HTTPServerRequest) -> bool:
    """A multipart form, or a url-encoded one that is not JSON (see `is_json_content_type`:
    a url-encoded body that begins with `{` or `[` is JSON sent by curl -d)."""
    media_type = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if media_type == "multipart/form-data":
        return True
    if media_type != "application/x-www-form-urlencoded":
        return False
    return not request.body.lstrip().startswith((b"{", b"["))


def is_json_content_type(header: str | None) -> bool:
    """Whether a body sent with this Content-Type is read as JSON.

    As FastAPI: none, application/json and application/*+json. Also
    application/x-www-form-urlencoded, which is what curl -d and Tornado's client send when
    they are not told a type (fractal-server answers such a body 422).
    """
    if not header:
        return True
    media_type = header.split(";", 1)[0].strip().lower()
    if media_type in ("application/json", "application/x-www-form-urlencoded"):
        return True
    return media_type.startswith("application/") and media_type.endswith("+json")


@web.stream_request_body
class FractalHandler(ExtensionHandlerMixin, APIHandler):
    """The base of every Fractal route.

    Bodies are streamed in (`data_received`), so that one whose Content-Length is above the
    route's limit is refused (413) before any of it is read; `request.body` is set when it is
    complete (`collect_body`).
    """

    auth_resource = "fractal"
    db_session: AsyncSession
    user: CurrentUser
    # Set by a method that answers with something other than JSON (a zip archive): the bytes,
    # or what writes them in a worker thread (they are streamed as they come).
    raw_payload: bytes | None = None
    raw_stream: Callable[[ChunkPipe], None] | None = None
    # The user named by a valid bearer JWT of ours (tokens.py), else None.
    bearer_username: str | None = None
    # Set by a method with work for after its transaction committed, before the answer.
    after_commit: Callable[[], Awaitable[None]] | None = None
    # The FractalJupyter trait that limits this route's request bodies, and its default.
    body_limit: tuple[str, int] = ("max_body_bytes", DEFAULT_MAX_BODY_BYTES)
    _body_parts: list[bytes] | None = None
    # Why the body could not be read as the form its Content-Type announces.
    _form_error: str | None = None

    def compute_etag(self) -> str | None:
        """No ETag (fractal-server sends none): Tornado would hash every GET answer, a few
        milliseconds for the megabytes of a task-group listing."""
        return None

    def data_received(self, chunk: bytes) -> None:
        if self._body_parts is None:
            self._body_parts = []
        self._body_parts.append(chunk)

    def collect_body(self) -> None:
        """`request.body` (and a form's arguments) from the streamed parts, once."""
        if self._body_parts is None:
            return
        self.request.body = b"".join(self._body_parts)
        self._body_parts = None
        try:
            httputil.parse_body_arguments(
                self.request.headers.get("Content-Type", ""),
                self.request.body,
                self.request.body_arguments,
                self.request.files,
                self.request.headers,
            )
        except httputil.HTTPInputError as error:
            # Only a route that reads a form says so (`parse_form`); a JSON route refuses
            # the content type anyway.
            self._form_error = str(error)

    def body_size_limit(self) -> tuple[str, int]:
        """The name of this route's body limit and its value."""
        name, default = self.body_limit
        limit: int = self.fractal.config.get(name, default)
        return name, limit

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
        """Admit the request (`_admit`); a refusal waits for the end of its body.

        Tornado closes the keep-alive connection of a streamed request answered before its
        body was read, and a client that reuses that connection meets a reset. So a refusal
        is sent once the body (bounded by the route's limit, checked first) is in; only a
        body too large (413) or a URL too long (414) is refused at once, with the connection
        closed (`write_error` says so to the client).
        """
        try:
            await self._admit()
        except web.HTTPError as error:
            if error.status_code in (413, 414) or self._prepared_future is None:
                raise
            self._prepared_future.set_result(None)
            with contextlib.suppress(StreamClosedError):
                await self.request._body_future
            raise

    async def _admit(self) -> None:
        """A valid `Authorization: Bearer <JWT of ours>` makes its `sub` the caller.

        Such a request is token-authenticated, as Jupyter's own token is: no XSRF cookie, no
        origin check. Anything else goes through Jupyter's identity provider; a JWT-shaped
        bearer that is not ours (nor Jupyter's own token) is refused with a 401 that says why.
        """
        if len(self.request.uri or "") > MAX_URL_BYTES:
            raise web.HTTPError(
                414, f"The URL has {len(self.request.uri or '')} bytes; at most {MAX_URL_BYTES}."
            )
        name, limit = self.body_size_limit()
        declared = self.request.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise web.HTTPError(413, _too_large(int(declared), name, limit))
        # A body without a Content-Length (chunked) is cut off by Tornado past the limit.
        self.request.connection.set_max_body_size(limit)  # type: ignore[union-attr]
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
        body_future = getattr(self.request, "_body_future", None)
        if body_future is not None and not body_future.done():
            # Answered before its body was read: Tornado closes the connection after this.
            self.set_header("Connection", "close")
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

    def send_error_json(self, error: FractalError) -> None:
        if isinstance(error, Unavailable) and error.lasting:
            self.set_header(UNAVAILABLE_HEADER, error.lasting)
        self.send_json(error.status_code, json.dumps({"detail": error.detail}).encode())

    def send_json(self, status: int, payload: bytes | None) -> None:
        self.set_status(status)
        if payload is None:
            self.finish()
            return
        self.set_header("Content-Type", "application/json")
        self.finish(payload)

    async def send_stream(self, produce: Callable[[ChunkPipe], None]) -> None:
        """Answer with what `produce` writes in a worker thread, a chunk at a time."""
        loop = asyncio.get_running_loop()
        pipe = ChunkPipe(loop)
        worker = loop.run_in_executor(None, pipe.run, produce)
        try:
            while (chunk := await pipe.chunks.get()) is not None:
                self.write(chunk)
                await self.flush()
        except StreamClosedError:
            return  # the client left; the worker stops at its next chunk
        finally:
            pipe.stopped.set()
            with contextlib.suppress(_StreamStopped):
                await worker
        self.finish()

    def check_body_size(self) -> None:
        """413 for a body above this route's limit (`prepare` refuses one that says so in its
        Content-Length before reading it; this catches the others)."""
        name, limit = self.body_size_limit()
        size = len(self.request.body)
        if size > limit:
            raise PayloadTooLarge(_too_large(size, name, limit))

    def check_json_content_type(self) -> None:
        """422 for a JSON route's body sent as another type (text/plain, a multipart form)."""
        content_type = self.request.headers.get("Content-Type")
        if self.request.body and not is_json_content_type(content_type):
            raise RequestError(
                [
                    {
                        "loc": ["body"],
                        "msg": "The body must be JSON, sent with Content-Type: "
                        f"application/json (not {content_type})",
                        "type": "content_type",
                    }
                ]
            )

    async def check_membership(self, path_ids: dict[str, int]) -> None:
        """403/404 unless the caller is a member of the project (and dataset) of the path."""
        project_id = path_ids.get("project_id")
        if project_id is None:
            return
        state = self.fractal
        await state.ensure_ready()
        user = await state.user(self.caller_username())
        async with state.database.session(write=False) as session:
            dataset_id = path_ids.get("dataset_id")
            if dataset_id is None:
                await get_project_for_member(session, project_id, user)
            else:
                await get_dataset_for_member(session, project_id, dataset_id, user)

    async def parse_request(self, spec: Operation, path_ids: dict[str, int]) -> dict[str, Any]:
        """The method's arguments: path ids, body, form and query, each checked.

        A body is first checked for size; a large one is then parsed in a worker thread, after
        the membership check of a project route (so that a stranger's body is never parsed).
        """
        arguments: dict[str, Any] = dict(path_ids)
        if spec.body is not None or spec.form is not None:
            self.check_body_size()
        if spec.body is not None:
            self.check_json_content_type()
            if len(self.request.body) > LARGE_BODY_BYTES and not spec.public:
                await self.check_membership(path_ids)
            if spec.list_body is not None and self.request.body.lstrip().startswith(b"["):
                arguments["body"] = await self.parse_body(
                    _list_model(spec.list_body), spec.body_required
                )
            else:
                arguments["body"] = await self.parse_body(spec.body, spec.body_required)
        if spec.form is not None:
            arguments["form"] = self.parse_form(spec.form)
        if spec.query is not None:
            arguments["query"] = self.parse_query(spec.query)
        return arguments

    async def parse_body(self, model: type[BaseModel], required: bool) -> BaseModel | None:
        raw = self.request.body
        if not raw or not raw.strip():
            if not required:
                return None
            raise RequestError([{"loc": ["body"], "msg": "Field required", "type": "missing"}])
        if len(raw) > LARGE_BODY_BYTES:
            return await asyncio.to_thread(_parse_json_body, model, raw)
        return _parse_json_body(model, raw)

    def parse_form(self, model: type[BaseModel]) -> BaseModel:
        if self._form_error is not None:
            raise RequestError(
                [
                    {
                        "loc": ["body"],
                        "msg": f"Not a readable form: {self._form_error}",
                        "type": "form",
                    }
                ]
            )
        return _validated(model, self.request.body_arguments, "body", self.decode_argument)

    def parse_query(self, model: type[BaseModel]) -> BaseModel:
        return _validated(model, self.request.query_arguments, "query", self.decode_argument)


@functools.cache
def _list_model(item: type[BaseModel]) -> type[BaseModel]:
    """A root model of a list of `item` (its errors are located at `body.<index>...`)."""
    return RootModel[list[item]]  # type: ignore[valid-type]


def _too_large(size: int, name: str, limit: int) -> str:
    return (
        f"The request body has {size} bytes; this route takes at most {limit} "
        f"(FractalJupyter.{name})."
    )


def _parse_json_body(model: type[BaseModel], raw: bytes) -> BaseModel:
    try:
        parsed = model.model_validate_json(raw)
    except ValidationError as error:
        raise RequestError(validation_detail(error, "body")) from None
    has_long_digits = _LONG_DIGIT_RUN.search(raw) is not None
    if has_long_digits or _NON_FINITE_TOKEN.search(raw):
        # Only then is the body decoded a second time (the tokens may also be inside strings).
        decoded = json.loads(raw, parse_constant=_refuse_non_finite_token)
        if has_long_digits:
            refuse_too_big_integers(decoded, "body")
    return parsed


def _refuse_non_finite_token(token: str) -> Any:
    """The whole body is refused, even where the model would ignore the value (an unknown key)."""
    raise RequestError(
        [
            {
                "loc": ["body"],
                "msg": f"Invalid JSON: {token} is not a JSON number (numbers must be finite)",
                "type": "json_invalid",
            }
        ]
    )


def _validated(
    model: type[BaseModel],
    arguments: dict[str, list[bytes]],
    location: str,
    decode: Callable[..., str],
) -> BaseModel:
    """A query string or form as `model` (the last of repeated keys wins)."""
    values = {key: decode(items[-1], name=key) for key, items in arguments.items()}
    try:
        parsed = model.model_validate(values)
    except ValidationError as error:
        raise RequestError(validation_detail(error, location)) from None
    refuse_too_big_integers(dict(parsed), location)
    return parsed


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
    list_body: type[BaseModel] | None = None,
) -> Callable[[HandlerMethod], TornadoMethod]:
    """Wrap a handler method: auth, parsing, a DB session, the call, errors, serialization.

    The method receives the path ids as ints, plus `body` and `query` when declared, with
    `self.db_session` and `self.user` set; it returns what `response` describes. A method
    runs in a write transaction unless it is a GET or declares `writes=False` (a POST that
    only reads, like the image query, must not queue behind SQLite writers).
    """
    spec = Operation(
        summary,
        body,
        body_required,
        query,
        response,
        status,
        public,
        writes,
        form,
        admin,
        list_body,
    )
    adapter = TypeAdapter(response) if response is not None else None

    def decorate(method: HandlerMethod) -> TornadoMethod:
        @functools.wraps(method)
        async def wrapper(self: FractalHandler, **path_arguments: str) -> None:
            self.collect_body()
            try:
                kwargs = await self.parse_request(spec, _parse_path_ids(path_arguments))
            except RequestError as error:
                self.send_json(422, json.dumps({"detail": error.detail}).encode())
                return
            except FractalError as error:
                self.send_error_json(error)
                return
            if public:
                try:
                    # No database for these, unless it is known not to fit this server.
                    await self.fractal.refuse_if_schema_mismatch()
                except Unavailable as error:
                    self.send_error_json(error)
                    return
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
                self.send_error_json(error)
                return
            except IntegrityError as error:
                # Also what an older server's insert meets in a newer schema (a new column
                # it does not fill): look at the schema again at the next request.
                state.schema_may_have_changed()
                state.log.warning("Refused a conflicting write: %s", error.orig)
                detail = "The request conflicts with the current state; nothing was changed."
                self.send_json(422, json.dumps({"detail": detail}).encode())
                return
            except (OperationalError, OSError, PoolTimeout) as error:
                # OSError: asyncpg's statement timeout (TimeoutError) too; PoolTimeout: every
                # connection of the pool (db_pool_size + db_max_overflow) was busy.
                # SQLite says "no such column" with an OperationalError too.
                state.schema_may_have_changed()
                state.log.error("Database unavailable: %s", error)
                detail = "The database is busy or unavailable; nothing was changed, try again."
                self.send_json(503, json.dumps({"detail": detail}).encode())
                return
            except DBAPIError as error:
                if not _is_out_of_range(error):
                    # An undefined table or column: perhaps a newer server migrated the
                    # database under this one; the next request finds out.
                    state.schema_may_have_changed()
                    raise
                # PostgreSQL's id columns are 32-bit: a larger id names no object there.
                reason = str(error.orig).strip().splitlines()[0]
                detail = f"A value of the request is out of the database's range: {reason}"
                self.send_json(422, json.dumps({"detail": detail}).encode())
                return
            if self.after_commit is not None:
                await self.after_commit()
            if self.raw_stream is not None:
                self.set_status(status)
                await self.send_stream(self.raw_stream)
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


def by_content_type(json_method: TornadoMethod, form_method: TornadoMethod) -> TornadoMethod:
    """One HTTP method served by two operations: a form body (`is_form_request`) goes to
    `form_method`, anything else to `json_method`. Both are documented (the JSON one's
    `form_alternative`)."""

    # Authenticated before the body is parsed (and marked so for Jupyter's handler check);
    # the chosen operation authorizes as it always does.
    async def dispatch(self: FractalHandler, **path_arguments: str) -> None:
        self.collect_body()
        chosen = form_method if is_form_request(self.request) else json_method
        await chosen(self, **path_arguments)

    authenticated = cast(TornadoMethod, web.authenticated(dispatch))
    json_spec: Operation = json_method.fractal_operation  # type: ignore[attr-defined]
    form_spec: Operation = form_method.fractal_operation  # type: ignore[attr-defined]
    authenticated.fractal_operation = dataclasses.replace(  # type: ignore[attr-defined]
        json_spec, form_alternative=form_spec
    )
    return authenticated


def _is_out_of_range(error: DBAPIError) -> bool:
    """A value the database cannot take (a number beyond its column's range), not a bug:
    SQLSTATE class 22, "data exception", said by the server or by the driver encoding it."""
    if isinstance(error, DataError):
        return True
    for reported in (error.orig, getattr(error.orig, "__cause__", None)):
        if str(getattr(reported, "sqlstate", "") or "").startswith("22"):
            return True
    return False


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
