"""The mainline model's part of a turn: whether to call the image tool, with which prompt and
images, and the text reply. Limner runs no language model; `Orchestrator` plays the part by
rule (responses-api.md §4.5), behind a seam a language model could fill.
"""

from dataclasses import dataclass
from typing import Literal, Protocol

from limner.responses.conversation import Conversation, ImagePart

Action = Literal["generate", "edit"]


@dataclass(frozen=True)
class MainlineUsage:
    """Tokens the mainline model spent on the turn (the response's `usage`)."""

    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class Plan:
    """`call`: make one image call with `prompt` (its `revised_prompt`) over `images` (an edit
    when there are any); `reply` is the assistant message that ends the output."""

    call: bool
    prompt: str
    images: list[ImagePart]
    reply: str
    usage: MainlineUsage = MainlineUsage()

    @property
    def action(self) -> Action:
        return "edit" if self.images else "generate"


ToolAction = Literal["generate", "edit", "auto"]


@dataclass(frozen=True)
class TurnAsk:
    """What the mainline is asked to decide: `may_call` (the tool is offered), `required`
    (it must be called), `action` (the tool's), and the request's `model` name."""

    model: str
    instructions: str | None
    may_call: bool
    required: bool
    action: ToolAction


class Mainline(Protocol):
    async def plan(self, conversation: Conversation, ask: TurnAsk) -> Plan: ...


class Orchestrator:
    """Every turn that may call the tool calls it once. The prompt is the latest user message's
    text, after `instructions`; the images are those `edit_images` picks."""

    async def plan(self, conversation: Conversation, ask: TurnAsk) -> Plan:
        message = conversation.last_user_message()
        text = message.text.strip() if message is not None else ""
        prompt = "\n\n".join(part for part in (ask.instructions, text) if part and part.strip())
        if not ask.may_call:
            return Plan(False, prompt, [], _NO_CALL_REPLY)
        images = edit_images(conversation, ask.action)
        return Plan(True, prompt, images, _EDIT_REPLY if images else _GENERATE_REPLY)


def edit_images(conversation: Conversation, action: ToolAction) -> list[ImagePart]:
    """The images a call edits: the latest user message's input images, then the latest image
    of the conversation (its last generated image, else an earlier input image); none when
    the tool's action is `generate`."""
    if action == "generate":
        return []
    message = conversation.last_user_message()
    images = list(message.images) if message is not None else []
    latest = conversation.latest_image(before=message)
    if latest is not None and all(latest is not image for image in images):
        images.append(latest)
    return images


_GENERATE_REPLY = "Here is the image I made for your request."
_EDIT_REPLY = "Here is the edited image."
_NO_CALL_REPLY = (
    "This server answers with images only: send the request with the image_generation tool "
    "and a tool_choice other than 'none'."
)
