"""Models routes: the served names from the catalog, in OpenAI's Model shape."""

from fastapi import APIRouter, Request

from limner.api.deps import CurrentCaller
from limner.catalog import Catalog, ModelEntry
from limner.images import schemas

router = APIRouter(prefix="/v1/models", tags=["models"])


def _model(entry: ModelEntry) -> schemas.Model:
    return schemas.Model(id=entry.id, created=entry.created, owned_by=entry.owned_by)


@router.get("", response_model=schemas.ListModelsResponse)
def list_models(request: Request, _caller: CurrentCaller) -> schemas.ListModelsResponse:
    catalog: Catalog = request.app.state.catalog
    return schemas.ListModelsResponse(data=[_model(entry) for entry in catalog.entries()])


@router.get("/{model}", response_model=schemas.Model)
def retrieve_model(model: str, request: Request, _caller: CurrentCaller) -> schemas.Model:
    catalog: Catalog = request.app.state.catalog
    return _model(catalog.resolve(model))
