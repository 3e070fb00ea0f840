"""ImageService: generations, edits and variations in the contract's §12 order.

rules → inputs → moderation → usage → engine → outputs → response. No HTTP, no torch.
"""

import asyncio
import base64
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from contextlib import aclosing, contextmanager
from dataclasses import dataclass
from typing import Any

from PIL import Image as PILImage

from limner import metrics
from limner.accounts.keys import Caller
from limner.catalog import Catalog, Operation
from limner.engine.protocol import ImageEngine
from limner.engine.types import (
    BackendInfo,
    EngineEvent,
    Partial,
    RenderCancelled,
    Rendered,
    RenderJob,
    Task,
)
from limner.errors import (
    ContentPolicyViolation,
    InvalidRequest,
    InvalidValue,
    LimnerError,
    ModerationBlocked,
    ServerError,
    ServerOverloaded,
)
from limner.images import compose, inputs, outputs, schemas
from limner.images.access import check_model_access
from limner.images.rules import ResolvedRequest, resolve
from limner.images.usage import ImageUsage, count_usage
from limner.metering.meter import Admitted, Charge, Meter
from limner.metering.tiers import TierBook
from limner.moderation.protocol import Moderator, Subject, Verdict
from limner.storage.blobs import BlobStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageResult:
    """A delivered request: the wire response, and each image as encoded for it (what a
    stream's completed events carry). Its request, usage and headers are the run's."""

    response: schemas.ImagesResponse
    encoded: list[bytes]


