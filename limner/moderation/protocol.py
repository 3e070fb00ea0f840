"""The moderation seam: the service asks a Moderator about prompts and images.

The core ships `AllowAll`; `limner.moderation.moderator.PolicyModerator` plugs the real checks in
behind the same Protocol. Checks themselves are a second, smaller seam: a `PromptCheck` or an
`ImageCheck` only scores; the organization's policy decides what a score means.
"""

from dataclasses import dataclass
from typing import Literal, Protocol

from PIL import Image

Stage = Literal["prompt", "input", "output"]
Level = Literal["auto", "low"]
Severity = Literal["mild", "severe"]
CATEGORIES = ("sexual", "minors", "violence", "hate", "self_harm")


@dataclass(frozen=True)
class Subject:
    """Whose request is being checked, and how strictly (the request's `moderation`)."""

    request_id: str
    organization_id: str
    level: Level = "auto"


@dataclass(frozen=True)
class Signal:
    """One check's score for one category. `mild` signals block only at `auto`; `severe`
    signals block at both levels, each against the policy's threshold for that level."""

    check: str
    category: str
    severity: Severity
    score: float
    # What matched (a term, a detector class), for the decision log; never image data.
    detail: str = ""


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    stage: Stage
    check: str = ""
    categories: tuple[str, ...] = ()
    score: float = 0.0


class PromptCheck(Protocol):
    name: str

    def score_prompt(self, prompt: str) -> list[Signal]: ...


class ImageCheck(Protocol):
    name: str

    def score_images(self, images: list[Image.Image]) -> list[Signal]: ...


class Moderator(Protocol):
    def check_prompt(self, prompt: str, subject: Subject) -> Verdict: ...

    def check_images(
        self, images: list[Image.Image], stage: Stage, subject: Subject
    ) -> Verdict: ...


class AllowAll:
    """No checks: what an operator gets with moderation turned off."""

    def check_prompt(self, prompt: str, subject: Subject) -> Verdict:  # noqa: ARG002
        return Verdict(allowed=True, stage="prompt", check="allow_all")

    def check_images(
        self,
        images: list[Image.Image],  # noqa: ARG002
        stage: Stage,
        subject: Subject,  # noqa: ARG002
    ) -> Verdict:
        return Verdict(allowed=True, stage=stage, check="allow_all")
