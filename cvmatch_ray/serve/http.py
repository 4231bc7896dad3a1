"""The HTTP edge: request guards and the one place errors become status codes.

Both guards are plain ASGI middleware rather than FastAPI dependencies because FastAPI
reads (and parses) a request's whole body before it runs any dependency: an oversized or
unauthenticated upload would be read in full before being refused.

- ``RequestGuard`` refuses a request whose ``Content-Length`` is over the limit before
  reading a byte of it, counts bytes as they stream in when there is no such header (or
  it lies), and checks the ``X-API-Key`` header when keys are configured: the key names
  the caller's tenant, which ``get_service`` hands the routes (that tenant's view of the
  service).
- ``install_error_handlers`` maps the service's exceptions to precise statuses; the
  status of each processing error code is in ``STATUS_BY_CODE``.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Mapping, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from ray.exceptions import RayError
from ray.serve.exceptions import RayServeException
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cvmatch_ray.config import DEFAULT_TENANT
from cvmatch_ray.errors import ErrorCode, ProcessingError
from cvmatch_ray.errors import UnknownDocument
from cvmatch_ray.progress import JobNotFoundError, ProgressError
from cvmatch_ray.serve.errors import InvalidRequest, RequestTooLarge, ServiceUnavailable
from cvmatch_ray.serve.service import APIService
from cvmatch_ray.storage.blobs import BlobStoreError

logger = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
#: Documents the header in OpenAPI; enforcement is in ``RequestGuard``.
api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="Required when the server has API keys.")
#: Paths that answer without a key: liveness probes, the API's own documentation and the web
#: page (which holds no data: its calls to /api carry the key).
OPEN_PATHS: frozenset[str] = frozenset({"/api/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/"})
#: Path prefixes that answer without a key: the web page's static files.
OPEN_PREFIXES: tuple[str, ...] = ("/web/",)
#: The ASGI scope key under which ``RequestGuard`` passes the caller's tenant on.
TENANT_SCOPE_KEY = "cvmatch.tenant"
#: Room for the multipart envelope (boundaries, part headers, form fields) around a file.
MULTIPART_OVERHEAD = 64 * 1024

#: The HTTP status of each error code a document can fail with; any other code is the
#: document's content at fault, 422.
STATUS_BY_CODE: dict[ErrorCode, int] = {
    ErrorCode.document_too_large: 413,
    ErrorCode.too_many_pages: 413,
    ErrorCode.archive_too_large: 413,
    ErrorCode.unsupported_document_type: 415,
    # Not the document's fault.
    ErrorCode.embedding_failed: 500,
    ErrorCode.internal_error: 500,
    ErrorCode.poison_document: 422,
}


def http_status(code: ErrorCode) -> int:
    """The HTTP status a document refused with ``code`` is answered with."""
    return STATUS_BY_CODE.get(code, 422)


class BodyTooLarge(StarletteHTTPException):
    """The body streamed past the limit; an HTTPException so that FastAPI's form parser
    lets it through as it is instead of turning it into a generic 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


def _error(status: int, code: str, message: str, stage: str | None = None) -> dict:
    return {"detail": {"code": code, "stage": stage, "message": message}}


