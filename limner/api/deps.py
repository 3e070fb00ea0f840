"""Annotated dependencies: the caller behind the bearer key, and the services on app.state."""

from typing import Annotated

from fastapi import Depends, Request

from limner.accounts.keys import Caller, KeyStore
from limner.images.service import ImageService
from limner.settings import Settings


def current_caller(request: Request) -> Caller:
    # A plain `def`: FastAPI runs it in its thread pool, so the key lookup never blocks the loop.
    keys: KeyStore = request.app.state.keys
    return keys.authenticate(request.headers.get("authorization"))


def image_service(request: Request) -> ImageService:
    service: ImageService = request.app.state.image_service
    return service


def settings(request: Request) -> Settings:
    value: Settings = request.app.state.settings
    return value


def url_base(request: Request) -> str:
    """Where clients reach this server: the operator's public URL, else the request's own base."""
    configured: str | None = request.app.state.settings.public_url
    return configured or str(request.base_url)


CurrentCaller = Annotated[Caller, Depends(current_caller)]
ImageServiceDep = Annotated[ImageService, Depends(image_service)]
SettingsDep = Annotated[Settings, Depends(settings)]
UrlBase = Annotated[str, Depends(url_base)]
