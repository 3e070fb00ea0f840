"""x-request-id on every response, a request-scoped id for logs and one access line per request
(plain ASGI, stream-safe)."""

import logging
import secrets
import time
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from limner.ids import MAX_REQUEST_ID_LENGTH

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
# One line per request once its response has ended (a stream's included), logged under the
# request's id; uvicorn's own access log, which cannot know the id, is turned off.
access_logger = logging.getLogger("limner.access")


def new_request_id() -> str:
    return "req_" + secrets.token_hex(16)


class RequestIdMiddleware:
    """`from_proxy`: a proxy in front (Ray Serve's) has put the id on the request and adds it
    to the response itself; the id is taken from there and not added a second time."""

    def __init__(self, app: ASGIApp, from_proxy: bool = False) -> None:
        self.app = app
        self.from_proxy = from_proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = (self._proxy_id(scope) if self.from_proxy else None) or new_request_id()
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status: int | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() != b"x-request-id"
                ]
                if not self.from_proxy:
                    headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _log_access(scope, status, time.perf_counter() - started)
            request_id_var.reset(token)

    @staticmethod
    def _proxy_id(scope: Scope) -> str | None:
        """The proxy's id, which may be one the client sent: it names logs and usage rows but
        never keys billing (see metering.ledger). Cut to MAX_REQUEST_ID_LENGTH; none if
        unprintable."""
        for name, value in scope.get("headers", []):
            if name.lower() == b"x-request-id":
                found = bytes(value)[:MAX_REQUEST_ID_LENGTH].decode("latin-1")
                return found if found.isascii() and found.isprintable() else None
        return None


def _log_access(scope: Scope, status: int | None, seconds: float) -> None:
    """`status` is None when no response began (the client left, or the app failed)."""
    method, path, duration_ms = scope["method"], scope["path"], round(seconds * 1000)
    access_logger.info(
        "%s %s %s %d ms",
        method,
        path,
        "-" if status is None else status,
        duration_ms,
        extra={"method": method, "path": path, "status": status, "duration_ms": duration_ms},
    )


class RequestIdLogFilter(logging.Filter):
    """Adds `request_id` to every log record so formats may print it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True
