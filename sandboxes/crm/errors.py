"""Salesforce REST error bodies: always a JSON array of {message, errorCode, fields}."""

from __future__ import annotations

from fastapi.responses import Response

from sandboxes.crm import jsonutil


class SfError(Exception):
    """Raised by sandbox code; rendered as Salesforce's error array with an HTTP status."""

    def __init__(self, status: int, error_code: str, message: str, fields: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.fields = fields

    def body(self) -> list[dict]:
        item: dict = {"message": self.message, "errorCode": self.error_code}
        if self.fields is not None:
            item["fields"] = self.fields
        return [item]


def error_body(status: int, code: str, message: str) -> list[dict]:
    """Body used by the shared fault-injection middleware (same shape as real errors)."""
    return [{"message": message, "errorCode": code}]


def json_response(content: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        content=jsonutil.dumps(content),
        status_code=status,
        media_type="application/json;charset=UTF-8",
        headers=headers,
    )


def sf_error_response(err: SfError) -> Response:
    return json_response(err.body(), err.status)
