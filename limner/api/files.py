"""Signed, expiring image URLs (response_format=url): no API key, the signature is the grant."""

from fastapi import APIRouter, Query, Request, Response

from limner.storage.blobs import BlobStore

router = APIRouter(prefix="/v1/images/files", tags=["files"])

_MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


@router.get("/{name}")
def get_image_file(
    name: str,
    request: Request,
    expires: int = Query(...),
    signature: str = Query(...),
) -> Response:
    blobs: BlobStore = request.app.state.blobs
    data = blobs.read(name, expires, signature)
    extension = name.rsplit(".", 1)[-1]
    return Response(
        data,
        media_type=_MEDIA_TYPES[extension],
        headers={"cache-control": "private, max-age=3600"},
    )
