"""The one place where errors become OpenAI's §7 envelope, with status and retry headers."""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from limner import metrics
from limner.api.middleware import request_id_var
from limner.errors import LimnerError, ServerError

logger = logging.getLogger(__name__)


def error_object(
    message: str, type_: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """The §7 body. Every error a client receives, as a response or as a stream's error event,
    is built here, so here it is counted."""
    metrics.REQUEST_ERRORS.labels(code or type_).inc()
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def envelope(
    status: int,
    message: str,
    type_: str,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    all_headers = {"x-request-id": request_id_var.get()}
    # The SDK obeys x-should-retry over its own rules; a bad request never improves by retrying.
    if 400 <= status < 500 and status not in (408, 409, 429):
        all_headers["x-should-retry"] = "false"
    all_headers.update(headers or {})
    body = error_object(message, type_, param, code)
    return JSONResponse(body, status_code=status, headers=all_headers)


def client_error(exc: Exception) -> LimnerError:
    """An exception as the client will see it. Server faults are logged with their stack,
    which never reaches the client; anything unexpected becomes a plain server_error."""
    if not isinstance(exc, LimnerError):
        logger.error("unhandled error", exc_info=exc)
        return ServerError(
            "The server had an error while processing your request. Sorry about that!"
        )
    if exc.status >= 500:
        logger.error("request failed: %s", exc.message, exc_info=exc.__cause__ or exc)
    return exc


async def _error_response(_request: Request, exc: Exception) -> JSONResponse:
    error = client_error(exc)
    return envelope(error.status, error.message, error.type, error.param, error.code, error.headers)


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


def install(app: FastAPI) -> None:
    app.add_exception_handler(LimnerError, _error_response)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    # The stack goes to the log, never to the client.
    app.add_exception_handler(Exception, _error_response)
