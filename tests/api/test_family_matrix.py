"""Every other model family through `limner serve --catalog` and the official SDK, feature by
feature: tiny random-weight pipelines of each, saved and served as an operator serves the real
ones. What a family cannot do is a clear 400, asserted as such."""

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from tests.api.conftest import decoded, png
from tests.conftest import API_KEY, LiveServer, start_server, stop_server
from tests.engine.tiny_qwen import build_tiny_qwen_image, build_tiny_qwen_image_edit_plus
from tests.engine.tiny_qwen3_families import build_tiny_flux2_klein, build_tiny_z_image
from tests.engine.tiny_sd_families import build_tiny_sana, build_tiny_sd3, build_tiny_sdxl


@dataclass(frozen=True)
class Family:
    name: str
    build: Callable[[Path], Path]
    generates: bool
    # "instruct" (reference images natively), "img2img" (one picture, a grid) or "none".
    edits: str
    max_images: int | None = None
    # The working size: the pipeline's smallest step (SANA's VAE: 32 px) times a few.
    resolution: int = 64


FAMILIES = [
    Family("sdxl", build_tiny_sdxl, True, "img2img"),
    Family("sd3", build_tiny_sd3, True, "img2img"),
    Family("sana", build_tiny_sana, True, "none"),
    Family("qwen-image", build_tiny_qwen_image, True, "img2img"),
    Family("qwen-image-edit-plus", build_tiny_qwen_image_edit_plus, False, "instruct", 3),
    Family("flux2-klein", build_tiny_flux2_klein, True, "instruct", 4),
    Family("z-image", build_tiny_z_image, True, "img2img"),
]
BY_NAME = {family.name: family for family in FAMILIES}

BACKEND = """
[backends.{name}]
path = "{path}"
[backends.{name}.quality]
low = {{ steps = 2, resolution = {resolution} }}
medium = {{ steps = 3, resolution = {resolution} }}
high = {{ steps = 4, resolution = {resolution} }}
[models.{name}]
backend = "{name}"
"""


@pytest.fixture(scope="module")
def matrix_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("matrix")
    catalog = root / "catalog.toml"
    catalog.write_text(
        "".join(
            BACKEND.format(
                name=family.name,
                path=family.build(root / family.name),
                resolution=family.resolution,
            )
            for family in FAMILIES
        )
    )
    server = start_server(root / "home", ["--catalog", str(catalog)])
    yield server
    stop_server(server)


@pytest.fixture()
def sdk(matrix_server: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=matrix_server.api_url, api_key=API_KEY, max_retries=0) as client:
        yield client


def names(*, generates: bool | None = None, edits: tuple[str, ...] = ()) -> list[str]:
    return [
        family.name
        for family in FAMILIES
        if (generates is None or family.generates == generates)
        and (not edits or family.edits in edits)
    ]


def picture(colour: tuple[int, int, int], size: int = 128) -> tuple[str, bytes, str]:
    return ("in.png", png(Image.new("RGB", (size, size), colour)), "image/png")


def b64(result: object) -> list[bytes]:
    return [base64.b64decode(item.b64_json or "") for item in result.data]  # type: ignore[attr-defined]


def test_each_family_says_what_it_can_do(sdk: openai.OpenAI, matrix_server: LiveServer) -> None:
    models = {model.id: model.model_dump()["limner"] for model in sdk.models.list()}
    backends = {
        backend["name"]: backend
        for backend in httpx.get(matrix_server.base_url + "/healthz").json()["backends"]
    }
    for family in FAMILIES:
        shown = models[family.name]
        assert shown["generations"] == family.generates, family.name
        if family.edits == "none":
            assert shown["edits"] is None, family.name
        else:
            assert shown["edits"]["kind"] == family.edits, family.name
            assert shown["edits"]["max_images"] == family.max_images, family.name
        assert backends[family.name]["edits"] == family.edits


@pytest.mark.parametrize("model", names(generates=True))
def test_generates_n_images_reproducibly(sdk: openai.OpenAI, model: str) -> None:
    def once() -> list[bytes]:
        result = sdk.images.generate(
            model=model, prompt="a red dot", n=2, quality="low", extra_body={"seed": 7}
        )
        return b64(result)

    first = once()
    assert [decoded(base64.b64encode(image).decode()).size for image in first] == [(1024, 1024)] * 2
    assert first[0] != first[1]
    assert once() == first  # the same seed: the same bytes


