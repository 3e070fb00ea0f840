"""The chat-completions mainline when its server is not there: a clear server error."""

import asyncio

import pytest

from limner.errors import ServerError
from limner.responses.chat_mainline import ChatMainline
from limner.responses.conversation import Conversation, Message
from limner.responses.mainline import TurnAsk
from tests.conftest import free_port


def test_an_unreachable_model_is_a_server_error() -> None:
    mainline = ChatMainline(f"http://127.0.0.1:{free_port()}/v1", timeout_seconds=2)
    conversation = Conversation(
        [], [Message("msg_1", "user", [{"type": "input_text", "text": "x"}])]
    )
    ask = TurnAsk("gpt-4.1", None, may_call=True, required=False, action="auto")
    with pytest.raises(ServerError, match="language model"):
        asyncio.run(mainline.plan(conversation, ask))
