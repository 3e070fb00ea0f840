"""Annotated dependencies: the caller behind the bearer key, and the services on app.state."""

from typing import Annotated

from fastapi import Depends, Request

from limner.accounts.keys import Caller, KeyStore
from limner.errors import MissingScope, PermissionDenied
from limner.images.service import ImageService
from limner.responses.service import ResponsesService
from limner.settings import Settings
from limner.storage.blobs import BlobStore


def _authenticate(request: Request) -> Caller:
    keys: KeyStore = request.app.state.keys
    return keys.authenticate(
        request.headers.get("authorization"),
        request.headers.get("openai-organization"),
        request.headers.get("openai-project"),
    )


# Plain `def`s: FastAPI runs them in its thread pool, so key lookups never block the loop.


def current_caller(request: Request) -> Caller:
    """A project or service-account key: the model endpoints."""
    caller = _authenticate(request)
    if caller.is_admin:
        raise MissingScope(
            "You have insufficient permissions for this operation. Missing scopes: "
            "api.model.request. Admin API keys cannot be used for non-administration endpoints; "
            "use a project API key."
        )
    return caller


def admin_caller(request: Request) -> Caller:
    """An admin key: the /v1/organization endpoints."""
    caller = _authenticate(request)
    if not caller.is_admin:
        raise MissingScope(
            "You have insufficient permissions for this operation. Missing scopes: "
            "api.management.read, api.management.write. The organization endpoints need an "
            "admin API key (sk-admin-...)."
        )
    return caller


def operator_caller(request: Request) -> Caller:
    """An admin key of the operator's own organization: the /v1/limner extension."""
    caller = admin_caller(request)
    if not caller.is_operator:
        raise PermissionDenied(
            "Only admin keys of the operator's organization may manage organizations."
        )
    return caller


def image_service(request: Request) -> ImageService:
    service: ImageService = request.app.state.image_service
    return service


def responses_service(request: Request) -> ResponsesService:
    service: ResponsesService = request.app.state.responses_service
    return service


def blobs(request: Request) -> BlobStore:
    store: BlobStore = request.app.state.blobs
    return store


def settings(request: Request) -> Settings:
    value: Settings = request.app.state.settings
    return value


def url_base(request: Request) -> str:
    """Where clients reach this server: the operator's public URL, else the request's own base."""
    configured: str | None = request.app.state.settings.public_url
    return configured or str(request.base_url)


CurrentCaller = Annotated[Caller, Depends(current_caller)]
AdminCaller = Annotated[Caller, Depends(admin_caller)]
OperatorCaller = Annotated[Caller, Depends(operator_caller)]
ImageServiceDep = Annotated[ImageService, Depends(image_service)]
ResponsesServiceDep = Annotated[ResponsesService, Depends(responses_service)]
SettingsDep = Annotated[Settings, Depends(settings)]
BlobsDep = Annotated[BlobStore, Depends(blobs)]
UrlBase = Annotated[str, Depends(url_base)]
