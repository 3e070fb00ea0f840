"""Images routes: parse the body, ask ImageService for an admitted run, then answer with its
result (an ImagesResponse) or its events (server-sent events, `stream=true`)."""

import asyncio
import base64
import logging
import time

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from limner.api import uploads
from limner.api.deps import BlobsDep, CurrentCaller, ImageServiceDep, SettingsDep, UrlBase
from limner.api.middleware import request_id_var
from limner.api.sse import CLIENT_CLOSED_REQUEST, started, unless_disconnected, while_connected
from limner.api.streaming import sse
from limner.errors import InvalidRequest
from limner.images import schemas
from limner.images.rules import ResolvedRequest
from limner.images.run import FinishedImages, ImageRun
from limner.storage.blobs import BlobStore

router = APIRouter(prefix="/v1/images", tags=["images"])
logger = logging.getLogger(__name__)


@router.post("/generations", response_model=schemas.ImagesResponse)
async def create_image(
    request: Request,
    caller: CurrentCaller,
    service: ImageServiceDep,
    url_base: UrlBase,
    blobs: BlobsDep,
) -> Response:
    body = await uploads.json_body(request)
    run = await service.generate(caller, body, request_id_var.get())
    return await _answer(request, run, "image_generation", _Urls(blobs, url_base))


@router.post("/edits", response_model=schemas.ImagesResponse)
async def create_image_edit(
    request: Request,
    caller: CurrentCaller,
    service: ImageServiceDep,
    settings: SettingsDep,
    url_base: UrlBase,
    blobs: BlobsDep,
) -> Response:
    if uploads.is_multipart(request):
        edit = await uploads.form_body(request, settings.max_upload_bytes)
    else:
        body = await uploads.json_body(request)
        edit = await uploads.json_edit_body(body, settings.allowed_image_hosts)
    if not edit.images:
        raise InvalidRequest("Missing required parameter: 'image'.", "image")
    run = await service.edit(
        caller, edit.fields, edit.images, edit.mask, request_id_var.get(), form=edit.form
    )
    return await _answer(request, run, "image_edit", _Urls(blobs, url_base))


@router.post("/variations", response_model=schemas.ImagesResponse)
async def create_image_variation(
    request: Request,
    caller: CurrentCaller,
    service: ImageServiceDep,
    settings: SettingsDep,
    url_base: UrlBase,
    blobs: BlobsDep,
) -> Response:
    if not uploads.is_multipart(request):
        raise InvalidRequest("Image variations take a multipart/form-data body.")
    edit = await uploads.form_body(request, settings.max_upload_bytes)
    if not edit.images:
        raise InvalidRequest("Missing required parameter: 'image'.", "image")
    if len(edit.images) > 1 or edit.mask is not None:
        raise InvalidRequest("Image variations take exactly one 'image' and no 'mask'.", "image")
    run = await service.vary(caller, edit.fields, edit.images[0], request_id_var.get())
    return await _answer(request, run, "image_variation", _Urls(blobs, url_base))


class _Urls:
    """Where `response_format=url` images are kept, and the base their signed URLs start with."""

    def __init__(self, blobs: BlobStore, base: str) -> None:
        self.blobs, self.base = blobs, base

    def sign(self, image: bytes, output_format: str) -> str:
        signed = self.blobs.save(image, output_format)
        return (
            f"{self.base.rstrip('/')}/v1/images/files/{signed.name}"
            f"?expires={signed.expires}&signature={signed.signature}"
        )


async def _answer(request: Request, run: ImageRun, prefix: str, urls: _Urls) -> Response:
    if run.request.stream:
        # Queued and past its first step (a full queue is still a JSON 503); the headers go
        # out now, and what fails from here on arrives as an error event.
        if await unless_disconnected(request, started(run)) is None:
            await run.abandon()
            return Response(status_code=CLIENT_CLOSED_REQUEST)
        return StreamingResponse(
            while_connected(request, sse(run, prefix)),
            media_type="text/event-stream",
            headers=run.headers,
            # Runs once the response is over, however it ended: a client gone before the first
            # event never starts the generators above, so their cleanup would never run.
            background=BackgroundTask(run.abandon),
        )
    try:
        finished = await unless_disconnected(request, run.result())
        if finished is None:
            return Response(status_code=CLIENT_CLOSED_REQUEST)
        body = await asyncio.to_thread(_images_response, run.request, finished, urls)
        # The response is in hand (its URL images stored): now it is delivered, and billed.
        await run.deliver()
    finally:
        await run.abandon()  # released unless delivered
    return _respond(body, run)


def _images_response(
    request: ResolvedRequest, finished: FinishedImages, urls: _Urls
) -> schemas.ImagesResponse:
    revised = request.prompt if request.entry.rules == "dall-e-3" else None
    if request.response_format == "url":
        data = [
            schemas.Image(url=urls.sign(image, request.output_format), revised_prompt=revised)
            for image in finished.encoded
        ]
    else:
        data = [
            schemas.Image(b64_json=base64.b64encode(image).decode(), revised_prompt=revised)
            for image in finished.encoded
        ]
    response = schemas.ImagesResponse(created=int(time.time()), data=data)
    if request.family != "gpt-image" or finished.usage is None:
        return response
    return response.model_copy(
        update={
            "background": request.background,
            "output_format": request.output_format,
            "quality": request.quality,
            "size": request.size,
            "usage": schemas.ImagesUsage.model_validate(finished.usage.to_wire()),
        }
    )


def _respond(body: schemas.ImagesResponse, run: ImageRun) -> Response:
    # Serialized by pydantic in one pass: the same bytes JSONResponse would send, without first
    # building a dict around megabytes of base64 and running json.dumps over it (~5 ms at
    # 1024x1024, bench/overhead.py).
    # x-limner-seed lets a caller reproduce an image it did not choose a seed for.
    return Response(
        body.model_dump_json(exclude_none=True),
        media_type="application/json",
        headers=run.headers,
    )
