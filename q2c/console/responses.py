"""What every console page answers with, stated once: the security headers and the sign-in
redirect (the steward pages, the operations dashboard and the reconciliation page alike).

- `Cache-Control: no-store`: pages hold customer data and CSRF tokens; no shared cache keeps them.
- `X-Frame-Options: DENY`: no other site frames the console (clickjacking).
- `Content-Security-Policy: default-src 'self'; style-src 'unsafe-inline'`: no script at all,
  from anywhere (charts are server-rendered SVG), styles inline only.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'",
}


def html_page(content: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(content, status_code=status, headers=dict(SECURITY_HEADERS))


def to_login(request: Request) -> RedirectResponse:
    """Anonymous: to the sign-in page, coming back to where the user was going."""
    target = str(request.url.path) + ("?" + request.url.query if request.url.query else "")
    return RedirectResponse(f"/console/login?next={quote(target)}", status_code=303)
