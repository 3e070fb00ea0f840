"""`limner serve` with no model argument serves limner-mini, and every API feature works with it."""

import base64
import io
from collections.abc import Iterator

import numpy as np
import openai
import pytest
from PIL import Image, ImageDraw

from limner.catalog import OPENAI_MODEL_NAMES
from tests.api.conftest import png
from tests.conftest import API_KEY, LiveServer
from training.detect import read


@pytest.fixture()
def mini(mini_server: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=mini_server.api_url, api_key=API_KEY, max_retries=0) as sdk:
        yield sdk


def image_of(item: object) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(item.b64_json)))  # type: ignore[attr-defined]
    image.load()
    return image


def native(image: Image.Image) -> Image.Image:
    """Back to limner-mini's 32x32, where the detector reads scenes."""
    return image.convert("RGB").resize((32, 32), Image.Resampling.BOX)


def test_every_openai_name_is_served_by_limner_mini(mini: openai.OpenAI) -> None:
    ids = {model.id for model in mini.models.list()}
    assert ids == {"limner-mini", *OPENAI_MODEL_NAMES}


def test_prompt_is_followed(mini: openai.OpenAI) -> None:
    result = mini.images.generate(
        model="gpt-image-1",
        prompt="a red square on the left on a blue background",
        quality="medium",
        extra_body={"seed": 11},
    )
    reading = read(native(image_of(result.data[0])))
    assert reading.background == "blue"
    assert reading.objects and reading.objects[0].colour == "red"
    assert reading.objects[0].cx < 16


def test_seed_reproduces_exactly(mini: openai.OpenAI) -> None:
    kwargs = {"model": "gpt-image-1", "prompt": "a green star", "quality": "low"}
    first = mini.images.generate(**kwargs, extra_body={"seed": 5})
    second = mini.images.generate(**kwargs, extra_body={"seed": 5})
    other = mini.images.generate(**kwargs, extra_body={"seed": 6})
    assert first.data[0].b64_json == second.data[0].b64_json
    assert first.data[0].b64_json != other.data[0].b64_json


def test_transparent_background_is_keyed_out(mini: openai.OpenAI) -> None:
    result = mini.images.generate(
        model="gpt-image-1",
        prompt="a large black circle in the center on a white background",
        background="transparent",
        quality="medium",
        extra_body={"seed": 3},
    )
    alpha = np.asarray(image_of(result.data[0]).getchannel("A"))
    assert alpha[0, 0] == alpha[-1, -1] == 0
    assert alpha[512, 512] == 255


def test_edit_follows_the_input_image(mini: openai.OpenAI) -> None:
    source = Image.new("RGB", (256, 256), "green")
    ImageDraw.Draw(source).rectangle((96, 96, 160, 160), fill="red")
    result = mini.images.edit(
        model="gpt-image-1",
        image=("in.png", png(source), "image/png"),
        prompt="a red square in the center on a green background",
        input_fidelity="high",
        quality="medium",
        extra_body={"seed": 2},
    )
    reading = read(native(image_of(result.data[0])))
    assert reading.background == "green"
    assert reading.objects and reading.objects[0].colour == "red"


def test_mask_confines_the_change(mini: openai.OpenAI) -> None:
    source = Image.new("RGB", (1024, 1024), "yellow")
    mask = Image.new("RGBA", (1024, 1024), (0, 0, 0, 255))
    ImageDraw.Draw(mask).rectangle((0, 0, 511, 1023), fill=(0, 0, 0, 0))
    result = mini.images.edit(
        model="gpt-image-1",
        image=("in.png", png(source), "image/png"),
        mask=("mask.png", png(mask), "image/png"),
        prompt="a large blue circle on the left on a yellow background",
        quality="medium",
        extra_body={"seed": 4},
    )
    out = np.asarray(image_of(result.data[0]).convert("RGB"))
    assert (out[:, 512:] == np.asarray(source)[:, 512:]).all()  # outside the mask: untouched
    assert not (out[:, :512] == np.asarray(source)[:, :512]).all()  # inside: painted


@pytest.mark.parametrize("prompt", ["a square 16", "a square 17"])
def test_prompts_it_cannot_draw_get_its_best_picture_not_a_refusal(
    mini: openai.OpenAI, prompt: str
) -> None:
    """limner-mini draws noise for prompts outside its vocabulary; open_nsfw scored some of that
    noise above its threshold (17 of these 120 renders were refused as `sexual`)."""
    images = []
    for first_seed in range(0, 60, 10):  # seeds 0-59: image i of a request uses seed + i
        result = mini.images.generate(
            model="gpt-image-1", prompt=prompt, n=10, extra_body={"seed": first_seed}
        )
        images += [image_of(item) for item in result.data]
    assert len(images) == 60
    assert len({png(image) for image in images}) == 60  # 60 real renders, not one repeated
