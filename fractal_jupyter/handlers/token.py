"""`auth/token/login/` and `auth/token/logout/`: bearer tokens for REST clients."""

from __future__ import annotations

import copy
import inspect
from typing import Any

from jupyter_server.auth import IdentityProvider, User
from jupyter_server.base.handlers import JupyterHandler
from tornado import httputil, web

from ..errors import Forbidden
from ..schemas.token import BearerToken, LoginForm
from ..services.users import email_for
from ..tokens import HubUnavailable, hub_user_of
from .base import FractalHandler, jupyter_username, operation

BAD_CREDENTIALS = (
    "Bad credentials: the password must be a Jupyter credential of that user (a token or "
    "password that this server's identity provider accepts for them; under JupyterHub, an API "
    "token of that hub user)."
)
NO_AUTHENTICATION = (
    "This server's identity provider lets requests in without any credential, so a password "
    "proves nothing here: no bearer token is issued. Call the API without one."
)


class _NoConnection:
    """The connection of a probe request: nothing is ever sent on it."""

    def set_close_callback(self, callback: Any) -> None:
        return None


class _CredentialProbe(JupyterHandler):
    """A throw-away handler the identity provider looks at in place of the login request.

    Cookies or headers the provider sets on it are never sent.
    """


class TokenLoginHandler(FractalHandler):
    def check_xsrf_cookie(self) -> None:
        # The credential is the form itself: a cross-site page cannot forge it.
        return

    @operation(
        "Exchange a Jupyter credential for a bearer token (a JWT)",
        form=LoginForm,
        response=BearerToken,
        public=True,
    )
    async def post(self, form: LoginForm) -> BearerToken:
        if self.fractal.hub_api_url:
            username = await self._hub_login(form)
        else:
            username = await self._login(form)
        await self._refuse_deactivated(username)
        return BearerToken(access_token=self.tokens.issue(username))

    async def _login(self, form: LoginForm) -> str:
        """Whoever the server's identity provider says the password identifies.

        The provider is asked, not imitated: first as if the password came as
        `Authorization: token <password>` (what it accepts from API clients), then, when it has
        a login form, as the password of that form. Other credentials of the login request
        (cookies, its own Authorization header, `?token=`) are left out, and a provider that
        lets a request without any credential in is refused: a JWT must not outlive the
        configuration under which the password alone proved who the caller is.
        """
        provider = self.identity_provider
        found = None
        # A header value ends at a line break: "<token>\n<anything>" must not pass as <token>.
        if form.password.isprintable():
            probe = self._probe(authorization=f"token {form.password}")
            found = await self._user_of_probe(probe)
        if found is None and _checks_passwords(provider):
            found = provider.process_login_form(self._probe(password=form.password))
        if found is None:
            raise web.HTTPError(401, BAD_CREDENTIALS)
        if await self._user_of_probe(self._probe()) is not None:
            raise web.HTTPError(403, NO_AUTHENTICATION)
        username = jupyter_username(provider, found, self.fractal.default_username)
        if form.username not in (username, email_for(username)):
            raise web.HTTPError(401, BAD_CREDENTIALS)
        return username

    def _probe(self, *, authorization: str = "", password: str = "") -> _CredentialProbe:
        """The login request with `authorization` (or a `password` form field) as its only
        credential."""
        request = copy.copy(self.request)
        headers = httputil.HTTPHeaders()
        for name, value in self.request.headers.get_all():
            if name.lower() not in ("authorization", "cookie"):
                headers.add(name, value)
        if authorization:
            headers["Authorization"] = authorization
        request.headers = headers
        request.__dict__.pop("_cookies", None)
        request.query = ""
        request.uri = request.path
        request.query_arguments = {}
        request.body_arguments = {"password": [password.encode()]} if password else {}
        request.arguments = dict(request.body_arguments)
        request.body = b""
        request.files = {}
        request.connection = _NoConnection()  # type: ignore[assignment]
        return _CredentialProbe(self.application, request)

    async def _user_of_probe(self, probe: _CredentialProbe) -> User | None:
        found = self.identity_provider.get_user(probe)
        if inspect.isawaitable(found):
            found = await found
        return found

    async def _refuse_deactivated(self, username: str) -> None:
        """A user an admin deactivated gets no token (their existing ones stop working too)."""
        state = self.fractal
        await state.ensure_ready()
        try:
            await state.user(username, fresh=True)
        except Forbidden as error:
            raise web.HTTPError(403, str(error.detail)) from None

    async def _hub_login(self, form: LoginForm) -> str:
        """The hub must know the password as an API token of that user, with access here."""
        state = self.fractal
        try:
            model = await hub_user_of(state.hub_api_url, form.password)
        except HubUnavailable as error:
            raise web.HTTPError(503, f"JupyterHub could not check the token: {error}") from None
        name = model.get("name") if model else None
        if not isinstance(name, str) or form.username not in (name, email_for(name)):
            raise web.HTTPError(401, BAD_CREDENTIALS)
        assert model is not None
        if not state.hub_access_scopes.intersection(model.get("scopes") or []):
            raise web.HTTPError(
                403,
                f"The JupyterHub user {name!r} has no access to this server "
                f"({state.server_owner}'s), so gets no token for it.",
            )
        return name


def _checks_passwords(provider: IdentityProvider) -> bool:
    """Whether the provider's login form accepts more than its token (a password).

    The base class's form accepts the token only (which `get_user` was asked about already),
    and fails with a provider that has no `user_for_token`.
    """
    own_form = type(provider).process_login_form is not IdentityProvider.process_login_form
    return own_form and bool(provider.login_available)


class TokenLogoutHandler(FractalHandler):
    @operation("Log out (tokens are stateless: nothing is revoked)", status=204, writes=False)
    async def post(self) -> None:
        return None
