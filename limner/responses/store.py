"""Stored responses (`store: true`), their items and their images, scoped to one project.

A response is kept as its wire JSON with every image taken out into `response_images` and
named there by id (`limner_image`), so an image is stored once: a later turn that replays or
reaches it through `previous_response_id` stores a reference, never a copy. Another project,
or another organization, finds nothing.
"""

import asyncio
import base64
import copy
import json
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from limner.errors import InvalidValue, ResponseNotFound
from limner.ids import new_id
from limner.responses.conversation import ImageCall, ImagePart, Item, ItemLookup, Message
from limner.storage.db import Database
from limner.storage.tables import ResponseImage, ResponseItem, StoredResponse

_IMAGE_KEY = "limner_image"
# A chain longer than this is read up to here (turns before it are out of context).
_MAX_CHAIN = 1000
_MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


@dataclass(frozen=True)
class Scope:
    organization_id: str
    project_id: str


@dataclass(frozen=True)
class ItemsPage:
    data: list[dict[str, Any]]
    has_more: bool


class ResponseStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    def save(
        self,
        scope: Scope,
        response: dict[str, Any],
        inputs: list[Item],
        outputs: dict[str, bytes],
    ) -> None:
        """One response: `response` is its wire object; `inputs` its own input items;
        `outputs` the encoded results of its image calls, by call id."""
        with self._database.transaction() as session:
            # The response row first (flushed): its items and images refer to it.
            row = StoredResponse(
                id=response["id"],
                organization_id=scope.organization_id,
                project_id=scope.project_id,
                previous_response_id=response.get("previous_response_id"),
                status=response["status"],
                body="",
                created_at=int(response["created_at"]),
            )
            session.add(row)
            session.flush()
            body = copy.deepcopy(response)
            for item in body["output"]:
                if item.get("type") == "image_generation_call":
                    result = outputs.get(item["id"])
                    item.pop("result", None)
                    if result is not None:
                        media_type = _MEDIA_TYPES[item.get("output_format", "png")]
                        item[_IMAGE_KEY] = self._add_image(
                            session, scope, response, result, media_type
                        )
            row.body = json.dumps(body)
            rows = [
                ("input", self._stored_input(session, scope, response, item)) for item in inputs
            ]
            rows += [("output", item) for item in body["output"]]
            counters = {"input": 0, "output": 0}
            for kind, item in rows:
                session.add(
                    ResponseItem(
                        response_id=response["id"],
                        kind=kind,
                        position=counters[kind],
                        item_id=item["id"],
                        project_id=scope.project_id,
                        body=json.dumps(item),
                    )
                )
                counters[kind] += 1

    def response(self, scope: Scope, response_id: str) -> dict[str, Any]:
        """The wire object of a stored response, its images back in place."""
        with self._database.transaction() as session:
            row = self._row(session, scope, response_id)
            if row is None:
                raise ResponseNotFound(response_id)
            body: dict[str, Any] = json.loads(row.body)
            for item in body["output"]:
                image_id = item.pop(_IMAGE_KEY, None)
                if item.get("type") == "image_generation_call":
                    stored = self._image(session, scope, image_id) if image_id else None
                    item["result"] = base64.b64encode(stored[0]).decode() if stored else None
            return body

    def exists(self, scope: Scope, response_id: str) -> bool:
        with self._database.transaction() as session:
            return self._row(session, scope, response_id) is not None

    def delete(self, scope: Scope, response_id: str) -> None:
        with self._database.transaction() as session:
            row = self._row(session, scope, response_id)
            if row is None:
                raise ResponseNotFound(response_id)
            # Explicit, not left to ON DELETE CASCADE: SQLite enforces it only per connection.
            session.execute(delete(ResponseImage).where(ResponseImage.response_id == row.id))
            session.execute(delete(ResponseItem).where(ResponseItem.response_id == row.id))
            session.delete(row)

    def chain(self, scope: Scope, response_id: str) -> list[Item] | None:
        """The conversation up to and including `response_id`, oldest first: each response's
        input items, then its output. None if that response is not stored for `scope`; a
        deleted response earlier in the chain ends it there."""
        with self._database.transaction() as session:
            responses: list[str] = []
            current: str | None = response_id
            while current is not None and len(responses) < _MAX_CHAIN:
                row = self._row(session, scope, current)
                if row is None:
                    break
                responses.append(row.id)
                current = row.previous_response_id
            if not responses:
                return None
            stored = session.scalars(
                select(ResponseItem).where(
                    ResponseItem.project_id == scope.project_id,
                    ResponseItem.response_id.in_(responses),
                )
            ).all()
            order = {rid: position for position, rid in enumerate(reversed(responses))}
            stored_sorted = sorted(
                stored,
                key=lambda r: (order[r.response_id], r.kind != "input", r.position),
            )
            return [_item(json.loads(row.body)) for row in stored_sorted]

    def lookup(self, scope: Scope) -> "ScopedLookup":
        return ScopedLookup(self, scope)

    def item(self, scope: Scope, item_id: str) -> Item | None:
        with self._database.transaction() as session:
            row = session.scalars(
                select(ResponseItem)
                .join(StoredResponse, StoredResponse.id == ResponseItem.response_id)
                .where(
                    ResponseItem.project_id == scope.project_id,
                    ResponseItem.item_id == item_id,
                    StoredResponse.organization_id == scope.organization_id,
                )
                .limit(1)
            ).first()
            return _item(json.loads(row.body)) if row is not None else None

    def image(self, scope: Scope, image_id: str) -> tuple[bytes, str] | None:
        with self._database.transaction() as session:
            return self._image(session, scope, image_id)

    def input_items(
        self,
        scope: Scope,
        response_id: str,
        *,
        after: str | None,
        before: str | None,
        limit: int,
        order: Literal["asc", "desc"],
        image_urls: bool,
    ) -> ItemsPage:
        with self._database.transaction() as session:
            if self._row(session, scope, response_id) is None:
                raise ResponseNotFound(response_id)
            rows = session.scalars(
                select(ResponseItem)
                .where(ResponseItem.response_id == response_id, ResponseItem.kind == "input")
                .order_by(ResponseItem.position)
            ).all()
            items = [json.loads(row.body) for row in rows]
            if order == "desc":
                items.reverse()
            items = _window(items, after, before)
            page = items[:limit]
            return ItemsPage(
                [self._wire_input(session, scope, item, image_urls) for item in page],
                has_more=len(items) > limit,
            )

    # -- rows -----------------------------------------------------------------------------

    def _row(self, session: Session, scope: Scope, response_id: str) -> StoredResponse | None:
        return session.scalars(
            select(StoredResponse).where(
                StoredResponse.id == response_id,
                StoredResponse.project_id == scope.project_id,
                StoredResponse.organization_id == scope.organization_id,
            )
        ).first()

    def _image(self, session: Session, scope: Scope, image_id: str) -> tuple[bytes, str] | None:
        row = session.scalars(
            select(ResponseImage)
            .join(StoredResponse, StoredResponse.id == ResponseImage.response_id)
            .where(
                ResponseImage.id == image_id,
                ResponseImage.project_id == scope.project_id,
                StoredResponse.organization_id == scope.organization_id,
            )
        ).first()
        return (row.data, row.media_type) if row is not None else None

    def _add_image(
        self,
        session: Session,
        scope: Scope,
        response: dict[str, Any],
        data: bytes,
        media_type: str,
    ) -> str:
        image_id = new_id("img_")
        session.add(
            ResponseImage(
                id=image_id,
                response_id=response["id"],
                project_id=scope.project_id,
                media_type=media_type,
                data=data,
            )
        )
        return image_id

    def _stored_input(
        self, session: Session, scope: Scope, response: dict[str, Any], item: Item
    ) -> dict[str, Any]:
        def keep(image: ImagePart) -> str:
            if image.stored_id is not None:
                return image.stored_id
            assert image.data is not None
            image.stored_id = self._add_image(
                session, scope, response, image.data, image.media_type or "image/png"
            )
            return image.stored_id

        if isinstance(item, ImageCall):
            wire = {**item.wire, "id": item.id, "type": "image_generation_call"}
            if item.image is not None:
                wire[_IMAGE_KEY] = keep(item.image)
            return wire
        content = copy.deepcopy(item.content)
        images = iter(item.images)
        for part in content:
            if part.get("type") == "input_image":
                part[_IMAGE_KEY] = keep(next(images))
        return {
            "id": item.id,
            "type": "message",
            "role": item.role,
            "status": "completed",
            "content": content,
        }

    def _wire_input(
        self, session: Session, scope: Scope, item: dict[str, Any], image_urls: bool
    ) -> dict[str, Any]:
        """A stored input item as input_items lists it: an image call with its `result`,
        input images with their data URL only when `include` asks for it."""
        item = copy.deepcopy(item)
        image_id = item.pop(_IMAGE_KEY, None)
        if item.get("type") == "image_generation_call":
            stored = self._image(session, scope, image_id) if image_id else None
            item["result"] = base64.b64encode(stored[0]).decode() if stored else None
        for part in item.get("content", []):
            part_image = part.pop(_IMAGE_KEY, None)
            if part.get("type") == "input_image" and image_urls and part_image:
                stored = self._image(session, scope, part_image)
                if stored is not None:
                    data, media_type = stored
                    part["image_url"] = (
                        f"data:{media_type};base64,{base64.b64encode(data).decode()}"
                    )
        return item


