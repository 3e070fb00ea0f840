"""ImageService: generations, edits and variations in the contract's §12 order.

rules → inputs → moderation → usage → engine → outputs → response. No HTTP, no torch.
"""

import asyncio
import base64
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from PIL import Image as PILImage

from limner.accounts.keys import Caller
from limner.catalog import Catalog
from limner.engine.protocol import ImageEngine
from limner.engine.types import Rendered, RenderJob, Task
from limner.errors import (
    ContentPolicyViolation,
    InvalidValue,
    LimnerError,
    ModerationBlocked,
    ServerError,
)
from limner.images import compose, inputs, outputs, schemas
from limner.images.access import check_model_access
from limner.images.rules import Operation, ResolvedRequest, resolve
from limner.images.usage import ImageUsage, count_usage
from limner.metering.meter import Charge, Meter
from limner.metering.tiers import TierBook
from limner.moderation.protocol import Moderator, Verdict
from limner.storage.blobs import BlobStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageResult:
    """A delivered request: the wire response plus what the transport may want to expose."""

    response: schemas.ImagesResponse
    request: ResolvedRequest
    usage: ImageUsage | None
    # x-ratelimit-* values after this request was admitted.
    headers: dict[str, str]


@dataclass(frozen=True)
class EditSource:
    """Decoded edit inputs: every image, and the mask in engine convention (white = repaint)."""

    images: list[PILImage.Image]
    mask: PILImage.Image | None


class ImageService:
    def __init__(
        self,
        catalog: Catalog,
        engine: ImageEngine,
        moderator: Moderator,
        blobs: BlobStore,
        tiers: TierBook,
        meter: Meter,
    ) -> None:
        self._catalog = catalog
        self._engine = engine
        self._moderator = moderator
        self._blobs = blobs
        self._tiers = tiers
        self._meter = meter

    async def generate(
        self, caller: Caller, body: Mapping[str, Any], url_base: str, request_id: str
    ) -> ImageResult:
        request = resolve("generation", body, self._catalog)
        self._check_access(caller, request)
        return await self._run(caller, request, EditSource([], None), url_base, request_id)

    async def edit(
        self,
        caller: Caller,
        body: Mapping[str, Any],
        images: list[inputs.Upload],
        mask: inputs.Upload | None,
        url_base: str,
        request_id: str,
        *,
        form: bool,
    ) -> ImageResult:
        request = resolve("edit", body, self._catalog, form=form)
        self._check_access(caller, request)
        source = await asyncio.to_thread(_decode_edit_source, request, images, mask)
        return await self._run(caller, request, source, url_base, request_id)

    async def vary(
        self,
        caller: Caller,
        body: Mapping[str, Any],
        image: inputs.Upload,
        url_base: str,
        request_id: str,
    ) -> ImageResult:
        request = resolve("variation", body, self._catalog, form=True)
        self._check_access(caller, request)
        source = await asyncio.to_thread(_decode_edit_source, request, [image], None)
        return await self._run(caller, request, source, url_base, request_id)

    def _check_access(self, caller: Caller, request: ResolvedRequest) -> None:
        """Before any input is decoded or compute spent: verification, then tier."""
        check_model_access(caller, request.entry, self._tiers.table())

    async def _run(
        self,
        caller: Caller,
        request: ResolvedRequest,
        source: EditSource,
        url_base: str,
        request_id: str,
    ) -> ImageResult:
        if request.stream:
            raise InvalidValue(
                "Streaming (stream=true) is not available on this server yet; send the request "
                "without `stream` to receive the finished images.",
                "stream",
            )
        # 1. Moderation of what came in, before any compute is spent.
        self._enforce(request, self._moderator.check_prompt(request.prompt, request.moderation))
        if source.images:
            self._enforce(
                request,
                self._moderator.check_images(source.images, "input", request.moderation),
            )
        # 2. Usage is exact before generating: prompt tokens, input tiles, the output table.
        usage = await asyncio.to_thread(_count_usage, request, source)
        # 3. Budgets and rate limits, on the exact usage: refused before any compute.
        admitted = await asyncio.to_thread(self._meter.admit, _charge(caller, request, usage))
        try:
            # 4. Render, then finish the images at the requested size, background and format.
            logger.info(
                "rendering", extra={"model": request.model, "n": request.n, "caller": caller.key_id}
            )
            rendered = await self._render(_job(request, source))
            finished = await asyncio.to_thread(_finish, request, source, rendered)
            self._enforce(
                request, self._moderator.check_images(finished, "output", request.moderation)
            )
            encoded = await asyncio.to_thread(_encode_all, request, finished)
            response = self._respond(request, encoded, usage, url_base)
        except BaseException:
            # Failed, moderated or cancelled: nothing delivered, nothing billed.
            self._meter.release(admitted)
            raise
        # 5. Delivered: one usage record, once.
        await asyncio.to_thread(self._meter.deliver, admitted, request_id)
        return ImageResult(response, request, usage, admitted.headers)

    async def _render(self, job: RenderJob) -> list[PILImage.Image]:
        images: list[PILImage.Image] | None = None
        try:
            async for event in self._engine.stream(job):
                if isinstance(event, Rendered):
                    images = event.images
        except LimnerError:
            raise
        except Exception as exc:
            logger.exception("engine failed on backend %s", job.backend)
            raise ServerError(
                "The server had an error while processing your request. Sorry about that!"
            ) from exc
        if images is None or len(images) != job.n:
            raise ServerError("The engine returned no images for this request.")
        return images

    def _enforce(self, request: ResolvedRequest, verdict: Verdict) -> None:
        if verdict.allowed:
            return
        logger.info("moderation blocked", extra={"stage": verdict.stage, "check": verdict.check})
        if request.family == "dall-e":
            raise ContentPolicyViolation(
                "Your request was rejected as a result of our safety system. Your prompt may "
                "contain text that is not allowed by our safety system."
            )
        raise ModerationBlocked(
            "Your request was rejected by the safety system. If you believe this is an error, "
            "contact your Limner operator."
        )

    def _respond(
        self,
        request: ResolvedRequest,
        encoded: list[bytes],
        usage: ImageUsage | None,
        url_base: str,
    ) -> schemas.ImagesResponse:
        revised = request.prompt if request.entry.rules == "dall-e-3" else None
        if request.response_format == "url":
            data = [
                schemas.Image(url=self._url(image, request, url_base), revised_prompt=revised)
                for image in encoded
            ]
        else:
            data = [
                schemas.Image(b64_json=base64.b64encode(image).decode(), revised_prompt=revised)
                for image in encoded
            ]
        response = schemas.ImagesResponse(created=int(time.time()), data=data)
        if request.family != "gpt-image" or usage is None:
            return response
        return response.model_copy(
            update={
                "background": request.background,
                "output_format": request.output_format,
                "quality": request.quality,
                "size": request.size,
                "usage": schemas.ImagesUsage.model_validate(usage.to_wire()),
            }
        )

    def _url(self, image: bytes, request: ResolvedRequest, url_base: str) -> str:
        signed = self._blobs.save(image, request.output_format)
        return (
            f"{url_base.rstrip('/')}/v1/images/files/{signed.name}"
            f"?expires={signed.expires}&signature={signed.signature}"
        )


