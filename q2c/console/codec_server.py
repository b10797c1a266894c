"""The codec server: the Temporal UI and CLI decode q2c's encrypted payloads here.

Temporal's remote codec protocol: `POST .../encode` and `POST .../decode`, each taking and
answering a `temporal.api.common.v1.Payloads` message in protobuf JSON
(`{"payloads": [{"metadata": {...base64...}, "data": "...base64..."}]}`), the namespace in the
`X-Namespace` header. The keys never leave this process; whoever may call it reads clear
payloads, so it is only for:

- signed-in console users (the console's session cookie; the Temporal UI sends it when the
  user turns on "Include cross-origin credentials" in its codec settings), or
- a bearer token of `Q2C_API_TOKENS` (the `temporal` CLI's `--codec-auth`, scripts).

A cross-origin browser call needs CORS: allowed only for the Temporal UI's origin
(`Q2C_TEMPORAL_UI_URL`), with credentials. The preflight carries no credentials, so it is
answered without them; the POST itself is authenticated.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payloads
from temporalio.converter import PayloadCodec

from q2c.console.auth import Principal, require_viewer

ALLOWED_HEADERS = "Content-Type, X-Namespace, Authorization"


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def build_router(codec: PayloadCodec | None, ui_origins: list[str], namespace: str) -> APIRouter:
    router = APIRouter(prefix="/codec", tags=["codec"])
    allowed = {origin_of(o) for o in ui_origins if o}

    def cors(request: Request, response: Response) -> None:
        origin = request.headers.get("origin")
        if origin and origin in allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers["Vary"] = "Origin"

    async def run(request: Request, response: Response, direction: str) -> Response:
        cors(request, response)
        if codec is None:
            raise HTTPException(404, detail="payload encryption is off (Q2C_CODEC_KEYS unset): nothing to decode")
        asked = request.headers.get("x-namespace")
        if asked and asked != namespace:
            raise HTTPException(400, detail=f"this codec server serves namespace {namespace}, not {asked}")
        body = await request.body()
        try:
            payloads = json_format.Parse(body or b"{}", Payloads())
        except (json_format.ParseError, DecodeError, UnicodeDecodeError) as err:
            raise HTTPException(400, detail=f"body is not a Payloads message in protobuf JSON: {err}") from None
        try:
            if direction == "encode":
                out = await codec.encode(list(payloads.payloads))
            else:
                out = await codec.decode(list(payloads.payloads))
        except Exception as err:  # a key this process lacks, a tampered payload: the caller's problem
            raise HTTPException(422, detail=f"cannot {direction}: {type(err).__name__}: {err}") from None
        return Response(
            content=json_format.MessageToJson(Payloads(payloads=out)),
            media_type="application/json",
            headers=dict(response.headers),
        )

    @router.options("/{direction}")
    async def preflight(direction: str, request: Request) -> Response:
        response = Response(status_code=204)
        origin = request.headers.get("origin")
        if origin in allowed and direction in ("encode", "decode"):
            cors(request, response)
            response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = "600"
        return response

    @router.post("/encode")
    async def encode(request: Request, response: Response, _: Principal = Depends(require_viewer)) -> Response:
        return await run(request, response, "encode")

    @router.post("/decode")
    async def decode(request: Request, response: Response, _: Principal = Depends(require_viewer)) -> Response:
        return await run(request, response, "decode")

    return router
