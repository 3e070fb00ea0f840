"""Bad requests get the §7 envelope: one row per case, asserting status, code and param."""

import base64
import io
import sqlite3
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.api.conftest import encoded, mask_bytes, png_bytes
from tests.conftest import API_KEY, LiveServer

PNG = png_bytes()
PNG_256 = png_bytes((256, 256))
GIF = encoded(Image.new("RGB", (64, 64), "red"), "GIF")
JPEG = encoded(Image.new("RGB", (64, 64), "red"), "JPEG")
NO_ALPHA_MASK = encoded(Image.new("RGB", (64, 64), "black"))


def bomb_png() -> bytes:
    # 30000 x 30000 one-bit pixels compress to a few kB: a classic decompression bomb.
    buffer = io.BytesIO()
    Image.new("1", (30000, 30000), 0).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


@dataclass
class Case:
    id: str
    path: str
    status: int
    code: str | None
    param: str | None
    json: dict[str, Any] | None = None
    data: dict[str, str] | None = None
    files: list[tuple[str, tuple[str, bytes, str]]] = field(default_factory=list)
    raw: bytes | None = None


def gen(**body: Any) -> dict[str, Any]:
    return {"prompt": "a red circle", "model": "gpt-image-1", **body}


def edit_files(
    *parts: tuple[str, tuple[str, bytes, str]],
) -> list[tuple[str, tuple[str, bytes, str]]]:
    return list(parts)


IMG = ("image", ("a.png", PNG, "image/png"))
DATA_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()


# /v1/responses bodies.
TOOL: dict[str, Any] = {"type": "image_generation", "quality": "low"}
USER = {"role": "user", "content": "a red circle"}
CALL = {
    "type": "image_generation_call",
    "id": "ig_replayed",
    "result": base64.b64encode(PNG).decode(),
}
METADATA_17 = {f"k{index}": "v" for index in range(17)}


def turn(**body: Any) -> dict[str, Any]:
    return {"model": "gpt-4.1", "input": "a red circle", "tools": [TOOL], **body}


def nomodel() -> dict[str, Any]:
    return {"input": "a red circle", "tools": [TOOL]}


def noinput() -> dict[str, Any]:
    return {"model": "gpt-4.1", "tools": [TOOL]}


def tools(*given: dict[str, Any]) -> dict[str, Any]:
    return turn(tools=list(given))


def items(*given: dict[str, Any]) -> dict[str, Any]:
    return turn(input=list(given))


def user_image(part: dict[str, Any]) -> dict[str, Any]:
    return {
        "role": "user",
        "content": [{"type": "input_text", "text": "edit it"}, {"type": "input_image", **part}],
    }


def tools_with_image(*given: dict[str, Any]) -> dict[str, Any]:
    return turn(input=[user_image({"image_url": DATA_URL})], tools=list(given))


def masked(mask: bytes) -> dict[str, Any]:
    mask_url = "data:image/png;base64," + base64.b64encode(mask).decode()
    return tools_with_image({**TOOL, "input_image_mask": {"image_url": mask_url}})


