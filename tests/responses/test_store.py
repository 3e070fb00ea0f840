"""ResponseStore on SQLite and PostgreSQL: a chain read back in order, images kept once,
project scoping, deletion, input-item pages."""

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select

from limner.errors import InvalidValue, ResponseNotFound
from limner.responses.conversation import ImageCall, ImagePart, Message
from limner.responses.store import ResponseStore, Scope
from limner.storage.db import Database
from limner.storage.tables import ResponseImage

SCOPE = Scope("org-a", "proj_a")
OTHER_PROJECT = Scope("org-a", "proj_b")
OTHER_ORG = Scope("org-b", "proj_a")


def response(response_id: str, call_id: str, previous: str | None = None) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "response",
        "created_at": 1,
        "status": "completed",
        "previous_response_id": previous,
        "output": [
            {
                "id": call_id,
                "type": "image_generation_call",
                "status": "completed",
                "output_format": "png",
                "result": "ignored: the bytes come in `outputs`",
            },
            {"id": f"msg_{response_id}", "type": "message", "role": "assistant", "content": []},
        ],
    }


def user(text: str, *images: bytes) -> Message:
    content: list[dict[str, Any]] = [{"type": "input_text", "text": text}]
    content += [{"type": "input_image", "detail": "auto"} for _ in images]
    parts = [ImagePart("image/png", "input", data=data) for data in images]
    return Message(f"msg_user_{text}", "user", content, parts)


def image_rows(database: Database) -> int:
    with database.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(ResponseImage)) or 0)


def test_a_chain_reads_back_in_order_with_images_kept_once(database: Database) -> None:
    store = ResponseStore(database)
    store.save(SCOPE, response("resp_1", "ig_1"), [user("one", b"photo")], {"ig_1": b"first"})
    chained = [user("two")]
    store.save(SCOPE, response("resp_2", "ig_2", "resp_1"), chained, {"ig_2": b"second"})
    # A third turn replays the first call: the store keeps a reference, not a copy.
    first_call = store.item(SCOPE, "ig_1")
    assert isinstance(first_call, ImageCall) and first_call.image is not None
    replay = ImageCall("ig_1", first_call.wire, ImagePart(None, "input", b"first", "x"))
    replay.image.stored_id = first_call.image.stored_id  # type: ignore[union-attr]
    store.save(SCOPE, response("resp_3", "ig_3", "resp_2"), [replay], {"ig_3": b"third"})
    assert image_rows(database) == 4  # the photo and three results, each once

    chain = store.chain(SCOPE, "resp_3")
    assert chain is not None
    assert [item.id for item in chain] == [
        "msg_user_one", "ig_1", "msg_resp_1",
        "msg_user_two", "ig_2", "msg_resp_2",
        "ig_1", "ig_3", "msg_resp_3",
    ]  # fmt: skip
    stored = [
        store.image(SCOPE, item.image.stored_id)
        for item in chain
        if isinstance(item, ImageCall) and item.image and item.image.stored_id
    ]
    assert [found[0] for found in stored if found] == [b"first", b"second", b"first", b"third"]
    photo = chain[0]
    assert isinstance(photo, Message) and photo.images[0].stored_id is not None
    assert store.image(SCOPE, photo.images[0].stored_id) == (b"photo", "image/png")
    # GET puts the result back.
    assert store.response(SCOPE, "resp_2")["output"][0]["result"] == "c2Vjb25k"  # "second"


def test_other_projects_and_organizations_find_nothing(database: Database) -> None:
    store = ResponseStore(database)
    store.save(SCOPE, response("resp_1", "ig_1"), [user("one")], {"ig_1": b"first"})
    for scope in (OTHER_PROJECT, OTHER_ORG):
        assert store.chain(scope, "resp_1") is None
        assert store.item(scope, "ig_1") is None
        with pytest.raises(ResponseNotFound):
            store.response(scope, "resp_1")
        with pytest.raises(ResponseNotFound):
            store.delete(scope, "resp_1")
    assert store.response(SCOPE, "resp_1")["id"] == "resp_1"


def test_delete_takes_the_images_and_ends_the_chain_there(database: Database) -> None:
    store = ResponseStore(database)
    store.save(SCOPE, response("resp_1", "ig_1"), [user("one")], {"ig_1": b"first"})
    store.save(SCOPE, response("resp_2", "ig_2", "resp_1"), [user("two")], {"ig_2": b"second"})
    store.delete(SCOPE, "resp_1")
    assert image_rows(database) == 1
    chain = store.chain(SCOPE, "resp_2")
    assert chain is not None and [item.id for item in chain] == [
        "msg_user_two",
        "ig_2",
        "msg_resp_2",
    ]
    assert store.chain(SCOPE, "resp_1") is None
    with pytest.raises(ResponseNotFound):
        store.delete(SCOPE, "resp_1")


def test_input_item_pages(database: Database) -> None:
    store = ResponseStore(database)
    inputs = [user(str(index)) for index in range(5)]
    store.save(SCOPE, response("resp_1", "ig_1"), inputs, {"ig_1": b"first"})

    def page(**query: Any) -> tuple[list[str], bool]:
        defaults: dict[str, Any] = {"after": None, "before": None, "limit": 2, "order": "desc"}
        found = store.input_items(SCOPE, "resp_1", image_urls=False, **{**defaults, **query})
        return [item["id"] for item in found.data], found.has_more

    assert page() == (["msg_user_4", "msg_user_3"], True)
    assert page(after="msg_user_3") == (["msg_user_2", "msg_user_1"], True)
    assert page(after="msg_user_1") == (["msg_user_0"], False)
    assert page(order="asc", limit=10) == ([f"msg_user_{i}" for i in range(5)], False)
    assert page(order="asc", before="msg_user_2") == (["msg_user_0", "msg_user_1"], False)
    with pytest.raises(InvalidValue):
        page(after="msg_nope")


def test_input_images_are_listed_as_data_urls_only_when_asked(database: Database) -> None:
    store = ResponseStore(database)
    store.save(SCOPE, response("resp_1", "ig_1"), [user("one", b"photo")], {"ig_1": b"x"})
    query: dict[str, Any] = {"after": None, "before": None, "limit": 20, "order": "asc"}
    plain = store.input_items(SCOPE, "resp_1", image_urls=False, **query).data[0]
    assert plain["content"][1] == {"type": "input_image", "detail": "auto"}
    with_urls = store.input_items(SCOPE, "resp_1", image_urls=True, **query).data[0]
    assert with_urls["content"][1]["image_url"] == "data:image/png;base64,cGhvdG8="


def test_lookup_runs_off_the_event_loop(database: Database) -> None:
    store = ResponseStore(database)
    store.save(SCOPE, response("resp_1", "ig_1"), [user("one")], {"ig_1": b"first"})
    found = asyncio.run(store.lookup(SCOPE).item("ig_1"))
    assert isinstance(found, ImageCall) and found.id == "ig_1"
    assert asyncio.run(store.lookup(OTHER_PROJECT).item("ig_1")) is None
