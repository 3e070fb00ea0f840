"""Images named by reference rather than uploaded: `{image_url}` objects and image URLs (base64
data URLs, or http(s) URLs on hosts the operator allows), read into bounded Uploads."""

from typing import Any
from urllib.parse import urlsplit

import httpx

from limner.errors import ImageTooLarge, InvalidImageUrl, InvalidRequest, InvalidType, InvalidValue
from limner.images.inputs import Upload, decode_data_url

_REMOTE_TIMEOUT = httpx.Timeout(10.0)
_MAX_REMOTE_BYTES = 50 * 1024 * 1024


async def read_reference(
    reference: Any, param: str, allowed_hosts: list[str], *, field: str = "image"
) -> Upload:
    """`{image_url}` (a data URL, or an http(s) URL on an allowed host) or `{file_id}`, at
    `param`; the Upload is named `field` for the decoding errors."""
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
    return await read_image_url(url, url_param, allowed_hosts, field=field)


async def read_image_url(
    url: str, param: str, allowed_hosts: list[str], *, field: str | None = None
) -> Upload:
    """A data URL, decoded, or an http(s) URL on an allowed host, downloaded (bounded)."""
    if url[:5].lower() == "data:":
        upload = decode_data_url(url, param)
        return Upload(upload.data, upload.filename, upload.content_type, field=field or param)
    return await _download(url, param, allowed_hosts, field or param)


async def _download(url: str, param: str, allowed_hosts: list[str], field: str) -> Upload:
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
        field=field,
    )