@pytest.mark.parametrize("model", names(generates=True))
def test_streams_the_partials_it_was_asked_for(sdk: openai.OpenAI, model: str) -> None:
    events = list(
        sdk.images.generate(
            model=model, prompt="a red dot", quality="high", stream=True, partial_images=2
        )
    )
    assert [event.type for event in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    partial, final = decoded(events[0].b64_json), decoded(events[-1].b64_json)  # type: ignore[union-attr]
    assert partial.size == final.size == (1024, 1024)
    assert partial.tobytes() != final.tobytes()


@pytest.mark.parametrize("model", names(generates=False))
def test_edit_only_models_refuse_generations(sdk: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.BadRequestError, match="only edits images") as refused:
        sdk.images.generate(model=model, prompt="a red dot", quality="low")
    assert refused.value.body["param"] == "model"  # type: ignore[index]


@pytest.mark.parametrize("model", names(edits=("img2img", "instruct")))
def test_edits_follow_their_input_reproducibly(sdk: openai.OpenAI, model: str) -> None:
    def edit(colour: tuple[int, int, int]) -> bytes:
        result = sdk.images.edit(
            model=model,
            image=picture(colour),
            prompt="make it blue",
            quality="low",
            extra_body={"seed": 4},
        )
        return b64(result)[0]

    first = edit((200, 30, 30))
    assert decoded(base64.b64encode(first).decode()).size == (1024, 1024)
    assert first == edit((200, 30, 30))
    assert first != edit((30, 200, 30))


@pytest.mark.parametrize("model", names(edits=("img2img", "instruct")))
def test_edits_take_several_images(sdk: openai.OpenAI, model: str) -> None:
    family = BY_NAME[model]
    count = min(family.max_images or 3, 3)
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)][:count]
    result = sdk.images.edit(
        model=model,
        image=[picture(colour) for colour in colours],
        prompt="put them together",
        quality="low",
    )
    assert len(result.data) == 1
    if family.max_images is not None:
        with pytest.raises(openai.BadRequestError, match=f"at most {family.max_images} input"):
            sdk.images.edit(
                model=model,
                image=[picture((9, 9, 9))] * (family.max_images + 1),
                prompt="put them together",
            )


@pytest.mark.parametrize("model", names(edits=("img2img", "instruct")))
def test_masked_edits_keep_the_pixels_outside_the_mask(sdk: openai.OpenAI, model: str) -> None:
    source = Image.new("RGB", (256, 256), (30, 140, 200))
    mask = Image.new("RGBA", (256, 256), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (64, 64, 192, 192))  # transparent: repaint here
    result = sdk.images.edit(
        model=model,
        image=("source.png", png(source), "image/png"),
        mask=("mask.png", png(mask), "image/png"),
        prompt="a dot",
        quality="low",
        size="1024x1024",
    )
    edited = np.asarray(decoded(result.data[0].b64_json or "").convert("RGB"), dtype=np.int16)
    assert np.abs(edited[:128, :128] - np.array([30, 140, 200])).max() <= 2


@pytest.mark.parametrize("model", names(edits=("none",)))
def test_models_without_edits_refuse_them(sdk: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.BadRequestError, match="cannot edit images") as refused:
        sdk.images.edit(model=model, image=picture((200, 30, 30)), prompt="make it blue")
    assert refused.value.body["param"] == "image"  # type: ignore[index]


def _user(text: str, *images: bytes) -> dict[str, object]:
    parts: list[dict[str, str]] = [{"type": "input_text", "text": text}]
    parts += [
        {
            "type": "input_image",
            "image_url": "data:image/png;base64," + base64.b64encode(i).decode(),
        }
        for i in images
    ]
    return {"role": "user", "content": parts}


def _call_result(response: object) -> bytes:
    calls = [o for o in response.output if o.type == "image_generation_call"]  # type: ignore[attr-defined]
    assert len(calls) == 1
    return base64.b64decode(calls[0].result)


@pytest.mark.parametrize("model", names(edits=("instruct",)))
def test_responses_edits_reach_the_model_as_the_edits_endpoint_sends_them(
    sdk: openai.OpenAI, model: str
) -> None:
    """Input images of the turn (then the conversation's latest image) go to the instruction
    edit model natively, in order: the same image as /v1/images/edits makes from them."""
    tool = {"type": "image_generation", "model": model, "quality": "low", "seed": 4}
    red, green = picture((200, 30, 30))[1], picture((30, 200, 30))[1]
    first = sdk.responses.create(
        model="gpt-4.1", input=[_user("make it blue", red, green)], tools=[tool]
    )
    edits = sdk.images.edit(
        model=model,
        image=[("a.png", red, "image/png"), ("b.png", green, "image/png")],
        prompt="make it blue",
        quality="low",
        extra_body={"seed": 4},
    )
    assert _call_result(first) == b64(edits)[0]
    # The next turn edits that result, with a new reference of its own first.
    second = sdk.responses.create(
        model="gpt-4.1",
        input=[_user("add this", green)],
        previous_response_id=first.id,
        tools=[tool],
    )
    chained = sdk.images.edit(
        model=model,
        image=[("b.png", green, "image/png"), ("r.png", _call_result(first), "image/png")],
        prompt="add this",
        quality="low",
        extra_body={"seed": 4},
    )
    assert _call_result(second) == b64(chained)[0]


@pytest.mark.parametrize("model", names(generates=False))
def test_responses_with_an_edit_only_model_need_an_image(sdk: openai.OpenAI, model: str) -> None:
    tool = {"type": "image_generation", "model": model, "quality": "low"}
    with pytest.raises(openai.BadRequestError, match="only edits images") as refused:
        sdk.responses.create(model="gpt-4.1", input="a red dot", tools=[tool])
    assert refused.value.body["param"] == "tools[0].model"  # type: ignore[index]
