"""The one place where errors become OpenAI's §7 envelope, with status and retry headers."""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from limner import metrics
from limner.api.middleware import request_id_var
from limner.errors import LimnerError

logger = logging.getLogger(__name__)


def envelope(
    status: int,
    message: str,
    type_: str,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    metrics.REQUEST_ERRORS.labels(code or type_).inc()
    all_headers = {"x-request-id": request_id_var.get()}
    # The SDK obeys x-should-retry over its own rules; a bad request never improves by retrying.
    if 400 <= status < 500 and status not in (408, 409, 429):
        all_headers["x-should-retry"] = "false"
    all_headers.update(headers or {})
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=all_headers)


async def _limner_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LimnerError)
    if exc.status >= 500:
        logger.error("request failed: %s", exc.message, exc_info=exc.__cause__ or exc)
    return envelope(exc.status, exc.message, exc.type, exc.param, exc.code, exc.headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    param = ".".join(location) or None
    return envelope(
        400,
        f"Invalid request: {first.get('msg', 'malformed')}.",
        "invalid_request_error",
        param,
        "invalid_value",
    )


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return envelope(
            404,
            "Invalid URL: this server has no such route.",
            "invalid_request_error",
            None,
            "unknown_url",
        )
    if exc.status_code == 405:
        return envelope(
            405,
            "Method not allowed for this URL.",
            "invalid_request_error",
            None,
            "method_not_allowed",
        )
    return envelope(exc.status_code, str(exc.detail), "invalid_request_error")


async def _unexpected_error(_request: Request, exc: Exception) -> JSONResponse:
    # The stack goes to the log, never to the client.
    logger.error("unhandled error", exc_info=exc)
    return envelope(
        500,
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(LimnerError, _limner_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
