"""Security headers on every answer: no framing, no type sniffing, pages limited to this site's own files.

The pages use no inline script or style and load nothing from another site, so the policy can be strict:
everything from this origin, the forms post here only, and no page may be shown in another site's frame.
"""

from __future__ import annotations

from flask import Flask, Response

CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                           "form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "X-Content-Type-Options": "nosniff",
}


def register_security_headers(app: Flask) -> None:
    @app.after_request
    def secure(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response