async def _send_json(send: Send, status: int, body: dict, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                # The body was not read: the connection cannot be reused for another request.
                (b"connection", b"close"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class RequestGuard:
    """ASGI middleware: body size limit and API keys, checked before the body is read."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, api_keys: Mapping[str, str] | None = None) -> None:
        """Args:
        app: the application guarded.
        max_body_bytes: the largest request body.
        api_keys: the accepted keys and the tenant of each; none = no auth, every request
            the default tenant's.
        """
        self.app = app
        self.max_body_bytes = max_body_bytes
        self._keys = [(k.encode(), tenant) for k, tenant in (api_keys or {}).items() if k]

    def _tenant(self, scope: Scope) -> str | None:
        """The caller's tenant (its key's; the default one where no key is needed), or None: refused."""
        path = scope.get("path", "")
        if not self._keys or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            return DEFAULT_TENANT
        for name, value in scope.get("headers", ()):
            if name == b"x-api-key":
                # Constant-time comparison against every key: no timing hint of a prefix.
                matched = [tenant for key, tenant in self._keys if hmac.compare_digest(value, key)]
                return matched[0] if matched else None
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tenant = self._tenant(scope)
        if tenant is None:
            await _send_json(
                send, 401, {"detail": "missing or invalid API key"}, [(b"www-authenticate", API_KEY_HEADER.encode())]
            )
            return
        limit = self.max_body_bytes
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_json(send, 422, {"detail": "malformed Content-Length header"})
                    return
                if declared > limit:
                    await _send_json(
                        send, 413, _error(413, "document_too_large", f"request body larger than {limit} bytes", "read")
                    )
                    return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app({**scope, TENANT_SCOPE_KEY: tenant}, counted_receive, tracked_send)
        except BodyTooLarge:
            # Raised where no route could answer (e.g. while a middleware buffered the body).
            if started:
                raise
            await _send_json(send, 413, _error(413, "document_too_large", f"request body larger than {limit} bytes", "read"))


async def get_service(request: Request) -> APIService:
    """FastAPI dependency: the replica's ``APIService`` as the caller's tenant sees it (the
    tenant ``RequestGuard`` found from the key): its CVs, JDs, uploads and jobs only.

    A coroutine on purpose: FastAPI runs a plain ``def`` dependency in a worker thread,
    one thread hop per request for a dict lookup.
    """
    return await request.app.state.service.for_tenant(request.scope[TENANT_SCOPE_KEY])


def error_response(e: Exception) -> JSONResponse | None:
    """The answer for a known exception, or None for an unexpected one (a 500).

    Checked by ``isinstance`` in this order because an error raised in another deployment
    arrives as a class deriving from both ``RayTaskError`` and the original exception:
    a ``ProcessingError`` from another deployment must stay a 4xx, not become a backend 503.
    """
    if isinstance(e, ProcessingError):
        status = http_status(e.code)
        return JSONResponse(_error(status, e.code, e.message, e.stage), status_code=status)
    if isinstance(e, (UnknownDocument, JobNotFoundError)):
        # A remote error's str() carries its traceback; only a local one is worth echoing.
        return JSONResponse({"detail": "not found" if isinstance(e, RayError) else str(e)}, status_code=404)
    if isinstance(e, InvalidRequest):
        return JSONResponse({"detail": str(e)}, status_code=422)
    if isinstance(e, RequestTooLarge):
        return JSONResponse({"detail": str(e)}, status_code=413)
    if isinstance(e, ServiceUnavailable) and not isinstance(e, RayError):
        logger.warning("service unavailable: %s", e)
        return JSONResponse({"detail": str(e)}, status_code=503, headers={"Retry-After": "5"})
    if isinstance(e, (ServiceUnavailable, ProgressError, BlobStoreError, RayError, RayServeException)):
        logger.error("backend unavailable: %s", type(e).__name__)
        return JSONResponse({"detail": "a backend is unavailable; try again"}, status_code=503, headers={"Retry-After": "5"})
    return None


def install_error_handlers(app: FastAPI) -> None:
    """Translate the service's exceptions into HTTP answers, once, for every route."""

    async def _known(_: Request, e: Exception) -> JSONResponse:
        response = error_response(e)
        if response is None:
            raise e
        return response

    for cls in (ProcessingError, UnknownDocument, JobNotFoundError, ProgressError, InvalidRequest, RequestTooLarge, ServiceUnavailable,
                BlobStoreError, RayError, RayServeException):
        app.add_exception_handler(cls, _known)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        if e.status_code == 413:
            return JSONResponse(_error(413, "document_too_large", str(e.detail), "read"), status_code=413)
        # FastAPI answers a body it cannot parse (broken multipart, bad form) with 400; to
        # clients it is one more malformed request, and those are 422 here.
        status = 422 if e.status_code == 400 else e.status_code
        return JSONResponse({"detail": e.detail}, status_code=status, headers=getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        # The default handler echoes the input back; an uploaded CV must not be.
        errors = [{k: v for k, v in err.items() if k in ("type", "loc", "msg")} for err in e.errors()]
        return JSONResponse({"detail": errors}, status_code=422)
