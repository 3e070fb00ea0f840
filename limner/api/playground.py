"""The browser playground: `/playground` and its files (package data under limner/playground),
and `/` sending a browser there. Nothing on the page comes from elsewhere, so a strict
Content-Security-Policy holds it to this server; the key lives in the browser's storage, never
in a URL."""

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from limner.errors import NotFound

router = APIRouter(tags=["playground"], include_in_schema=False)

PLAYGROUND_DIR = Path(str(files("limner") / "playground")).resolve()
_MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
# Images the page shows are data: and blob: URLs it made from API answers; it talks only to
# this origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    # Always revalidated: an upgraded server never runs with yesterday's scripts.
    "cache-control": "no-cache",
}


@router.get("/", response_model=None)
def root(request: Request) -> Response:
    if "text/html" in request.headers.get("accept", ""):
        return RedirectResponse("/playground", status_code=307)
    raise NotFound("Nothing is served at /: the API is under /v1, a browser's page at /playground.")


@router.get("/playground")
def playground() -> FileResponse:
    return _file("index.html")


@router.get("/playground/{path:path}")
def playground_file(path: str) -> FileResponse:
    return _file(path)


def _file(path: str) -> FileResponse:
    found = (PLAYGROUND_DIR / path).resolve()
    media_type = _MEDIA_TYPES.get(found.suffix)
    if not found.is_relative_to(PLAYGROUND_DIR) or not found.is_file() or not media_type:
        raise NotFound(f"The playground has no file {path!r}.")
    return FileResponse(found, media_type=media_type, headers=_HEADERS)
