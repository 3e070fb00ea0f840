"""Request bodies → plain fields plus bounded file bytes: JSON, multipart, and JSON image URLs."""

import json
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile

from limner.errors import (
    ImageTooLarge,
    InvalidRequest,
    InvalidType,
    InvalidValue,
    UnknownParameter,
)
from limner.images.inputs import Upload
from limner.images.references import read_reference

MAX_IMAGES = 16
_FILE_FIELDS = ("image", "image[]", "mask")


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
        edit.images.append(await read_reference(reference, f"images[{index}]", allowed_hosts))
    if mask_reference is not None:
        edit.mask = await read_reference(mask_reference, "mask", allowed_hosts, field="mask")
    return edit
