"""From rendered pictures to the bytes a client gets, and the refusals on the way.

Rendered images (final or partial) are fitted to the requested size, have the input put back
outside an edit's mask, get their background, pass the output check, and are encoded. A refused
image is never encoded, stored or returned.
"""

import asyncio
from dataclasses import dataclass

from PIL import Image as PILImage

from limner.errors import ContentPolicyViolation, ModerationBlocked
from limner.images import compose, outputs
from limner.images.rules import ResolvedRequest
from limner.moderation.protocol import Moderator, Subject, Verdict


@dataclass(frozen=True)
class EditSource:
    """Decoded edit inputs: every image, and the mask in engine convention (white = repaint)."""

    images: list[PILImage.Image]
    mask: PILImage.Image | None


def enforce(request: ResolvedRequest, verdict: Verdict, subject: Subject) -> None:
    """Refuse what the moderator refused, in the words of the request's model family."""
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


class OutputStage:
    """Finishes, checks and encodes a run's images."""

    def __init__(self, moderator: Moderator) -> None:
        self._moderator = moderator

    async def encode(
        self,
        request: ResolvedRequest,
        source: EditSource,
        rendered: list[PILImage.Image],
        subject: Subject,
    ) -> list[bytes]:
        finished = await asyncio.to_thread(_finish, request, source, rendered)
        if request.backend.moderate_outputs:
            verdict = await asyncio.to_thread(
                self._moderator.check_images, finished, "output", subject
            )
            enforce(request, verdict, subject)
        # One thread per image: the encoders release the GIL, and a 1024x1024 PNG takes ~45 ms.
        encodes = (
            asyncio.to_thread(
                outputs.encode, image, request.output_format, request.output_compression
            )
            for image in finished
        )
        return list(await asyncio.gather(*encodes))


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
