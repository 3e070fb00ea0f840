"""The moderation seam: the service asks a Moderator about prompts and images.

The core ships `AllowAll`; the moderation issue plugs real checks in behind the same Protocol.
"""

from dataclasses import dataclass
from typing import Literal, Protocol

from PIL import Image

Stage = Literal["prompt", "input", "output"]


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    stage: Stage
    check: str = ""
    categories: tuple[str, ...] = ()
    score: float = 0.0


class Moderator(Protocol):
    def check_prompt(self, prompt: str, level: Literal["auto", "low"]) -> Verdict: ...

    def check_images(
        self, images: list[Image.Image], stage: Stage, level: Literal["auto", "low"]
    ) -> Verdict: ...


class AllowAll:
    """No checks: what an operator gets until a moderator is configured."""

    def check_prompt(self, prompt: str, level: Literal["auto", "low"]) -> Verdict:  # noqa: ARG002
        return Verdict(allowed=True, stage="prompt", check="allow_all")

    def check_images(
        self,
        images: list[Image.Image],  # noqa: ARG002
        stage: Stage,
        level: Literal["auto", "low"],  # noqa: ARG002
    ) -> Verdict:
        return Verdict(allowed=True, stage=stage, check="allow_all")