class ScopedLookup(ItemLookup):
    """Item lookups for one project, run off the event loop."""

    def __init__(self, store: ResponseStore, scope: Scope) -> None:
        self._store, self._scope = store, scope

    async def item(self, item_id: str) -> Item | None:
        return await asyncio.to_thread(self._store.item, self._scope, item_id)


def _item(body: dict[str, Any]) -> Item:
    """A stored item back as a conversation item; its images by stored id."""
    if body.get("type") == "image_generation_call":
        image_id = body.get(_IMAGE_KEY)
        wire = {key: value for key, value in body.items() if key != _IMAGE_KEY}
        image = ImagePart(None, "input", stored_id=image_id) if image_id else None
        return ImageCall(body["id"], wire, image)
    content = [{k: v for k, v in part.items() if k != _IMAGE_KEY} for part in body["content"]]
    images = [
        ImagePart(None, "input", stored_id=part[_IMAGE_KEY], detail=part.get("detail", "auto"))
        for part in body["content"]
        if part.get(_IMAGE_KEY)
    ]
    return Message(body["id"], body["role"], content, images)


def _window(items: list[dict[str, Any]], after: str | None, before: str | None) -> list[Any]:
    ids = [item["id"] for item in items]
    for cursor, name in ((after, "after"), (before, "before")):
        if cursor is not None and cursor not in ids:
            raise InvalidValue(f"Invalid '{name}': no input item with id '{cursor}'.", name)
    start = ids.index(after) + 1 if after is not None else 0
    end = ids.index(before) if before is not None else len(items)
    return items[start:end]
