"""NetSuite's error body, raised from anywhere in the sandbox as `NetSuiteError`.

Every REST error NetSuite answers looks like (RFC 9457 problem details + Oracle fields):

    {"type": "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.1",
     "title": "Bad Request", "status": 400,
     "o:errorDetails": [{"detail": "...", "o:errorPath": "subsidiary",
                         "o:errorCode": "INVALID_FLD_VALUE"}]}

Every error, including the 429 of the concurrency limit and the sandbox's own 404/405 for
unknown URLs and methods, carries NetSuite's content type
`application/vnd.oracle.resource+json; type=error`.

Codes used here: USER_ERROR (missing/ill-formed value), INVALID_FLD_VALUE (a value or a
reference NetSuite does not accept), DUP_RCRD (external ID taken), NONEXISTENT_ID (404: "The
record instance does not exist. Provide a valid record instance ID.", on GET and PATCH alike,
as NetSuite answers it), INVALID_RCRD_TYPE (404: "Record type 'x' does not exist."),
INVALID_LOGIN (401), CONCURRENCY_LIMIT_EXCEEDED (429), INVALID_PARAMETER, INVALID_CONTENT,
METHOD_NOT_ALLOWED (405, with an `Allow` header), INVALID_URL (404).
"""

from __future__ import annotations

import json

from fastapi.responses import Response

_RFC9110 = "https://www.rfc-editor.org/rfc/rfc9110.html#section-"
TYPES = {
    400: (_RFC9110 + "15.5.1", "Bad Request"),
    401: (_RFC9110 + "15.5.2", "Unauthorized"),
    403: (_RFC9110 + "15.5.4", "Forbidden"),
    404: (_RFC9110 + "15.5.5", "Not Found"),
    405: (_RFC9110 + "15.5.6", "Method Not Allowed"),
    429: ("https://www.rfc-editor.org/rfc/rfc6585.html#section-4", "Too Many Requests"),
    500: (_RFC9110 + "15.6.1", "Internal Server Error"),
    503: (_RFC9110 + "15.6.4", "Service Unavailable"),
}

INVALID_LOGIN_DETAIL = (
    "Invalid login attempt. For more details, see the Login Audit Trail in the "
    "NetSuite UI at Setup > Users/Roles > User Management > View Login Audit Trail."
)


ERROR_TYPE = "application/vnd.oracle.resource+json; type=error"
NOT_FOUND_DETAIL = "The record instance does not exist. Provide a valid record instance ID."


class NetSuiteError(Exception):
    def __init__(
        self, status: int, code: str, detail: str, path: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.path = path
        self.headers = headers or {}


def error_body(status: int, code: str, detail: str, path: str | None = None) -> dict:
    type_url, title = TYPES.get(status, (_RFC9110 + "15", "Error"))
    item: dict = {"detail": detail}
    if path:
        item["o:errorPath"] = path
    item["o:errorCode"] = code
    return {"type": type_url, "title": title, "status": status, "o:errorDetails": [item]}


def error_response(err: NetSuiteError) -> Response:
    return Response(
        json.dumps(error_body(err.status, err.code, err.detail, err.path)),
        status_code=err.status,
        media_type=ERROR_TYPE,
        headers=err.headers,
    )


def render_fault(status: int, code: str, message: str) -> tuple[bytes, str, dict[str, str]]:
    """For FaultInjectionMiddleware (injected 5xx/429 and the account concurrency limit): the
    same body and content type as every other NetSuite error."""
    return json.dumps(error_body(status, code, message)).encode(), ERROR_TYPE, {}


def missing(field: str, label: str) -> NetSuiteError:
    return NetSuiteError(400, "USER_ERROR", f"Please enter value(s) for: {label}", field)


def invalid(field: str, value: object, why: str | None = None) -> NetSuiteError:
    detail = f"Invalid Field Value {value} for the following field: {field}"
    return NetSuiteError(400, "INVALID_FLD_VALUE", detail + (f". {why}" if why else ""), field)
