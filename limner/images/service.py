"""ImageService: admits generations, edits and variations in the contract's §12 order.

rules → capability → inputs → moderation → usage → limits, then an ImageRun (images/run.py)
renders, finishes and delivers. No HTTP, no torch, no wire shapes.
"""

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from PIL import Image as PILImage

from limner.accounts.keys import Caller
from limner.catalog import Catalog, Operation
from limner.engine.protocol import ImageEngine
from limner.engine.types import BackendInfo, RenderJob, Task
from limner.errors import InvalidRequest, InvalidValue
from limner.images import compose, inputs
from limner.images.access import check_model_access
from limner.images.capabilities import capabilities
from limner.images.finishing import EditSource, OutputStage, enforce
from limner.images.rules import ResolvedRequest, resolve
from limner.images.run import ImageRun
from limner.images.usage import ImageUsage, count_usage
from limner.metering.meter import Charge, Meter
from limner.metering.tiers import TierBook
from limner.moderation.protocol import Moderator, Subject

logger = logging.getLogger(__name__)


class ImageService:
    def __init__(
        self,
        catalog: Catalog,
        engine: ImageEngine,
        moderator: Moderator,
        tiers: TierBook,
        meter: Meter,
    ) -> None:
        self._catalog = catalog
        self._engine = engine
        self._moderator = moderator
        self._outputs = OutputStage(moderator)
        self._tiers = tiers
        self._meter = meter
        # What each backend can do, read from the engine once (deriving twins happens there).
        self._backend_infos: dict[str, BackendInfo] | None = None

    async def generate(
        self, caller: Caller, body: Mapping[str, Any], request_id: str
    ) -> "ImageRun":
        request = resolve("generation", body, self._catalog)
        self._check_access(caller, request)
        self._check_capability(request, images=0)
        return await self._admit(caller, request, EditSource([], None), request_id)

    async def edit(
        self,
        caller: Caller,
        body: Mapping[str, Any],
        images: list[inputs.Upload],
        mask: inputs.Upload | None,
        request_id: str,
        *,
        form: bool,
    ) -> "ImageRun":
        request = resolve("edit", body, self._catalog, form=form)
        self._check_access(caller, request)
        self._check_capability(request, images=len(images))
        source = await asyncio.to_thread(_decode_edit_source, request, images, mask)
        return await self._admit(caller, request, source, request_id)

    async def vary(
        self,
        caller: Caller,
        body: Mapping[str, Any],
        image: inputs.Upload,
        request_id: str,
    ) -> "ImageRun":
        request = resolve("variation", body, self._catalog, form=True)
        self._check_access(caller, request)
        self._check_capability(request, images=1)
        source = await asyncio.to_thread(_decode_edit_source, request, [image], None)
        return await self._admit(caller, request, source, request_id)

    async def call_tool(
        self,
        caller: Caller,
        request: ResolvedRequest,
        images: list[inputs.Upload],
        mask: inputs.Upload | None,
        request_id: str,
    ) -> "ImageRun":
        """One image call a conversation made (the Responses API's image_generation tool),
        resolved by `rules.resolve_tool`: the same checks and admission as the Images API's
        generations (no images) and edits, metered as Responses traffic."""
        self._check_access(caller, request)
        self._check_capability(request, images=len(images))
        source = EditSource([], None)
        if images:
            source = await asyncio.to_thread(_decode_edit_source, request, images, mask)
        return await self._admit(caller, request, source, request_id, source_name=RESPONSES_SOURCE)

    def _check_access(self, caller: Caller, request: ResolvedRequest) -> None:
        """Before any input is decoded or compute spent: verification, then tier."""
        check_model_access(caller, request.entry, self._tiers.table())

    def _infos(self) -> dict[str, BackendInfo]:
        if self._backend_infos is None:
            self._backend_infos = {info.name: info for info in self._engine.backends()}
        return self._backend_infos

    def _backend(self, request: ResolvedRequest) -> BackendInfo:
        return self._infos()[request.backend.name]

    def _check_capability(self, request: ResolvedRequest, images: int) -> None:
        """What the model behind the name cannot do is refused before moderation, usage and
        limits run: a generation for an edit-only model, an edit for a text-only one, more
        input images than it takes."""
        can, model = capabilities(request.entry, self._infos()), request.model
        if images == 0 and can.generate_backend is None:
            raise InvalidRequest(
                f"The model '{model}' only edits images: send an image to /v1/images/edits.",
                "model",
            )
        if images and can.edit_backend is None:
            raise InvalidRequest(
                f"The model '{model}' cannot edit images; it generates from text only.", "image"
            )
        limit = can.max_edit_images
        if images and limit is not None and images > limit:
            raise InvalidValue(
                f"The model '{model}' takes at most {limit} input image(s) per edit; got {images}.",
                "image",
            )

    async def _admit(
        self,
        caller: Caller,
        request: ResolvedRequest,
        source: EditSource,
        request_id: str,
        *,
        source_name: str | None = None,
    ) -> "ImageRun":
        """Everything that may refuse a request before its response starts (so a streaming
        request still gets an ordinary JSON error): moderation of what came in, exact usage,
        budgets and rate limits. The run it returns holds the admission until it is delivered
        or released."""
        # 1. Moderation of what came in, before any compute is spent or any limit counted.
        subject = Subject(request_id, caller.organization_id, request.moderation)
        verdict = await asyncio.to_thread(self._moderator.check_prompt, request.prompt, subject)
        enforce(request, verdict, subject)
        if source.images:
            verdict = await asyncio.to_thread(
                self._moderator.check_images, source.images, "input", subject
            )
            enforce(request, verdict, subject)
        # 2. Usage is exact before generating: prompt tokens, input tiles, the output table.
        usage = await asyncio.to_thread(_count_usage, request, source)
        # 3. Budgets and rate limits, on the exact usage: refused before any compute.
        charge = _charge(caller, request, usage, source_name or _SOURCES[request.operation])
        admitted = await asyncio.to_thread(self._meter.admit, charge)
        job = _job(request, source, self._backend(request), request_id)
        return ImageRun(
            request,
            source,
            job,
            usage,
            admitted,
            subject,
            engine=self._engine,
            outputs=self._outputs,
            meter=self._meter,
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


# input_fidelity, per way of editing. img2img: how much of the schedule re-draws the input
# (less keeps more of it). Instruction edits: the pixel area each reference is given to the
# model at, as a multiple of the working area; more reference tokens carry more of its detail
# (faces, text, logos), at the cost of a longer sequence. Qwen-Image-Edit sizes its condition
# images itself (~1 MP), so there it changes nothing (docs/models/families.md).
_STRENGTH = {"high": 0.5, "low": 0.75}
_REFERENCE_AREA = {"high": 4, "low": 1}
_VARIATION_STRENGTH = 0.7


# The usage records' `source`, as the usage API reports and filters it (metering/reports.py).
_SOURCES = {"generation": "image.generation", "edit": "image.edit", "variation": "image.variation"}
RESPONSES_SOURCE = "responses.image_generation"


def _charge(
    caller: Caller, request: ResolvedRequest, usage: ImageUsage | None, source: str
) -> Charge:
    if caller.project_id is None:
        raise ValueError("model endpoints are only reached with project keys")
    return Charge(
        organization_id=caller.organization_id,
        project_id=caller.project_id,
        api_key_id=caller.key_id,
        tier=caller.tier,
        model=request.model,
        source=source,
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


__all__ = ["EditSource", "ImageRun", "ImageService", "Operation"]
