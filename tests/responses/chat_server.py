"""A small OpenAI-compatible chat-completions server for the mainline tests, run as its own
process (`python -m uvicorn tests.responses.chat_server:app`). `answer` is the model: it draws
when asked to ("draw", "make", "now"), rewriting the prompt, and otherwise chats. Every request
it receives is appended to $CHAT_LOG as a JSON line, so tests can read what Limner sent."""

import json
import os
from typing import Any

from fastapi import FastAPI, Request

app = FastAPI()


def answer(body: dict[str, Any]) -> dict[str, Any]:
    messages = body["messages"]
    last = next(m["content"] for m in reversed(messages) if m["role"] == "user")
    offered = bool(body.get("tools"))
    forced = isinstance(body.get("tool_choice"), dict)
    wants_image = any(word in last.lower() for word in ("draw", "make", "now"))
    message: dict[str, Any] = {"role": "assistant"}
    if offered and (wants_image or forced):
        arguments = json.dumps({"prompt": f"a watercolour painting of {last.lower()}"})
        message["content"] = "Painted it for you."
        message["tool_calls"] = [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "image_generation", "arguments": arguments},
            }
        ]
    else:
        message["content"] = f"You said: {last}"
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": body["model"],
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": sum(len(m["content"].split()) for m in messages),
            "completion_tokens": len(message["content"].split()),
            "total_tokens": 0,
        },
    }


@app.post("/v1/chat/completions")
async def chat_completions(request: Request) -> dict[str, Any]:
    body = await request.json()
    log = os.environ.get("CHAT_LOG")
    if log:
        with open(log, "a") as out:
            out.write(json.dumps(body) + "\n")
    return answer(body)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
