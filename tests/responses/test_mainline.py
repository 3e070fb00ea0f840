"""The orchestrator's plan: the prompt, the images an edit takes, in order, and the reply."""

import asyncio

from limner.responses.conversation import Conversation, ImageCall, ImagePart, Item, Message
from limner.responses.mainline import Orchestrator, Plan, ToolAction, TurnAsk


def user(text: str, *images: ImagePart) -> Message:
    return Message("msg_" + text, "user", [{"type": "input_text", "text": text}], list(images))


def call(name: str) -> ImageCall:
    return ImageCall("ig_" + name, {}, ImagePart("image/png", "input", data=name.encode()))


def image(name: str) -> ImagePart:
    return ImagePart("image/png", "input", data=name.encode())


def plan(
    history: list[Item],
    turn: list[Item],
    *,
    instructions: str | None = None,
    may_call: bool = True,
    action: ToolAction = "auto",
) -> Plan:
    ask = TurnAsk("gpt-4.1", instructions, may_call, required=False, action=action)
    return asyncio.run(Orchestrator().plan(Conversation(history, turn), ask))


def test_a_first_turn_generates_from_the_latest_user_text() -> None:
    made = plan([], [user("first idea"), user("a red apple")], instructions="Be bold.")
    assert made.call and made.action == "generate" and made.images == []
    assert made.prompt == "Be bold.\n\na red apple"
    assert made.reply


def test_a_later_turn_edits_the_latest_generated_image() -> None:
    made = plan([user("a red apple"), call("one"), user("more"), call("two")], [user("blue")])
    assert made.action == "edit"
    assert [part.data for part in made.images] == [b"two"]


def test_the_turns_own_images_come_first_then_the_latest_generated() -> None:
    made = plan([user("apple"), call("one")], [user("add this hat", image("hat"), image("bow"))])
    assert [part.data for part in made.images] == [b"hat", b"bow", b"one"]


def test_without_a_generated_image_an_earlier_input_image_is_edited() -> None:
    made = plan([user("look", image("photo"))], [user("now crop it")])
    assert [part.data for part in made.images] == [b"photo"]


def test_a_replayed_call_after_the_user_text_still_counts() -> None:
    """The documented "by id" form puts the user message before the image call."""
    made = plan([], [user("make it realistic"), call("one")])
    assert made.prompt == "make it realistic" and [p.data for p in made.images] == [b"one"]


def test_action_generate_and_no_call() -> None:
    assert plan([call("one")], [user("new one")], action="generate").images == []
    declined = plan([], [user("x")], may_call=False)
    assert not declined.call and declined.reply
