"""Headers on every answer: no framing, no type sniffing, pages limited to this site's own files; HSTS over HTTPS.

The pages use no inline script or style and load nothing from another site, so the policy can be strict:
everything from this origin, the forms post here only, and no page may be shown in another site's frame.

The headers are added by a WSGI middleware in front of everything else, so the body guard's own refusals
(413, 408, ...) carry them too. A header the answer already has is kept (a page may set a policy of its own).
Added in ``start_response`` rather than by two Flask ``after_request`` hooks: the hooks went through werkzeug's
header object and the request proxy, about a tenth of a single-student request (bench/serving.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "X-Content-Type-Options": "nosniff",
}
HSTS = "Strict-Transport-Security"


def served_over_https(environ: dict[str, Any]) -> bool:
    """The client reached us over HTTPS: directly, or through the load balancer (``X-Forwarded-Proto``).

    The header is trusted for this alone: a client that forges it only adds HSTS to its own answer.
    """
    if environ.get("wsgi.url_scheme") == "https":
        return True
    forwarded = environ.get("HTTP_X_FORWARDED_PROTO", "")
    return forwarded.split(",")[0].strip().lower() == "https"


class AnswerHeaders:
    """WSGI middleware: SECURITY_HEADERS on every answer, and ``Strict-Transport-Security: max-age=<hsts_max_age>``
    on answers served over HTTPS (none when ``hsts_max_age`` is 0)."""

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]], hsts_max_age: int) -> None:
        self.wsgi_app = wsgi_app
        self.always = tuple((name, name.lower(), value) for name, value in SECURITY_HEADERS.items())
        self.hsts = (HSTS, HSTS.lower(), f"max-age={hsts_max_age}") if hsts_max_age > 0 else None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        added = self.always
        if self.hsts is not None and served_over_https(environ):
            added = (*added, self.hsts)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., Any]:
            present = {name.lower() for name, _ in headers}
            headers.extend((name, value) for name, lower, value in added if lower not in present)
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start)
