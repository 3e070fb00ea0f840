"""Request bodies → plain fields plus bounded file bytes: JSON, multipart, and JSON image URLs."""

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import Request
from starlette.datastructures import UploadFile

from limner.errors import (
    ImageTooLarge,
    InvalidImageUrl,
    InvalidRequest,
    InvalidType,
    InvalidValue,
    UnknownParameter,
)
from limner.images.inputs import Upload, decode_data_url

MAX_IMAGES = 16
_FILE_FIELDS = ("image", "image[]", "mask")
_REMOTE_TIMEOUT = httpx.Timeout(10.0)
_MAX_REMOTE_BYTES = 50 * 1024 * 1024


@dataclass
class EditBody:
    """An edit or variation request split into scalar fields and uploaded files."""

    fields: dict[str, Any]
    images: list[Upload] = field(default_factory=list)
    mask: Upload | None = None
    form: bool = True


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise InvalidRequest(
            "We could not parse the JSON body of your request. The body must be a JSON object "
            "(HINT: check that Content-Type is application/json and the body is valid JSON)."
        )
    return body


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith("multipart/form-data")


async def form_body(request: Request, max_file_bytes: int) -> EditBody:
    """Multipart: `image` or repeated `image[]`, optional `mask`, and text fields."""
    form = await request.form(max_files=MAX_IMAGES + 4, max_fields=64)
    body = EditBody(fields={})
    try:
        for name, value in form.multi_items():
            if isinstance(value, str):
                if name in _FILE_FIELDS:
                    param = "image" if name == "image[]" else name
                    raise InvalidType(
                        f"Invalid type for '{param}': expected one of an array of files or file, "
                        "but got a string instead.",
                        param,
                    )
                body.fields[name] = value
                continue
            if name not in _FILE_FIELDS:
                raise UnknownParameter(name)
            upload = await _read(value, "mask" if name == "mask" else "image", max_file_bytes)
            if name == "mask":
                body.mask = upload
            else:
                body.images.append(upload)
                if len(body.images) > MAX_IMAGES:
                    raise InvalidValue(
                        f"Too many images: at most {MAX_IMAGES} may be sent.", "image"
                    )
    finally:
        await form.close()
    return body


async def _read(upload: UploadFile, param: str, max_bytes: int) -> Upload:
    if upload.size is not None and upload.size > max_bytes:
        raise ImageTooLarge(
            f"Invalid file '{param}': the file is {upload.size} bytes; the limit is "
            f"{max_bytes} bytes.",
            param,
        )
    data = await upload.read()
    return Upload(
        data=data,
        filename=upload.filename,
        content_type=upload.content_type,
        field=param,
    )


async def json_edit_body(body: dict[str, Any], allowed_hosts: list[str]) -> EditBody:
    """The JSON edit variant: `images: [{image_url}]` and `mask: {image_url}`."""
    fields = dict(body)
    references = fields.pop("images", None)
    mask_reference = fields.pop("mask", None)
    if references is None:
        raise InvalidRequest("Missing required parameter: 'images'.", "images")
    if not isinstance(references, list) or not references:
        raise InvalidType("Invalid type for 'images': expected a non-empty array.", "images")
    if len(references) > MAX_IMAGES:
        raise InvalidValue(f"Too many images: at most {MAX_IMAGES} may be sent.", "images")
    edit = EditBody(fields=fields, form=False)
    for index, reference in enumerate(references):
        edit.images.append(await _fetch(reference, f"images[{index}]", allowed_hosts))
    if mask_reference is not None:
        edit.mask = await _fetch(mask_reference, "mask", allowed_hosts)
    return edit


async def _fetch(reference: Any, param: str, allowed_hosts: list[str]) -> Upload:
    if not isinstance(reference, dict):
        raise InvalidType(f"Invalid type for '{param}': expected an object.", param)
    if reference.get("file_id") is not None:
        raise InvalidValue(
            "This server has no Files API: send the image as `image_url` (a base64 data URL).",
            f"{param}.file_id",
        )
    url = reference.get("image_url")
    url_param = f"{param}.image_url"
    if not isinstance(url, str):
        raise InvalidRequest(f"Missing required parameter: '{url_param}'.", url_param)
    if url.startswith("data:"):
        upload = decode_data_url(url, url_param)
        return Upload(
            upload.data,
            upload.filename,
            upload.content_type,
            field="mask" if param == "mask" else "image",
        )
    return await _download(url, url_param, allowed_hosts)


async def _download(url: str, param: str, allowed_hosts: list[str]) -> Upload:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidImageUrl(
            f"Invalid image URL in '{param}': expected a data URL or an http(s) URL.", param
        )
    if host not in {allowed.lower() for allowed in allowed_hosts}:
        # Refusing by default keeps the server from being a proxy into the operator's network.
        raise InvalidImageUrl(
            f"Remote image URLs are not allowed on this server (host '{host}'); send the image "
            "as a base64 data URL, or ask the operator to allow the host.",
            param,
        )
    try:
        async with (
            httpx.AsyncClient(timeout=_REMOTE_TIMEOUT, follow_redirects=False) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise InvalidImageUrl(
                    f"Could not download the image in '{param}': HTTP {response.status_code}.",
                    param,
                )
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data.extend(chunk)
                if len(data) > _MAX_REMOTE_BYTES:
                    raise ImageTooLarge(f"The image at '{param}' is larger than 50 MB.", param)
    except httpx.HTTPError as exc:
        raise InvalidImageUrl(f"Could not download the image in '{param}': {exc}.", param) from exc
    return Upload(
        data=bytes(data),
        filename=parts.path.rsplit("/", 1)[-1] or None,
        content_type=response.headers.get("content-type"),
        field="image",
    )
