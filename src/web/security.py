"""Who may call what, and how answers travel: bearer tokens for the API and for monitoring, and with sign-in.

API tokens are configured by their SHA-256 (``API_TOKEN_SHA256``), never in clear: a leaked environment
listing gives no usable token. A presented token is hashed and compared with every configured digest in
constant time, so neither the time taken nor an early exit tells which digest, if any, it matched.

With sign-in on (``SIGN_IN``), the load balancer signs teachers in and lets a request that carries a bearer token
through without signing in, for school systems and monitoring. Such a request is then checked here on every
route, pages included (``bearer_refused``, before any view): only a token this app accepts passes, so a made-up
token opens nothing.
"""

from __future__ import annotations

import hashlib
import hmac

from flask import Flask, Response, request

from src.web.errors import json_error
from src.web.services import services


def bearer_token() -> bytes | None:
    """The token of the request's ``Authorization: Bearer <token>`` header (the scheme in any case), else None."""
    return bearer_of(request.headers.get("Authorization", ""))


def bearer_of(authorization: str) -> bytes | None:
    """The token of an ``Authorization`` header's value ``Bearer <token>`` (the scheme in any case), else None."""
    scheme, _, given = authorization.partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        return None
    return given.encode()


def token_matches(token: bytes, digests: tuple[bytes, ...]) -> bool:
    """Whether SHA-256(token) is one of ``digests``; every digest is compared, each in constant time."""
    presented = hashlib.sha256(token).digest()
    matched = False
    for expected in digests:
        matched |= hmac.compare_digest(presented, expected)
    return matched


def _unauthorized(message: str, realm: str | None = None) -> Response:
    response = json_error(401, "unauthorized", message)
    response.headers["WWW-Authenticate"] = f'Bearer realm="{realm}"' if realm else "Bearer"
    return response


def api_refused() -> Response | None:
    """401 unless the request carries one of the API tokens (when API_TOKEN_SHA256 is set); None when it may pass."""
    digests = services().config.api_token_sha256
    if not digests:
        return None
    token = bearer_token()
    if token is None:
        return _unauthorized("this API needs a token: send it as Authorization: Bearer <token>", "api")
    if not token_matches(token, digests):
        return _unauthorized("the API token sent is not one this server accepts", "api")
    return None


def trusted_sender() -> bool:
    """Whether the real scores this request sends may count in the realized figures (and so in retraining).

    With sign-in on, every request that reaches the app is a signed-in teacher's or carries an accepted token
    (``bearer_refused``): it counts. Otherwise, with API tokens configured (API_TOKEN_SHA256), only a request
    carrying one of them: anyone can post a labeled class list through the form and see its own class's
    evaluation, but could otherwise move the fleet's realized coverage, or flood it with accurate rows to hide a
    real drop. Without either every sender counts (a server no one outside reaches). The one place that decides.
    """
    config = services().config
    if config.sign_in or not config.api_token_sha256:
        return True
    token = bearer_token()
    return token is not None and token_matches(token, config.api_token_sha256)


def monitoring_refused(token: str | None) -> Response | None:
    """401 unless the request carries the monitoring token (when one is configured); None when it may pass."""
    if token is None:
        return None
    given = bearer_token()
    if given is not None and hmac.compare_digest(given, token.encode()):
        return None
    return _unauthorized("send the monitoring token as Authorization: Bearer <token>")


MONITORING_PATHS = ("/metrics", "/drift")


def bearer_refused() -> Response | None:
    """With sign-in on: 401 for a request carrying a bearer token that is neither an API token nor, on the
    monitoring paths, the monitoring token; None when it may pass (or carries no bearer token)."""
    config = services().config
    if not config.sign_in:
        return None
    token = bearer_token()
    if token is None:
        return None
    if config.api_token_sha256 and token_matches(token, config.api_token_sha256):
        return None
    if request.path in MONITORING_PATHS and config.metrics_token is not None:
        if hmac.compare_digest(token, config.metrics_token.encode()):
            return None
    return _unauthorized("sign-in is on: a bearer token must be one this server accepts; sign in instead")


def check_bearer_tokens(app: Flask, sign_in: bool) -> None:
    """With sign-in on, run ``bearer_refused`` before every view of ``app`` (pages, the API, monitoring); without
    it the hook would pass every request, so none is registered (a hook costs each request its dispatch)."""
    if sign_in:
        app.before_request(bearer_refused)