def _decode_edit_source(
    request: ResolvedRequest, uploads: list[inputs.Upload], mask: inputs.Upload | None
) -> EditSource:
    limits = inputs.GPT_IMAGE_LIMITS if request.family == "gpt-image" else inputs.DALLE2_LIMITS
    images = inputs.decode_images(uploads, limits)
    if mask is not None:
        return EditSource(images, inputs.decode_mask(mask, images[0]))
    if request.family == "dall-e":
        # DALL·E 2: without a mask, the image's own transparent pixels mark the region to edit.
        return EditSource(images, inputs.mask_from_image_alpha(images[0]))
    return EditSource(images, None)


def _count_usage(request: ResolvedRequest, source: EditSource) -> ImageUsage | None:
    if request.family != "gpt-image":
        return None  # DALL·E is priced per image; its responses carry no usage.
    sizes = [image.size for image in source.images]
    return count_usage(request.prompt, sizes, request.size, request.quality, request.n)


# How much an img2img run may depart from its input, per input_fidelity.
_STRENGTH = {"high": 0.5, "low": 0.75}
_VARIATION_STRENGTH = 0.7


_SOURCES = {"generation": "image.generation", "edit": "image.edit", "variation": "image.variation"}


def _charge(caller: Caller, request: ResolvedRequest, usage: ImageUsage | None) -> Charge:
    if caller.project_id is None:
        raise ValueError("model endpoints are only reached with project keys")
    return Charge(
        organization_id=caller.organization_id,
        project_id=caller.project_id,
        api_key_id=caller.key_id,
        tier=caller.tier,
        model=request.model,
        source=_SOURCES[request.operation],
        size=request.size,
        quality=request.wire_quality,
        images=request.n,
        text_input_tokens=usage.text_tokens if usage else 0,
        image_input_tokens=usage.image_tokens if usage else 0,
        image_output_tokens=usage.output_tokens if usage else 0,
    )


def _job(request: ResolvedRequest, source: EditSource) -> RenderJob:
    backend = request.entry.served.backend
    size = (request.working_width, request.working_height)
    task: Task = "text2img"
    init = mask = None
    strength = _STRENGTH[request.input_fidelity]
    if source.images:
        init = compose.init_image(source.images, has_mask=source.mask is not None).resize(size)
        task = "img2img"
        if request.operation == "variation":
            strength = _VARIATION_STRENGTH
    if source.mask is not None:
        mask = source.mask.resize(size, PILImage.Resampling.NEAREST)
        task, strength = "inpaint", 1.0
    return RenderJob(
        backend=backend.name,
        prompt=request.prompt,
        n=request.n,
        width=size[0],
        height=size[1],
        steps=request.steps,
        seed=request.seed,
        task=task,
        guidance_scale=backend.guidance_scale,
        init_image=init,
        mask=mask,
        strength=strength,
    )


def _finish(
    request: ResolvedRequest, source: EditSource, rendered: list[PILImage.Image]
) -> list[PILImage.Image]:
    finished = []
    original = compose.init_image(source.images, has_mask=True) if source.mask else None
    for image in rendered:
        image = outputs.fit_to_size(image, request.width, request.height)
        if original is not None and source.mask is not None:
            image = outputs.composite_masked(original, image, source.mask)
        finished.append(outputs.apply_background(image, request.background))
    return finished


def _encode_all(request: ResolvedRequest, images: list[PILImage.Image]) -> list[bytes]:
    return [
        outputs.encode(image, request.output_format, request.output_compression) for image in images
    ]


__all__ = ["EditSource", "ImageResult", "ImageService", "Operation"]
