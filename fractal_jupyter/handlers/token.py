"""`auth/token/login/` and `auth/token/logout/`: bearer tokens for REST clients."""

from __future__ import annotations

import hmac

from tornado import web

from ..schemas.token import BearerToken, LoginForm
from ..services.users import email_for
from ..tokens import HubUnavailable, hub_user_of
from .base import FractalHandler, operation

BAD_CREDENTIALS = (
    "Bad credentials: the password must be a Jupyter credential of that user (this server's "
    "token or password; under JupyterHub, an API token of that hub user)."
)


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
        username = await self._hub_login(form) if self.fractal.hub_api_url else self._login(form)
        return BearerToken(access_token=self.tokens.issue(username))

    def _login(self, form: LoginForm) -> str:
        """Without a hub the server's token (or password) belongs to `default_username`."""
        username = self.fractal.default_username
        if form.username not in (username, email_for(username)):
            raise web.HTTPError(401, BAD_CREDENTIALS)
        if not self._is_jupyter_credential(form.password):
            raise web.HTTPError(401, BAD_CREDENTIALS)
        return username

    def _is_jupyter_credential(self, password: str) -> bool:
        provider = self.identity_provider
        token = getattr(provider, "token", "") or ""
        if token and hmac.compare_digest(password.encode(), token.encode()):
            return True
        # PasswordIdentityProvider (the default) has a hashed password when one is set.
        hashed = getattr(provider, "hashed_password", "") or ""
        check = getattr(provider, "passwd_check", None)
        return bool(hashed) and check is not None and bool(check(password))

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


class TokenLogoutHandler(FractalHandler):
    @operation("Log out (tokens are stateless: nothing is revoked)", status=204, writes=False)
    async def post(self) -> None:
        return None
