"""GET /healthz: the database answers and the engine has its backends loaded."""

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from limner.catalog import Catalog
from limner.engine.protocol import ImageEngine
from limner.images.capabilities import capabilities
from limner.storage.db import Database

router = APIRouter(tags=["health"])
logger = logging.getLogger(__name__)


@router.get("/healthz")
def healthz(request: Request) -> JSONResponse:
    database: Database = request.app.state.database
    engine: ImageEngine = request.app.state.engine
    try:
        database_ok = database.ping()
    except Exception:
        logger.exception("health check: database unreachable")
        database_ok = False
    infos = {info.name: info for info in engine.backends()}
    backends = [
        {
            "name": info.name,
            "family": info.family,
            "device": info.device,
            "dtype": info.dtype,
            "tasks": list(info.tasks),
            "edits": info.edit_kind,
            "max_edit_images": info.max_edit_images,
        }
        for info in infos.values()
    ]
    # Which backend runs what under each served name (one name may use two).
    catalog: Catalog = request.app.state.catalog
    models = {entry.id: capabilities(entry, infos).routes() for entry in catalog.entries()}
    healthy = database_ok and bool(backends)
    return JSONResponse(
        {
            "status": "ok" if healthy else "unavailable",
            "database": database_ok,
            "backends": backends,
            "models": models,
        },
        status_code=200 if healthy else 503,
    )