@dataclass(frozen=True)
class PartialImage:
    """One image's intermediate state, finished and encoded as the final one will be.
    `index` is the 0-based partial number; `image` which of the request's n images."""

    index: int
    image: int
    data: bytes


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
        self.engine = engine
        self._moderator = moderator
        self._blobs = blobs
        self._tiers = tiers
        self.meter = meter
        # What each backend can do, read from the engine once (deriving twins happens there).
        self._backend_infos: dict[str, BackendInfo] | None = None

    async def generate(
        self, caller: Caller, body: Mapping[str, Any], url_base: str, request_id: str
    ) -> "ImageRun":
        request = resolve("generation", body, self._catalog)
        self._check_access(caller, request)
        self._check_capability(request, images=0)
        return await self._admit(caller, request, EditSource([], None), url_base, request_id)

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
    ) -> "ImageRun":
        request = resolve("edit", body, self._catalog, form=form)
        self._check_access(caller, request)
        self._check_capability(request, images=len(images))
        source = await asyncio.to_thread(_decode_edit_source, request, images, mask)
        return await self._admit(caller, request, source, url_base, request_id)

    async def vary(
        self,
        caller: Caller,
        body: Mapping[str, Any],
        image: inputs.Upload,
        url_base: str,
        request_id: str,
    ) -> "ImageRun":
        request = resolve("variation", body, self._catalog, form=True)
        self._check_access(caller, request)
        self._check_capability(request, images=1)
        source = await asyncio.to_thread(_decode_edit_source, request, [image], None)
        return await self._admit(caller, request, source, url_base, request_id)

    def _check_access(self, caller: Caller, request: ResolvedRequest) -> None:
        """Before any input is decoded or compute spent: verification, then tier."""
        check_model_access(caller, request.entry, self._tiers.table())

    def _backend(self, request: ResolvedRequest) -> BackendInfo:
        if self._backend_infos is None:
            self._backend_infos = {info.name: info for info in self.engine.backends()}
        return self._backend_infos[request.backend.name]

    def _check_capability(self, request: ResolvedRequest, images: int) -> None:
        """What the model behind the name cannot do is refused before moderation, usage and
        limits run: a generation for an edit-only model, an edit for a text-only one, more
        input images than it takes."""
        info, model = self._backend(request), request.model
        if images == 0 and "text2img" not in info.tasks:
            raise InvalidRequest(
                f"The model '{model}' only edits images: send an image to /v1/images/edits.",
                "model",
            )
        if images and info.edit_kind == "none":
            raise InvalidRequest(
                f"The model '{model}' cannot edit images; it generates from text only.", "image"
            )
        limit = info.max_edit_images
        if limit is not None and images > limit:
            raise InvalidValue(
                f"The model '{model}' takes at most {limit} input image(s) per edit; got {images}.",
                "image",
            )

    async def _admit(
        self,
        caller: Caller,
        request: ResolvedRequest,
        source: EditSource,
        url_base: str,
        request_id: str,
    ) -> "ImageRun":
        """Everything that may refuse a request before its response starts (so a streaming
        request still gets an ordinary JSON error): moderation of what came in, exact usage,
        budgets and rate limits. The run it returns holds the admission until it is delivered
        or released."""
        # 1. Moderation of what came in, before any compute is spent or any limit counted.
        subject = Subject(request_id, caller.organization_id, request.moderation)
        verdict = await asyncio.to_thread(self._moderator.check_prompt, request.prompt, subject)
        self._enforce(request, verdict, subject)
        if source.images:
            verdict = await asyncio.to_thread(
                self._moderator.check_images, source.images, "input", subject
            )
            self._enforce(request, verdict, subject)
        # 2. Usage is exact before generating: prompt tokens, input tiles, the output table.
        usage = await asyncio.to_thread(_count_usage, request, source)
        # 3. Budgets and rate limits, on the exact usage: refused before any compute.
        admitted = await asyncio.to_thread(self.meter.admit, _charge(caller, request, usage))
        job = _job(request, source, self._backend(request), request_id)
        return ImageRun(self, request, source, job, usage, admitted, subject, url_base)

    async def _partial(self, run: "ImageRun", partial: Partial) -> list[PartialImage]:
        encoded = await self._checked_output(run, partial.images)
        return [PartialImage(partial.index, i, data) for i, data in enumerate(encoded)]

    async def _complete(self, run: "ImageRun", rendered: list[PILImage.Image]) -> ImageResult:
        encoded = await self._checked_output(run, rendered)
        response = self._respond(run.request, encoded, run.usage, run.url_base)
        # Delivered: one usage record, once.
        await asyncio.to_thread(self.meter.deliver, run.admitted, run.subject.request_id)
        metrics.IMAGES_GENERATED.labels(run.request.model).inc(len(encoded))
        return ImageResult(response, encoded)

    async def _checked_output(self, run: "ImageRun", images: list[PILImage.Image]) -> list[bytes]:
        """Rendered images (final or partial) finished at the requested size, background and
        format, after the output check: a refused image is never encoded, stored or returned."""
        finished = await asyncio.to_thread(_finish, run.request, run.source, images)
        if run.request.backend.moderate_outputs:
            verdict = await asyncio.to_thread(
                self._moderator.check_images, finished, "output", run.subject
            )
            self._enforce(run.request, verdict, run.subject)
        # One thread per image: the encoders release the GIL, and a 1024x1024 PNG takes ~45 ms.
        request = run.request
        encodes = (
            asyncio.to_thread(
                outputs.encode, image, request.output_format, request.output_compression
            )
            for image in finished
        )
        return list(await asyncio.gather(*encodes))

    def _enforce(self, request: ResolvedRequest, verdict: Verdict, subject: Subject) -> None:
        # The moderator has already logged the decision with its request id.
        if verdict.allowed:
            return
        if request.family == "dall-e":
            raise ContentPolicyViolation(
                "Your request was rejected as a result of our safety system. Your prompt may "
                "contain text that is not allowed by our safety system."
            )
        # OpenAI's wording, with its 2026 suffix naming the categories; the operator can look
        # the decision up by request id (GET /v1/limner/moderation/decisions).
        raise ModerationBlocked(
            "Your request was rejected by the safety system. If you believe this is an error, "
            f"contact your Limner operator and include the request ID {subject.request_id}. "
            f"safety_violations=[{', '.join(verdict.categories)}]."
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


class ImageRun:
    """An admitted request. `start()` queues its render; iterating `events()` runs it: partial
    images as the engine offers them, then the result, delivered and billed. Leaving early (a
    client gone, an error) cancels the render at its next step and releases the admission:
    never billed."""

    def __init__(
        self,
        service: ImageService,
        request: ResolvedRequest,
        source: EditSource,
        job: RenderJob,
        usage: ImageUsage | None,
        admitted: Admitted,
        subject: Subject,
        url_base: str,
    ) -> None:
        self.request = request
        self.source = source
        self.job = job
        self.usage = usage
        self.admitted = admitted
        self.subject = subject
        self.url_base = url_base
        self._service = service
        self._stream: AsyncIterator[EngineEvent] | None = None
        self._first: EngineEvent | None = None
        self._settled = False

    @property
    def headers(self) -> dict[str, str]:
        """x-ratelimit-* as admitted, and the seed that reproduces the images."""
        return {**self.admitted.headers, "x-limner-seed": str(self.request.seed)}

    async def start(self) -> None:
        """Queue the render and wait for its first step. A full queue (503, retryable) refuses
        here, while a streaming client can still be answered with a JSON error."""
        if self._stream is not None:
            return
        self._stream = self._service.engine.stream(self.job)
        try:
            with _engine_errors(self.request):
                self._first = await anext(self._stream, None)
        except BaseException:
            await self.abandon()
            raise

    async def events(self) -> AsyncGenerator[PartialImage | ImageResult, None]:
        service = self._service
        try:
            await self.start()
            assert self._stream is not None
            rendered: list[PILImage.Image] | None = None
            with _engine_errors(self.request):
                async for event in _chain(self._first, self._stream):
                    if isinstance(event, Partial):
                        for partial in await service._partial(self, event):
                            yield partial
                    elif isinstance(event, Rendered):
                        rendered = event.images
            if rendered is None or len(rendered) != self.request.n:
                raise ServerError("The engine returned no images for this request.")
            result = await service._complete(self, rendered)
            self._settled = True  # delivered and billed: nothing to release
            yield result
        finally:
            await self.abandon()

    async def abandon(self) -> None:
        """Unless delivered, release the admission; stop the render (at its next step)."""
        if not self._settled:
            self._settled = True
            # Failed, moderated or cancelled: nothing delivered, nothing billed. Released
            # before anything is awaited, so a cancelled task cannot skip it.
            self._service.meter.release(self.admitted)
        if self._stream is not None:
            # Closing the engine's stream early is what cancels the render.
            close = getattr(self._stream, "aclose", None)
            if close is not None:
                await close()

    async def result(self) -> ImageResult:
        """The non-streaming path: the same events, drained; partials are not asked for."""
        async with aclosing(self.events()) as events:
            async for event in events:
                if isinstance(event, ImageResult):
                    return event
        raise ServerError("The request finished without a result.")


async def _chain(
    first: EngineEvent | None, rest: AsyncIterator[EngineEvent]
) -> AsyncIterator[EngineEvent]:
    if first is not None:
        yield first
    async for event in rest:
        yield event


@contextmanager
def _engine_errors(request: ResolvedRequest) -> Iterator[None]:
    """What the engine raises, as a client may see it: its own errors as they are, a render
    stopped by shutdown as a retryable 503, anything else as a logged 500."""
    try:
        yield
    except LimnerError:
        raise
    except RenderCancelled as exc:
        raise ServerOverloaded(
            "The server is shutting down; retry the request.",
            headers={"retry-after": "1", "retry-after-ms": "1000"},
        ) from exc
    except Exception as exc:
        logger.exception("engine failed on backend %s", request.backend.name)
        raise ServerError(
            "The server had an error while processing your request. Sorry about that!"
        ) from exc


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


# input_fidelity, per way of editing. img2img: how much of the schedule re-draws the input
# (less keeps more of it). Instruction edits: the pixel area each reference is given to the
# model at, as a multiple of the working area; more reference tokens carry more of its detail
# (faces, text, logos), at the cost of a longer sequence. Qwen-Image-Edit sizes its condition
# images itself (~1 MP), so there it changes nothing (docs/models/families.md).
_STRENGTH = {"high": 0.5, "low": 0.75}
_REFERENCE_AREA = {"high": 4, "low": 1}
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


def _job(
    request: ResolvedRequest, source: EditSource, backend: BackendInfo, request_id: str
) -> RenderJob:
    spec = request.backend
    size = (request.working_width, request.working_height)
    task: Task = "text2img"
    init = mask = None
    references: tuple[PILImage.Image, ...] = ()
    strength = _STRENGTH[request.input_fidelity]
    native_edit = backend.edit_kind == "instruct"
    if source.images and native_edit and not (source.mask and "inpaint" in backend.tasks):
        # The model takes the inputs themselves; a mask without an inpaint twin is honoured
        # when finishing (pixels outside it come back unchanged).
        task = "edit"
        area = size[0] * size[1] * _REFERENCE_AREA[request.input_fidelity]
        references = tuple(
            compose.reference(image, area)
            for image in (source.images[:1] if source.mask else source.images)
        )
    elif source.images:
        init = compose.init_image(source.images, has_mask=source.mask is not None).resize(size)
        task = "img2img"
        if request.operation == "variation":
            strength = _VARIATION_STRENGTH
        if source.mask is not None:
            mask = source.mask.resize(size, PILImage.Resampling.NEAREST)
            task, strength = "inpaint", 1.0
    return RenderJob(
        backend=spec.name,
        prompt=request.prompt,
        n=request.n,
        width=size[0],
        height=size[1],
        steps=request.steps,
        seed=request.seed,
        task=task,
        guidance_scale=spec.guidance_scale,
        init_image=init,
        reference_images=references,
        mask=mask,
        strength=strength,
        request_id=request_id,
        # Partials cost a decode, a finish and a check each: only a stream asks for them.
        partial_images=request.partial_images if request.stream else 0,
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


__all__ = ["EditSource", "ImageResult", "ImageService", "Operation"]
