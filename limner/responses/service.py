"""ResponsesService: a Responses request → an admitted Turn, and the stored responses' reads.

request → previous chain → input items → the mainline's plan → the tool's rules → the image
call's admission (ImageService.call_tool: access, capability, inputs, moderation, usage,
limits). Everything that can refuse does so before the turn starts, so a refused request
stores nothing and bills nothing.
"""

import asyncio
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal, cast

from limner.accounts.keys import Caller
from limner.catalog import Catalog
from limner.errors import (
    InvalidRequest,
    InvalidType,
    InvalidValue,
    LimnerError,
    PreviousResponseNotFound,
    UnknownParameter,
)
from limner.images.inputs import Upload, decode_data_url
from limner.images.references import read_image_url
from limner.images.rules import resolve_tool
from limner.images.run import ImageRun
from limner.images.service import ImageService
from limner.responses.conversation import Conversation, ImagePart, Item, image_url, read_input
from limner.responses.mainline import Mainline, Orchestrator, Plan, TurnAsk
from limner.responses.request import TurnRequest, parse_request
from limner.responses.store import ItemsPage, ResponseStore, Scope
from limner.responses.turn import Turn, TurnRecord

_ACTIONS = ("generate", "edit", "auto")


class ResponsesService:
    def __init__(
        self,
        catalog: Catalog,
        images: ImageService,
        store: ResponseStore,
        allowed_image_hosts: list[str],
        mainline: Mainline | None = None,
    ) -> None:
        self._catalog = catalog
        self._images = images
        self._store = store
        self._allowed_hosts = allowed_image_hosts
        self._mainline = mainline or Orchestrator()

    async def create(self, caller: Caller, body: Mapping[str, Any], request_id: str) -> Turn:
        request = parse_request(body, self._catalog)
        scope = _scope(caller)
        history: list[Item] = []
        if request.previous_response_id is not None:
            chain = await asyncio.to_thread(self._store.chain, scope, request.previous_response_id)
            if chain is None:
                raise PreviousResponseNotFound(request.previous_response_id)
            history = chain
        turn_items = await read_input(
            request.input, history, self._store.lookup(scope), self._fetch
        )
        conversation = Conversation(history, turn_items)
        ask = TurnAsk(
            model=request.model,
            instructions=request.instructions,
            may_call=request.may_call,
            required=request.call_mode == "required",
            action=_action(request),
        )
        plan = await self._mainline.plan(conversation, ask)
        run = None
        if plan.call:
            run = await self._call(caller, request, plan, scope, request_id)
        return Turn(request, plan, run, TurnRecord(self._store, scope, turn_items))

    async def retrieve(self, caller: Caller, response_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(self._store.response, _scope(caller), response_id)

    async def delete(self, caller: Caller, response_id: str) -> None:
        await asyncio.to_thread(self._store.delete, _scope(caller), response_id)

    async def input_items(
        self, caller: Caller, response_id: str, query: Mapping[str, Any]
    ) -> ItemsPage:
        limit = _limit(query.get("limit"))
        order = query.get("order") or "desc"
        if order not in ("asc", "desc"):
            raise InvalidValue(
                f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.", "order"
            )
        include = query.get("include") or []
        return await asyncio.to_thread(
            self._store.input_items,
            _scope(caller),
            response_id,
            after=query.get("after"),
            before=query.get("before"),
            limit=limit,
            order=cast(Literal["asc", "desc"], order),
            image_urls="message.input_image.image_url" in include,
        )

    async def _fetch(self, url: str, param: str) -> Upload:
        return await read_image_url(url, param, self._allowed_hosts)

    async def _call(
        self, caller: Caller, request: TurnRequest, plan: Plan, scope: Scope, request_id: str
    ) -> ImageRun:
        assert request.tool is not None
        tool, param = request.tool, request.tool_param
        if _action(request) == "edit" and not plan.images:
            raise InvalidRequest(
                f"The image_generation tool's action is 'edit' ('{param}.action'), but the "
                "conversation holds no image to edit.",
                f"{param}.action",
            )
        if not plan.prompt:
            raise InvalidRequest("The input holds no user text to make an image from.", "input")
        n = tool.get("n", 1)
        if n != 1 or isinstance(n, bool):
            raise InvalidValue(
                f"Invalid '{param}.n': an image_generation call makes one image.", f"{param}.n"
            )
        images = await self._uploads(scope, plan.images)
        mask = _mask(tool, param) if images else None
        with _tool_params(param):
            resolved = resolve_tool(
                tool,
                "edit" if images else "generation",
                plan.prompt,
                self._catalog,
                stream=request.stream,
                param=param,
            )
            return await self._images.call_tool(caller, resolved, images, mask, request_id)

    async def _uploads(self, scope: Scope, parts: list[ImagePart]) -> list[Upload]:
        """The call's input images as the edits endpoint receives them; a stored image is
        read now, once."""
        uploads = []
        for part in parts:
            data, media_type = part.data, part.media_type
            if data is None and part.stored_id is not None:
                stored = await asyncio.to_thread(self._store.image, scope, part.stored_id)
                if stored is None:
                    continue  # its response was deleted: the image is out of context
                data, media_type = stored
            if data is not None:
                uploads.append(Upload(data, None, media_type, field=part.param))
        return uploads


def _scope(caller: Caller) -> Scope:
    if caller.project_id is None:
        raise ValueError("model endpoints are only reached with project keys")
    return Scope(caller.organization_id, caller.project_id)


def _action(request: TurnRequest) -> Literal["generate", "edit", "auto"]:
    value = (request.tool or {}).get("action") or "auto"
    if value not in _ACTIONS:
        param = f"{request.tool_param}.action"
        raise InvalidValue(
            f"Invalid value: '{value}'. Supported values are: 'generate', 'edit', and 'auto'.",
            param,
        )
    return cast(Literal["generate", "edit", "auto"], value)


def _mask(tool: Mapping[str, Any], param: str) -> Upload | None:
    mask = tool.get("input_image_mask")
    if mask is None:
        return None
    path = f"{param}.input_image_mask"
    if not isinstance(mask, dict):
        raise InvalidType(f"Invalid type for '{path}': expected an object.", path)
    for key in mask:
        if key not in ("image_url", "file_id"):
            raise UnknownParameter(f"{path}.{key}")
    return decode_data_url(image_url(mask, path), f"{path}.image_url")


def _limit(value: Any) -> int:
    if value is None:
        return 20
    try:
        limit = int(value)
    except (TypeError, ValueError):
        raise InvalidType("Invalid type for 'limit': expected an integer.", "limit") from None
    if not 1 <= limit <= 100:
        raise InvalidValue(
            f"Invalid 'limit': expected a value between 1 and 100, but got {limit}.", "limit"
        )
    return limit


@contextmanager
def _tool_params(param: str) -> Iterator[None]:
    """Checks written for the Images API name its fields (`model`, `image`); here they are
    the tool's and the input's."""
    renames = {"model": f"{param}.model", "image": "input", "images": "input"}
    try:
        yield
    except LimnerError as error:
        if error.param in renames:
            error.param = renames[error.param]
        raise
