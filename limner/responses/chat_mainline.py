"""A language model as the mainline: any OpenAI-compatible chat-completions endpoint (vLLM,
Ollama, llama.cpp's server, ...) decides whether to call the image tool, writes its prompt and
the text reply. Offered to the model as one function, `image_generation(prompt)`.

The images an edit takes are chosen as the orchestrator chooses them (mainline.edit_images):
the model decides what to draw, not which pixels to start from.
"""

import json
import logging
from typing import Any

import httpx

from limner.errors import ServerError
from limner.responses.conversation import Conversation, ImageCall, Message
from limner.responses.mainline import MainlineUsage, Orchestrator, Plan, TurnAsk, edit_images

logger = logging.getLogger(__name__)

_SYSTEM = (
    "You are the assistant of an image service. To make an image, or to change the latest "
    "image of this conversation, call the image_generation function with a complete, "
    "self-contained prompt for the image model. Then answer in one short sentence."
)
_TOOL = {
    "type": "function",
    "function": {
        "name": "image_generation",
        "description": "Make an image, or edit the conversation's latest image, from a prompt.",
        "parameters": {
            "type": "object",
            "properties": {"prompt": {"type": "string", "description": "What to draw."}},
            "required": ["prompt"],
        },
    },
}
_FALLBACK_REPLY = "Here is the image."


class ChatMainline:
    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        timeout_seconds: float = 60.0,
    ) -> None:
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._model = model
        self._headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = httpx.Timeout(timeout_seconds)

    async def plan(self, conversation: Conversation, ask: TurnAsk) -> Plan:
        body: dict[str, Any] = {
            "model": self._model or ask.model,
            "messages": _messages(conversation, ask.instructions),
        }
        if ask.may_call:
            body["tools"] = [_TOOL]
            body["tool_choice"] = (
                {"type": "function", "function": {"name": "image_generation"}}
                if ask.required
                else "auto"
            )
        answer = await self._complete(body)
        message = answer["choices"][0]["message"]
        reply = (message.get("content") or "").strip()
        usage = answer.get("usage") or {}
        spent = MainlineUsage(
            int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        )
        prompt = _tool_prompt(message) if ask.may_call else None
        if prompt is None and ask.required:
            # Told to call the tool and did not: the user's own words are the prompt.
            prompt = (await Orchestrator().plan(conversation, ask)).prompt or None
        if prompt is None:
            return Plan(False, "", [], reply, spent)
        images = edit_images(conversation, ask.action)
        return Plan(True, prompt, images, reply or _FALLBACK_REPLY, spent)

    async def _complete(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                response = await client.post(self._url, json=body, headers=self._headers)
            response.raise_for_status()
            answer: dict[str, Any] = response.json()
            answer["choices"][0]["message"]
            return answer
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
            logger.error("the mainline model at %s failed: %s", self._url, exc)
            raise ServerError(
                "The language model behind this server did not answer; try again later."
            ) from exc


def _messages(conversation: Conversation, instructions: str | None) -> list[dict[str, str]]:
    system = _SYSTEM if not instructions else f"{_SYSTEM}\n\n{instructions}"
    messages = [{"role": "system", "content": system}]
    for item in conversation.items:
        if isinstance(item, ImageCall):
            drawn = item.wire.get("revised_prompt") or "an image"
            messages.append({"role": "assistant", "content": f"[image made: {drawn}]"})
        elif isinstance(item, Message):
            text = item.text
            if item.images:
                text = f"{text}\n[{len(item.images)} image(s) attached]".strip()
            role = "system" if item.role == "developer" else item.role
            messages.append({"role": role, "content": text})
    return messages


def _tool_prompt(message: dict[str, Any]) -> str | None:
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        if function.get("name") != "image_generation":
            continue
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except ValueError:
            arguments = {}
        prompt = arguments.get("prompt") if isinstance(arguments, dict) else None
        if isinstance(prompt, str) and prompt.strip():
            return prompt.strip()
    return None
