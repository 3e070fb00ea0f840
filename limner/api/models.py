"""Models routes: the served names from the catalog, in OpenAI's Model shape.

Unlike api.openai.com, the list holds exactly the models the calling key may use right now
(verification and tier included), and a model it may not use is not found."""

from fastapi import APIRouter, Request

from limner.api.deps import CurrentCaller
from limner.catalog import Catalog, ModelEntry
from limner.engine.protocol import ImageEngine
from limner.engine.types import BackendInfo
from limner.errors import ModelNotFound
from limner.images import schemas
from limner.images.access import may_use
from limner.images.capabilities import Capabilities, capabilities
from limner.metering.tiers import TierBook

router = APIRouter(prefix="/v1/models", tags=["models"])


def _infos(request: Request) -> dict[str, BackendInfo]:
    engine: ImageEngine = request.app.state.engine
    return {info.name: info for info in engine.backends()}


def _model(entry: ModelEntry, infos: dict[str, BackendInfo]) -> schemas.Model:
    return schemas.Model(
        id=entry.id,
        created=entry.created,
        owned_by=entry.owned_by,
        limner=_capabilities(capabilities(entry, infos)),
    )


def _capabilities(found: Capabilities) -> schemas.ModelCapabilities:
    edits = None
    if found.edit_backend is not None and found.mask is not None and found.edit_kind != "none":
        edits = schemas.ModelEdits(
            kind=found.edit_kind, max_images=found.max_edit_images, mask=found.mask
        )
    return schemas.ModelCapabilities(generations=found.generate_backend is not None, edits=edits)


@router.get("", response_model=schemas.ListModelsResponse)
def list_models(request: Request, caller: CurrentCaller) -> schemas.ListModelsResponse:
    catalog: Catalog = request.app.state.catalog
    book: TierBook = request.app.state.tiers
    tiers = book.table()
    usable = [entry for entry in catalog.entries() if may_use(caller, entry, tiers)]
    infos = _infos(request)
    return schemas.ListModelsResponse(data=[_model(entry, infos) for entry in usable])


@router.get("/{model}", response_model=schemas.Model)
def retrieve_model(model: str, request: Request, caller: CurrentCaller) -> schemas.Model:
    catalog: Catalog = request.app.state.catalog
    entry = catalog.resolve(model)
    book: TierBook = request.app.state.tiers
    if not may_use(caller, entry, book.table()):
        raise ModelNotFound(model)
    return _model(entry, _infos(request))
