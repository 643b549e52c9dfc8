"""Authenticating and posting Event API requests: v2 keys, or v1 OAuth tokens.

v2 (the default) sends `Authorization: Basic base64(rpub:rsec)` with every request. v1 fetches a
bearer token with the client-credentials grant (`POST {base}/auth/oauth2/token`, Basic
app_id:app_secret), keeps it, renews it a little before it expires (5 minutes, or a tenth of its
life when that is shorter) and once more after a 401, one refresh at a time however many sends
wait for it. v1 requests also carry an `Idempotency-Key` derived from their events, so a request
sent again reuses it and the upstream answers 409 when it has it already.

Errors while getting a token:

    EventApiAuthError            base; never carries a secret
     ├── CredentialsRejected     the token endpoint refused the app id or secret (400, 401, 403):
     │                           pause delivery until an operator fixes them
     └── TokenUnavailable        no token for now (network error, 429, 5xx, an unreadable answer):
                                 retry later, like a 5xx from the events endpoint
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol

import httpx

from edge.jsontext import encode
from edge.settings import Settings, SettingsError
from edge.upstreams.base import UpstreamRequest
from edge.upstreams.event_api.contract import API_VERSION

TOKEN_PATH: Final = "/auth/oauth2/token"
DEFAULT_TOKEN_LIFE: Final = 3600.0  # seconds, as the reference documents expires_in
RENEW_MARGIN: Final = 300.0  # seconds before expiry; at most a tenth of the token's life
IDEMPOTENCY_NAMESPACE: Final = uuid.UUID("8a3e2c4d-6b1f-4c7e-b2a9-0d5e7f9a1c36")
COMMON_HEADERS: Final[Mapping[str, str]] = {
    "Content-Type": "application/json",
    "Charset": "utf-8",
    # Always sent: an empty version means "latest", which may change under us.
    "Rokt-Version": API_VERSION,
}


class EventApiAuthError(Exception):
    """A token could not be had; the message names the status or error, never a secret."""


class CredentialsRejected(EventApiAuthError):
    """The token endpoint refused the app id or secret."""


class TokenUnavailable(EventApiAuthError):
    """No token for now; trying again later may work."""


def basic(user: str, password: str) -> str:
    """An `Authorization` value for HTTP Basic with UTF-8 credentials."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def idempotency_key(events: Sequence[Mapping[str, Any]]) -> str:
    """A UUID for a request's events: the same events, in the same order, get the same key."""
    ids = "\n".join(str(event.get("clientEventId")) for event in events)
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, ids))


class Auth(Protocol):
    async def headers(self, body: Mapping[str, Any]) -> dict[str, str]:
        """Every header of a request carrying `body`."""
        ...

    def renew(self, sent: Mapping[str, str]) -> bool:
        """After a 401 to a request sent with `sent`: whether sending again may now succeed."""
        ...


class KeyAuth:
    """v2: the rpub/rsec key pair, the same header on every request."""

    def __init__(self, public_key: str, secret_key: str) -> None:
        self._headers = {**COMMON_HEADERS, "Authorization": basic(public_key, secret_key)}

    def __repr__(self) -> str:
        return "KeyAuth(***)"

    async def headers(self, body: Mapping[str, Any]) -> dict[str, str]:
        return dict(self._headers)

    def renew(self, sent: Mapping[str, str]) -> bool:
        return False  # keys do not expire: a 401 means they are wrong


class TokenSource:
    """v1 bearer tokens from the client-credentials grant, cached and renewed."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        app_id: str,
        app_secret: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._url = base_url.rstrip("/") + TOKEN_PATH
        self._authorization = basic(app_id, app_secret)
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._renew_at = 0.0

    def __repr__(self) -> str:
        return f"TokenSource({self._url!r}, ***)"

    async def token(self) -> str:
        """A token that is not about to expire; at most one request for a new one at a time."""
        if self._token is not None and self._clock() < self._renew_at:
            return self._token
        async with self._lock:
            # Another caller may have renewed it while this one waited for the lock.
            if self._token is None or self._clock() >= self._renew_at:
                self._token, self._renew_at = await self._fetch()
            return self._token

    def invalidate(self, token: str | None = None) -> None:
        """Forget the token (only if it still is `token`, when given): the next call fetches
        one, so several requests that failed with the same token renew it once."""
        if token is None or token == self._token:
            self._token = None

    async def _fetch(self) -> tuple[str, float]:
        started = self._clock()
        try:
            response = await self._client.post(
                self._url,
                headers={
                    "Authorization": self._authorization,
                    "Content-Type": "application/x-www-form-urlencoded",
                },
                content=b"grant_type=client_credentials",
            )
        except httpx.HTTPError as error:
            raise TokenUnavailable(f"token endpoint: {type(error).__name__}") from None
        if response.status_code in (400, 401, 403):
            raise CredentialsRejected(
                f"token endpoint answered {response.status_code}: check the app id and secret "
                "(ROKT_EDGE_API_KEY, ROKT_EDGE_API_SECRET)"
            )
        if response.status_code != 200:
            raise TokenUnavailable(f"token endpoint answered {response.status_code}")
        try:
            answer = response.json()
            token = answer["access_token"]
            life = float(answer.get("expires_in", DEFAULT_TOKEN_LIFE))
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
            raise TokenUnavailable("token endpoint: an answer without access_token") from None
        if not isinstance(token, str) or not token or life <= 0:
            raise TokenUnavailable("token endpoint: an unusable token or expires_in")
        return token, started + life - min(RENEW_MARGIN, life / 10)


class TokenAuth:
    """v1: a bearer token, and an Idempotency-Key per request."""

    def __init__(self, tokens: TokenSource) -> None:
        self.tokens = tokens

    async def headers(self, body: Mapping[str, Any]) -> dict[str, str]:
        token = await self.tokens.token()
        return {
            **COMMON_HEADERS,
            "Authorization": f"Bearer {token}",
            "Idempotency-Key": idempotency_key(body.get("events", [])),
        }

    def renew(self, sent: Mapping[str, str]) -> bool:
        used = sent.get("Authorization", "").removeprefix("Bearer ")
        self.tokens.invalidate(used)
        return True


def auth_for(settings: Settings, client: httpx.AsyncClient) -> Auth:
    """The configured authentication; SettingsError without credentials (a dry run)."""
    if not (settings.api_key and settings.api_secret):
        raise SettingsError("the Event API needs ROKT_EDGE_API_KEY and ROKT_EDGE_API_SECRET")
    if settings.event_api_auth == "v1":
        tokens = TokenSource(client, settings.upstream_url, settings.api_key, settings.api_secret)
        return TokenAuth(tokens)
    return KeyAuth(settings.api_key, settings.api_secret)


async def post_events(
    client: httpx.AsyncClient,
    base_url: str,
    auth: Auth,
    request: UpstreamRequest,
    *,
    content: bytes | None = None,
) -> httpx.Response:
    """POST one packed request; after a 401, renew the credentials once and send it again.

    `content` is the request's body when the caller has its bytes already (the sender joins the
    stored event texts); it must be `encode(request.body)`. Raises httpx.HTTPError when no answer
    comes and EventApiAuthError when no token can be had; every answer, good or bad, is returned
    for `responses.classify`.
    """
    if content is None:
        content = encode(request.body)
    url = base_url.rstrip("/") + request.path
    headers = await auth.headers(request.body)
    response = await client.post(url, headers=headers, content=content)
    if response.status_code == 401 and auth.renew(headers):
        headers = await auth.headers(request.body)
        response = await client.post(url, headers=headers, content=content)
    return response
