"""Images routes: parse the body, call ImageService, shape the JSON response."""

from fastapi import APIRouter, Request, Response

from limner.api import uploads
from limner.api.deps import CurrentCaller, ImageServiceDep, SettingsDep, UrlBase
from limner.api.middleware import request_id_var
from limner.errors import InvalidRequest
from limner.images import schemas
from limner.images.service import ImageResult

router = APIRouter(prefix="/v1/images", tags=["images"])


@router.post("/generations", response_model=schemas.ImagesResponse)
async def create_image(
    request: Request, caller: CurrentCaller, service: ImageServiceDep, url_base: UrlBase
) -> Response:
    body = await uploads.json_body(request)
    return _respond(await service.generate(caller, body, url_base, request_id_var.get()))


@router.post("/edits", response_model=schemas.ImagesResponse)
async def create_image_edit(
    request: Request,
    caller: CurrentCaller,
    service: ImageServiceDep,
    settings: SettingsDep,
    url_base: UrlBase,
) -> Response:
    if uploads.is_multipart(request):
        edit = await uploads.form_body(request, settings.max_upload_bytes)
    else:
        body = await uploads.json_body(request)
        edit = await uploads.json_edit_body(body, settings.allowed_image_hosts)
    if not edit.images:
        raise InvalidRequest("Missing required parameter: 'image'.", "image")
    result = await service.edit(
        caller, edit.fields, edit.images, edit.mask, url_base, request_id_var.get(), form=edit.form
    )
    return _respond(result)


@router.post("/variations", response_model=schemas.ImagesResponse)
async def create_image_variation(
    request: Request,
    caller: CurrentCaller,
    service: ImageServiceDep,
    settings: SettingsDep,
    url_base: UrlBase,
) -> Response:
    if not uploads.is_multipart(request):
        raise InvalidRequest("Image variations take a multipart/form-data body.")
    edit = await uploads.form_body(request, settings.max_upload_bytes)
    if not edit.images:
        raise InvalidRequest("Missing required parameter: 'image'.", "image")
    if len(edit.images) > 1 or edit.mask is not None:
        raise InvalidRequest("Image variations take exactly one 'image' and no 'mask'.", "image")
    result = await service.vary(caller, edit.fields, edit.images[0], url_base, request_id_var.get())
    return _respond(result)


def _respond(result: ImageResult) -> Response:
    # Serialized by pydantic in one pass: the same bytes JSONResponse would send, without first
    # building a dict around megabytes of base64 and running json.dumps over it (~5 ms at
    # 1024x1024, bench/overhead.py).
    # x-limner-seed lets a caller reproduce an image it did not choose a seed for.
    return Response(
        result.response.model_dump_json(exclude_none=True),
        media_type="application/json",
        headers={**result.headers, "x-limner-seed": str(result.request.seed)},
    )
