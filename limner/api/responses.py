"""Responses routes: `POST /v1/responses` (JSON or server-sent events), its stored responses'
retrieve, delete and input items. The turn itself is limner/responses/."""

import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from limner.api import uploads
from limner.api.deps import CurrentCaller, ResponsesServiceDep
from limner.api.errors import client_error, error_object
from limner.api.middleware import request_id_var
from limner.api.sse import (
    CLIENT_CLOSED_REQUEST,
    named_event,
    started,
    unless_disconnected,
    while_connected,
)
from limner.errors import InvalidValue
from limner.responses.turn import Turn

router = APIRouter(prefix="/v1/responses", tags=["responses"])
logger = logging.getLogger(__name__)


@router.post("")
async def create_response(
    request: Request, caller: CurrentCaller, service: ResponsesServiceDep
) -> Response:
    body = await uploads.json_body(request)
    turn = await service.create(caller, body, request_id_var.get())
    if turn.request.stream:
        # Queued and past its first step (a full queue is still a JSON 503); from here on a
        # failure is an error event, then response.failed.
        if await unless_disconnected(request, started(turn)) is None:
            await turn.abandon()
            return Response(status_code=CLIENT_CLOSED_REQUEST)
        return StreamingResponse(
            while_connected(request, _stream(turn)),
            media_type="text/event-stream",
            headers=turn.headers,
            background=BackgroundTask(turn.abandon),
        )
    try:
        response = await unless_disconnected(request, turn.result())
        if response is None:
            return Response(status_code=CLIENT_CLOSED_REQUEST)
    finally:
        await turn.abandon()  # released unless delivered
    return JSONResponse(response, headers=turn.headers)


@router.get("/{response_id}")
async def retrieve_response(
    request: Request, response_id: str, caller: CurrentCaller, service: ResponsesServiceDep
) -> JSONResponse:
    response = await service.retrieve(caller, response_id)
    if request.query_params.get("stream", "false").lower() == "true":
        raise InvalidValue(
            "Only background responses can be streamed again, and this server runs none.",
            "stream",
        )
    return JSONResponse(response)


@router.delete("/{response_id}")
async def delete_response(
    response_id: str, caller: CurrentCaller, service: ResponsesServiceDep
) -> JSONResponse:
    await service.delete(caller, response_id)
    return JSONResponse({"id": response_id, "object": "response", "deleted": True})


@router.post("/{response_id}/cancel")
async def cancel_response(
    response_id: str, caller: CurrentCaller, service: ResponsesServiceDep
) -> JSONResponse:
    await service.retrieve(caller, response_id)  # an unknown one is a 404 first
    raise InvalidValue(
        "Responses can only be cancelled if they were created with background=true, and this "
        "server runs no background responses.",
    )


@router.get("/{response_id}/input_items")
async def list_input_items(
    request: Request, response_id: str, caller: CurrentCaller, service: ResponsesServiceDep
) -> JSONResponse:
    query: dict[str, Any] = {
        name: request.query_params.get(name) for name in ("after", "before", "limit", "order")
    }
    query["include"] = [
        *request.query_params.getlist("include[]"),
        *request.query_params.getlist("include"),
    ]
    page = await service.input_items(caller, response_id, query)
    return JSONResponse(
        {
            "object": "list",
            "data": page.data,
            "first_id": page.data[0]["id"] if page.data else None,
            "last_id": page.data[-1]["id"] if page.data else None,
            "has_more": page.has_more,
        }
    )


async def _stream(turn: Turn) -> AsyncIterator[bytes]:
    """The turn's events; closing this generator (the client left) closes the turn's, which
    cancels its render: never billed."""
    try:
        async with aclosing(turn.events()) as events:  # type: ignore[type-var]
            async for event in events:
                yield named_event(event)
    except Exception as exc:
        error = client_error(exc)
        body = error_object(error.message, error.type, error.param, error.code)
        for event in await turn.failure(error, body["error"]):
            yield named_event(event)