CASES = [
    # generations: model and unknown parameters
    Case(
        "unknown model", "/images/generations", 404, "model_not_found", None, json=gen(model="nope")
    ),
    Case(
        "response_format on gpt-image-1",
        "/images/generations",
        400,
        "unknown_parameter",
        "response_format",
        json=gen(response_format="url"),
    ),
    Case(
        "style on gpt-image-1",
        "/images/generations",
        400,
        "unknown_parameter",
        "style",
        json=gen(style="vivid"),
    ),
    Case(
        "unknown field", "/images/generations", 400, "unknown_parameter", "foo", json=gen(foo="bar")
    ),
    Case(
        "background on dall-e-2",
        "/images/generations",
        400,
        "unknown_parameter",
        "background",
        json=gen(model="dall-e-2", background="opaque"),
    ),
    Case(
        "style on dall-e-2",
        "/images/generations",
        400,
        "unknown_parameter",
        "style",
        json=gen(model="dall-e-2", style="vivid"),
    ),
    Case(
        "moderation on dall-e-3",
        "/images/generations",
        400,
        "unknown_parameter",
        "moderation",
        json=gen(model="dall-e-3", moderation="low"),
    ),
    Case(
        "input_fidelity on a generation",
        "/images/generations",
        400,
        "unknown_parameter",
        "input_fidelity",
        json=gen(input_fidelity="high"),
    ),
    # generations: values
    Case(
        "missing prompt",
        "/images/generations",
        400,
        "missing_required_parameter",
        "prompt",
        json={"model": "gpt-image-1"},
    ),
    Case(
        "null prompt",
        "/images/generations",
        400,
        "missing_required_parameter",
        "prompt",
        json={"model": "gpt-image-1", "prompt": None},
    ),
    Case(
        "empty prompt",
        "/images/generations",
        400,
        "invalid_value",
        "prompt",
        json=gen(prompt="   "),
    ),
    Case(
        "prompt not a string",
        "/images/generations",
        400,
        "invalid_type",
        "prompt",
        json=gen(prompt=5),
    ),
    Case(
        "dall-e-2 prompt too long",
        "/images/generations",
        400,
        "string_above_max_length",
        "prompt",
        json=gen(model="dall-e-2", prompt="x" * 1001),
    ),
    Case(
        "dall-e-3 prompt too long",
        "/images/generations",
        400,
        "string_above_max_length",
        "prompt",
        json=gen(model="dall-e-3", prompt="x" * 4001),
    ),
    Case(
        "gpt prompt too long",
        "/images/generations",
        400,
        "string_above_max_length",
        "prompt",
        json=gen(prompt="x" * 32001),
    ),
    Case(
        "size not allowed for gpt",
        "/images/generations",
        400,
        "invalid_value",
        "size",
        json=gen(size="512x512"),
    ),
    Case(
        "size not allowed for dall-e-3",
        "/images/generations",
        400,
        "invalid_value",
        "size",
        json=gen(model="dall-e-3", size="256x256"),
    ),
    Case(
        "size auto on dall-e-2",
        "/images/generations",
        400,
        "invalid_value",
        "size",
        json=gen(model="dall-e-2", size="auto"),
    ),
    Case(
        "quality hd on gpt",
        "/images/generations",
        400,
        "invalid_value",
        "quality",
        json=gen(quality="hd"),
    ),
    Case(
        "quality low on dall-e-3",
        "/images/generations",
        400,
        "invalid_value",
        "quality",
        json=gen(model="dall-e-3", quality="low"),
    ),
    Case("n zero", "/images/generations", 400, "invalid_value", "n", json=gen(n=0)),
    Case("n eleven", "/images/generations", 400, "invalid_value", "n", json=gen(n=11)),
    Case(
        "n two on dall-e-3",
        "/images/generations",
        400,
        "invalid_value",
        "n",
        json=gen(model="dall-e-3", n=2),
    ),
    Case("n as string", "/images/generations", 400, "invalid_type", "n", json=gen(n="2")),
    Case("n as bool", "/images/generations", 400, "invalid_type", "n", json=gen(n=True)),
    Case(
        "compression above 100",
        "/images/generations",
        400,
        "invalid_value",
        "output_compression",
        json=gen(output_compression=101),
    ),
    Case(
        "compression negative",
        "/images/generations",
        400,
        "invalid_value",
        "output_compression",
        json=gen(output_compression=-1),
    ),
    Case(
        "output_format gif",
        "/images/generations",
        400,
        "invalid_value",
        "output_format",
        json=gen(output_format="gif"),
    ),
    Case(
        "transparent with jpeg",
        "/images/generations",
        400,
        "invalid_value",
        "background",
        json=gen(background="transparent", output_format="jpeg"),
    ),
    Case(
        "bad background",
        "/images/generations",
        400,
        "invalid_value",
        "background",
        json=gen(background="green"),
    ),
    Case(
        "bad moderation",
        "/images/generations",
        400,
        "invalid_value",
        "moderation",
        json=gen(moderation="off"),
    ),
    Case(
        "partial_images 4",
        "/images/generations",
        400,
        "invalid_value",
        "partial_images",
        json=gen(partial_images=4),
    ),
    Case(
        "stream not a boolean",
        "/images/generations",
        400,
        "invalid_type",
        "stream",
        json=gen(stream="sometimes"),
    ),
    Case(
        "stream on dall-e-2",
        "/images/generations",
        400,
        "unknown_parameter",
        "stream",
        json=gen(model="dall-e-2", stream=True),
    ),
    Case(
        "dall-e-3 style",
        "/images/generations",
        400,
        "invalid_value",
        "style",
        json=gen(model="dall-e-3", style="cartoon"),
    ),
    Case(
        "dall-e-2 response_format",
        "/images/generations",
        400,
        "invalid_value",
        "response_format",
        json=gen(model="dall-e-2", response_format="png"),
    ),
    Case("negative seed", "/images/generations", 400, "invalid_value", "seed", json=gen(seed=-1)),
    Case(
        "model not a string", "/images/generations", 400, "invalid_type", "model", json=gen(model=3)
    ),
    Case("body not json", "/images/generations", 400, None, None, raw=b"{not json"),
    Case("body a list", "/images/generations", 400, None, None, json=[1, 2]),  # type: ignore[arg-type]
    # edits: files
    Case(
        "edit without image",
        "/images/edits",
        400,
        None,
        "image",
        data={"prompt": "x", "model": "gpt-image-1"},
    ),
    Case(
        "image as a string",
        "/images/edits",
        400,
        "invalid_type",
        "image",
        data={"prompt": "x", "model": "gpt-image-1", "image": "abc"},
    ),
    Case(
        "gif declared",
        "/images/edits",
        400,
        "unsupported_file_mimetype",
        "image",
        data={"prompt": "x", "model": "gpt-image-1"},
        files=[("image", ("a.gif", GIF, "image/gif"))],
    ),
    Case(
        "gif sent as octet-stream",
        "/images/edits",
        400,
        "invalid_image_file",
        "image",
        data={"prompt": "x", "model": "gpt-image-1"},
        files=[("image", ("upload", GIF, "application/octet-stream"))],
    ),
    Case(
        "corrupt png",
        "/images/edits",
        400,
        "invalid_image_file",
        "image",
        data={"prompt": "x", "model": "gpt-image-1"},
        files=[("image", ("a.png", PNG[: len(PNG) // 2], "image/png"))],
    ),
    Case(
        "empty file",
        "/images/edits",
        400,
        "invalid_image_file",
        "image",
        data={"prompt": "x", "model": "gpt-image-1"},
        files=[("image", ("a.png", b"", "image/png"))],
    ),
    Case(
        "decompression bomb",
        "/images/edits",
        400,
        "image_too_large",
        "image",
        data={"prompt": "x", "model": "gpt-image-1"},
        files=[("image", ("a.png", bomb_png(), "image/png"))],
    ),
    Case(
        "seventeen images",
        "/images/edits",
        400,
        "invalid_value",
        "image",
        data={"prompt": "x", "model": "gpt-image-1"},
        files=[("image[]", ("a.png", PNG, "image/png"))] * 17,
    ),
    Case(
        "mask without alpha",
        "/images/edits",
        400,
        "invalid_mask_image_format",
        "mask",
        data={"prompt": "x", "model": "gpt-image-1"},
        files=[IMG, ("mask", ("m.png", NO_ALPHA_MASK, "image/png"))],
    ),
    Case(
        "mask wrong size",
        "/images/edits",
        400,
        "invalid_mask_image_format",
        "mask",
        data={"prompt": "x", "model": "gpt-image-1"},
        files=[IMG, ("mask", ("m.png", mask_bytes((32, 32), (0, 0, 8, 8)), "image/png"))],
    ),
    Case(
        "mask not png",
        "/images/edits",
        400,
        "invalid_mask_image_format",
        "mask",
        data={"prompt": "x", "model": "gpt-image-1"},
        files=[IMG, ("mask", ("m.jpg", JPEG, "image/jpeg"))],
    ),
    Case(
        "dall-e-2 edit with jpeg",
        "/images/edits",
        400,
        "invalid_image_format",
        "image",
        data={"prompt": "x", "model": "dall-e-2"},
        files=[("image", ("a.jpg", JPEG, "image/jpeg"))],
    ),
    Case(
        "dall-e-2 edit not square",
        "/images/edits",
        400,
        "invalid_image_format",
        "image",
        data={"prompt": "x", "model": "dall-e-2"},
        files=[("image", ("a.png", png_bytes((64, 32)), "image/png"))],
    ),
    Case(
        "dall-e-3 edit",
        "/images/edits",
        400,
        "invalid_value",
        "model",
        data={"prompt": "x", "model": "dall-e-3"},
        files=[IMG],
    ),
    Case(
        "input_fidelity on mini",
        "/images/edits",
        400,
        "unknown_parameter",
        "input_fidelity",
        data={"prompt": "x", "model": "gpt-image-1-mini", "input_fidelity": "high"},
        files=[IMG],
    ),
    Case(
        "edit n as text",
        "/images/edits",
        400,
        "invalid_type",
        "n",
        data={"prompt": "x", "model": "gpt-image-1", "n": "two"},
        files=[IMG],
    ),
    Case(
        "edit stream not a bool",
        "/images/edits",
        400,
        "invalid_type",
        "stream",
        data={"prompt": "x", "model": "gpt-image-1", "stream": "maybe"},
        files=[IMG],
    ),
    Case(
        "edit quality standard on gpt",
        "/images/edits",
        400,
        "invalid_value",
        "quality",
        data={"prompt": "x", "model": "gpt-image-1", "quality": "standard"},
        files=[IMG],
    ),
    Case(
        "unknown file part",
        "/images/edits",
        400,
        "unknown_parameter",
        "extra",
        data={"prompt": "x", "model": "gpt-image-1"},
        files=[IMG, ("extra", ("e.png", PNG, "image/png"))],
    ),
    # JSON edits
    Case(
        "json edit remote url refused",
        "/images/edits",
        400,
        "invalid_image_url",
        "images[0].image_url",
        json=gen(images=[{"image_url": "http://169.254.169.254/latest/meta-data"}]),
    ),
    Case(
        "json edit bad data url",
        "/images/edits",
        400,
        "invalid_image_url",
        "images[0].image_url",
        json=gen(images=[{"image_url": "data:image/png;base64,@@@"}]),
    ),
    Case(
        "json edit file_id",
        "/images/edits",
        400,
        "invalid_value",
        "images[0].file_id",
        json=gen(images=[{"file_id": "file-1"}]),
    ),
    Case("json edit images missing", "/images/edits", 400, None, "images", json=gen()),
    Case(
        "json edit mask without alpha",
        "/images/edits",
        400,
        "invalid_mask_image_format",
        "mask",
        json=gen(
            images=[{"image_url": DATA_URL}],
            mask={"image_url": "data:image/png;base64," + base64.b64encode(NO_ALPHA_MASK).decode()},
        ),
    ),
    # variations
    Case(
        "variation on gpt-image-1",
        "/images/variations",
        400,
        "invalid_value",
        "model",
        data={"model": "gpt-image-1"},
        files=[("image", ("a.png", PNG_256, "image/png"))],
    ),
    Case(
        "variation with prompt",
        "/images/variations",
        400,
        "unknown_parameter",
        "prompt",
        data={"prompt": "x"},
        files=[("image", ("a.png", PNG_256, "image/png"))],
    ),
    Case(
        "variation bad size",
        "/images/variations",
        400,
        "invalid_value",
        "size",
        data={"size": "1536x1024"},
        files=[("image", ("a.png", PNG_256, "image/png"))],
    ),
    Case("variation as json", "/images/variations", 400, None, None, json={"model": "dall-e-2"}),
    # models and routes
    Case("unknown route", "/images/nothing", 404, "unknown_url", None, json={}),
    *[
        Case(name, "/responses", status, code, param, json=body)
        for name, status, code, param, body in [
            # the request
            ("responses unknown mainline", 400, "model_not_found", "model", turn(model="llama")),
            ("responses no model", 400, "missing_required_parameter", "model", nomodel()),
            ("responses no input", 400, "missing_required_parameter", "input", noinput()),
            ("responses input number", 400, "invalid_type", "input", turn(input=3)),
            ("responses input empty", 400, "invalid_value", "input", turn(input=[])),
            ("responses blank input", 400, "invalid_value", "input", turn(input="  ")),
            ("responses unknown key", 400, "unknown_parameter", "foo", turn(foo=1)),
            ("responses background", 400, "invalid_value", "background", turn(background=True)),
            (
                "responses conversation",
                400,
                "invalid_value",
                "conversation",
                turn(conversation="c"),
            ),
            ("responses stream string", 400, "invalid_type", "stream", turn(stream="yes")),
            ("responses store string", 400, "invalid_type", "store", turn(store="no")),
            ("responses temperature", 400, "invalid_type", "temperature", turn(temperature="hot")),
            ("responses metadata", 400, "invalid_value", "metadata", turn(metadata=METADATA_17)),
            (
                "responses metadata value",
                400,
                "invalid_type",
                "metadata.a",
                turn(metadata={"a": 1}),
            ),
            # tools and tool_choice
            ("responses tools object", 400, "invalid_type", "tools", turn(tools={})),
            (
                "responses web_search",
                400,
                "invalid_value",
                "tools[0].type",
                tools({"type": "web_search"}),
            ),
            ("responses tool twice", 400, "invalid_value", "tools[1]", tools(TOOL, TOOL)),
            (
                "responses tool key",
                400,
                "unknown_parameter",
                "tools[0].foo",
                tools({**TOOL, "foo": 1}),
            ),
            (
                "responses tool size",
                400,
                "invalid_value",
                "tools[0].size",
                tools({**TOOL, "size": "9x9"}),
            ),
            (
                "responses tool quality",
                400,
                "invalid_value",
                "tools[0].quality",
                tools({**TOOL, "quality": "max"}),
            ),
            (
                "responses tool compression",
                400,
                "invalid_value",
                "tools[0].output_compression",
                tools({**TOOL, "output_compression": 101}),
            ),
            (
                "responses tool partials",
                400,
                "invalid_value",
                "tools[0].partial_images",
                tools({**TOOL, "partial_images": 4}),
            ),
            (
                "responses tool jpeg transparent",
                400,
                "invalid_value",
                "tools[0].background",
                tools({**TOOL, "background": "transparent", "output_format": "jpeg"}),
            ),
            (
                "responses tool model dall-e",
                400,
                "invalid_value",
                "tools[0].model",
                tools({**TOOL, "model": "dall-e-2"}),
            ),
            (
                "responses tool model unknown",
                400,
                "invalid_value",
                "tools[0].model",
                tools({**TOOL, "model": "nope"}),
            ),
            ("responses tool n", 400, "invalid_value", "tools[0].n", tools({**TOOL, "n": 2})),
            (
                "responses tool action",
                400,
                "invalid_value",
                "tools[0].action",
                tools({**TOOL, "action": "paint"}),
            ),
            (
                "responses edit without image",
                400,
                None,
                "tools[0].action",
                tools({**TOOL, "action": "edit"}),
            ),
            (
                "responses tool_choice string",
                400,
                "invalid_value",
                "tool_choice",
                turn(tool_choice="always"),
            ),
            (
                "responses tool_choice function",
                400,
                "invalid_value",
                "tool_choice",
                turn(tool_choice={"type": "function", "name": "f"}),
            ),
            (
                "responses tool_choice absent tool",
                400,
                None,
                "tool_choice",
                turn(tools=[], tool_choice={"type": "image_generation"}),
            ),
            (
                "responses required no tools",
                400,
                None,
                "tool_choice",
                turn(tools=[], tool_choice="required"),
            ),
            # the chain and replayed items
            (
                "responses unknown previous",
                400,
                "previous_response_not_found",
                "previous_response_id",
                turn(previous_response_id="resp_0123"),
            ),
            (
                "responses malformed previous",
                400,
                "invalid_value",
                "previous_response_id",
                turn(previous_response_id="resp/../x"),
            ),
            (
                "responses unknown call id",
                404,
                None,
                "input",
                items(USER, {"type": "image_generation_call", "id": "ig_missing"}),
            ),
            (
                "responses unknown reference",
                404,
                None,
                "input",
                items({"type": "item_reference", "id": "msg_missing"}, USER),
            ),
            ("responses duplicate item", 400, None, "input", items(CALL, CALL, USER)),
            (
                "responses call result",
                400,
                "invalid_value",
                "input[0].result",
                items({**CALL, "result": "not base64!"}, USER),
            ),
            (
                "responses function_call item",
                400,
                "invalid_value",
                "input[0].type",
                items({"type": "function_call", "name": "f"}),
            ),
            (
                "responses no item type",
                400,
                "missing_required_parameter",
                "input[0].type",
                items({"id": "x"}),
            ),
            (
                "responses bad role",
                400,
                "invalid_value",
                "input[0].role",
                items({"role": "robot", "content": "x"}),
            ),
            (
                "responses assistant only",
                400,
                None,
                "input",
                items({"role": "assistant", "content": "hello"}),
            ),
            (
                "responses input_text in assistant",
                400,
                "invalid_value",
                "input[0].content[0].type",
                items({"role": "assistant", "content": [{"type": "input_text", "text": "x"}]}),
            ),
            (
                "responses input_file",
                400,
                "invalid_value",
                "input[0].content[0].type",
                items({"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}),
            ),
            # input images and the mask, under the edits endpoint's rules
            (
                "responses image file_id",
                400,
                "invalid_value",
                "input[0].content[1].file_id",
                items(user_image({"file_id": "file-1"})),
            ),
            (
                "responses image no url",
                400,
                "missing_required_parameter",
                "input[0].content[1].image_url",
                items(user_image({})),
            ),
            (
                "responses image detail",
                400,
                "invalid_value",
                "input[0].content[1].detail",
                items(user_image({"image_url": DATA_URL, "detail": "ultra"})),
            ),
            (
                "responses image not base64",
                400,
                "invalid_image_url",
                "input[0].content[1].image_url",
                items(user_image({"image_url": "data:image/png;base64,@@@"})),
            ),
            (
                "responses image remote host",
                400,
                "invalid_image_url",
                "input[0].content[1].image_url",
                items(user_image({"image_url": "https://example.com/a.png"})),
            ),
            (
                "responses image gif",
                400,
                "unsupported_file_mimetype",
                "input[0].content[1].image_url",
                items(
                    user_image(
                        {"image_url": "data:image/gif;base64," + base64.b64encode(GIF).decode()}
                    )
                ),
            ),
            (
                "responses image corrupt",
                400,
                "invalid_image_file",
                "input[0].content[1].image_url",
                items(
                    user_image(
                        {
                            "image_url": "data:image/png;base64,"
                            + base64.b64encode(PNG[:60]).decode()
                        }
                    )
                ),
            ),
            (
                "responses image bomb",
                400,
                "image_too_large",
                "input[0].content[1].image_url",
                items(
                    user_image(
                        {
                            "image_url": "data:image/png;base64,"
                            + base64.b64encode(bomb_png()).decode()
                        }
                    )
                ),
            ),
            (
                "responses 17 images",
                400,
                "invalid_value",
                "input",
                items(
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_text", "text": "x"},
                            *[{"type": "input_image", "image_url": DATA_URL}] * 17,
                        ],
                    }
                ),
            ),
            (
                "responses mask size",
                400,
                "invalid_mask_image_format",
                "tools[0].input_image_mask.image_url",
                masked(mask_bytes((32, 32), (0, 0, 16, 16))),
            ),
            (
                "responses mask no alpha",
                400,
                "invalid_mask_image_format",
                "tools[0].input_image_mask.image_url",
                masked(NO_ALPHA_MASK),
            ),
            (
                "responses mask file_id",
                400,
                "invalid_value",
                "tools[0].input_image_mask.file_id",
                tools_with_image({**TOOL, "input_image_mask": {"file_id": "file-1"}}),
            ),
            (
                "responses mask key",
                400,
                "unknown_parameter",
                "tools[0].input_image_mask.url",
                tools_with_image({**TOOL, "input_image_mask": {"url": "x"}}),
            ),
        ]
    ],
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(live_server: LiveServer, case: Case) -> None:
    request: dict[str, Any] = {"headers": {"authorization": f"Bearer {API_KEY}"}, "timeout": 60}
    if case.raw is not None:
        request["content"] = case.raw
        request["headers"]["content-type"] = "application/json"
    elif case.json is not None:
        request["json"] = case.json
    else:
        # Always multipart, as the SDK sends it: text parts first, then files.
        text_parts = [(name, (None, value.encode())) for name, value in (case.data or {}).items()]
        request["files"] = text_parts + case.files
    stored, billed = _stored_and_billed(live_server)
    response = httpx.post(live_server.api_url + case.path, **request)
    assert response.status_code == case.status, response.text
    # Refused before anything ran: nothing kept, nothing billed.
    assert _stored_and_billed(live_server) == (stored, billed)
    assert response.headers["x-request-id"].startswith("req_")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == case.code
    assert error["param"] == case.param
    assert error["message"]


def _stored_and_billed(server: LiveServer) -> tuple[int, int]:
    with sqlite3.connect(server.home / "limner.db") as db:
        stored = db.execute("SELECT count(*) FROM responses").fetchone()[0]
        billed = db.execute("SELECT count(*) FROM usage_records").fetchone()[0]
    return int(stored), int(billed)


def test_models_retrieve_unknown(live_server: LiveServer) -> None:
    response = httpx.get(
        live_server.api_url + "/models/gpt-5", headers={"authorization": f"Bearer {API_KEY}"}
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
