"""The Images API driven by the official openai SDK against a live server, sync and async."""

import base64
import io

import httpx
import numpy as np
import openai
import pytest

from tests.api.conftest import decode, encoded, mask_bytes, png_bytes


def b64_image(item: object):
    return decode(base64.b64decode(item.b64_json))  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("output_format", "pil_format"), [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")]
)
def test_generation_in_each_output_format(
    client: openai.OpenAI, output_format: str, pil_format: str
) -> None:
    result = client.images.generate(
        model="gpt-image-1", prompt="a red circle", quality="low", output_format=output_format
    )
    image = b64_image(result.data[0])
    assert image.format == pil_format
    assert image.size == (1024, 1024)
    assert result.output_format == output_format
    assert result.quality == "low"
    assert result.size == "1024x1024"
    assert result.background == "opaque"
    assert result.data[0].url is None


@pytest.mark.parametrize("size", ["1024x1024", "1536x1024", "1024x1536"])
def test_generation_sizes(client: openai.OpenAI, size: str) -> None:
    result = client.images.generate(
        model="gpt-image-1", prompt="a square", size=size, quality="low"
    )
    width, height = (int(side) for side in size.split("x"))
    assert b64_image(result.data[0]).size == (width, height)
    assert result.size == size


def test_auto_values_are_resolved(client: openai.OpenAI) -> None:
    result = client.images.generate(
        model="gpt-image-1", prompt="a blue star", size="auto", quality="auto", background="auto"
    )
    assert result.size == "1024x1024"
    assert result.quality == "high"  # the catalog's auto_quality default
    assert result.background == "opaque"


def test_n_images_with_usage(client: openai.OpenAI) -> None:
    prompt = "three green triangles on a white backdrop"
    result = client.images.generate(
        model="gpt-image-1", prompt=prompt, n=3, quality="medium", extra_body={"seed": 7}
    )
    assert len(result.data) == 3
    pixels = [np.asarray(b64_image(item)) for item in result.data]
    assert not np.array_equal(pixels[0], pixels[1])  # each image has its own seed
    usage = result.usage
    assert usage is not None
    assert usage.output_tokens == 3 * 1056
    assert usage.input_tokens_details.image_tokens == 0
    assert usage.input_tokens == usage.input_tokens_details.text_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


def test_seed_reproduces_exactly(client: openai.OpenAI) -> None:
    first = client.images.generate(
        model="gpt-image-1", prompt="a cat", quality="low", extra_body={"seed": 42}
    )
    second = client.images.generate(
        model="gpt-image-1", prompt="a cat", quality="low", extra_body={"seed": 42}
    )
    other = client.images.generate(
        model="gpt-image-1", prompt="a cat", quality="low", extra_body={"seed": 43}
    )
    assert first.data[0].b64_json == second.data[0].b64_json
    assert first.data[0].b64_json != other.data[0].b64_json


def test_seed_header_reproduces_an_unseeded_request(client: openai.OpenAI) -> None:
    raw = client.images.with_raw_response.generate(
        model="gpt-image-1", prompt="a dog", quality="low"
    )
    seed = int(raw.headers["x-limner-seed"])
    again = client.images.generate(
        model="gpt-image-1", prompt="a dog", quality="low", extra_body={"seed": seed}
    )
    assert raw.parse().data[0].b64_json == again.data[0].b64_json


def test_transparent_background_has_real_alpha(client: openai.OpenAI) -> None:
    # The random tiny model paints noise edge to edge, so the background comes from the input:
    # an orange disc on white, with only the disc's centre open to repainting.
    size = (1024, 1024)
    result = client.images.edit(
        model="gpt-image-1",
        image=("in.png", png_bytes(size, "white"), "image/png"),
        mask=("mask.png", mask_bytes(size, (448, 448, 576, 576)), "image/png"),
        prompt="a logo",
        background="transparent",
        quality="low",
    )
    image = b64_image(result.data[0])
    assert result.background == "transparent"
    assert image.mode == "RGBA"
    alpha = np.asarray(image.getchannel("A"))
    assert alpha[0, 0] == 0 and alpha[-1, -1] == 0  # white backdrop keyed out
    assert alpha[300, 512] == 255  # the disc stays opaque
    assert alpha[512, 512] == 255  # and so does the repainted centre


def test_transparent_generation_keeps_an_alpha_channel(client: openai.OpenAI) -> None:
    result = client.images.generate(
        model="gpt-image-1", prompt="a logo", background="transparent", quality="low"
    )
    assert b64_image(result.data[0]).mode == "RGBA"


def test_opaque_background_has_no_alpha(client: openai.OpenAI) -> None:
    result = client.images.generate(
        model="gpt-image-1",
        prompt="a logo",
        background="opaque",
        output_format="webp",
        quality="low",
    )
    assert b64_image(result.data[0]).mode == "RGB"


def test_jpeg_compression_changes_size(client: openai.OpenAI) -> None:
    kwargs = {
        "model": "gpt-image-1",
        "prompt": "noise",
        "quality": "low",
        "output_format": "jpeg",
        "extra_body": {"seed": 3},
    }
    small = client.images.generate(output_compression=5, **kwargs)
    large = client.images.generate(output_compression=95, **kwargs)
    assert len(small.data[0].b64_json) < len(large.data[0].b64_json)


def test_edit_with_one_image(client: openai.OpenAI) -> None:
    result = client.images.edit(
        model="gpt-image-1",
        image=("in.png", png_bytes(), "image/png"),
        prompt="make it blue",
        quality="low",
    )
    assert b64_image(result.data[0]).size == (1024, 1024)
    assert result.usage is not None
    assert result.usage.input_tokens_details.image_tokens == 194  # one square input: 65 + 129


def test_edit_with_three_images_and_mask_keeps_unmasked_pixels(client: openai.OpenAI) -> None:
    size = (1024, 1024)
    first = png_bytes(size, "navy")
    images = [
        ("a.png", first, "image/png"),
        ("b.png", png_bytes((512, 768), "green"), "image/png"),
        ("c.png", png_bytes((64, 64), "purple"), "image/png"),
    ]
    result = client.images.edit(
        model="gpt-image-1",
        image=images,
        mask=("mask.png", mask_bytes(size, (0, 0, 512, 1024)), "image/png"),
        prompt="fill the left half with a sunset",
        size="1024x1024",
        quality="low",
    )
    out = np.asarray(b64_image(result.data[0]).convert("RGB")).astype(int)
    original = np.asarray(decode(first).convert("RGB")).astype(int)
    assert np.array_equal(out[:, 512:], original[:, 512:])  # outside the mask: untouched
    assert not np.array_equal(out[:, :512], original[:, :512])  # inside: repainted
    assert result.usage.input_tokens_details.image_tokens == 194 + 323 + 194


def test_edit_json_variant_with_data_urls(live_server, client: openai.OpenAI) -> None:
    data_url = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    response = httpx.post(
        live_server.api_url + "/images/edits",
        json={
            "model": "gpt-image-1",
            "prompt": "add a hat",
            "images": [{"image_url": data_url}],
            "mask": {
                "image_url": "data:image/png;base64," + base64.b64encode(mask_bytes()).decode()
            },
            "quality": "low",
            "output_format": "webp",
        },
        headers={"authorization": f"Bearer {client.api_key}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["output_format"] == "webp"
    assert decode(base64.b64decode(body["data"][0]["b64_json"])).format == "WEBP"


def test_edit_accepts_sdk_raw_bytes(client: openai.OpenAI) -> None:
    # The SDK sends bare bytes as application/octet-stream; Limner sniffs the real format.
    result = client.images.edit(
        model="gpt-image-1", image=io.BytesIO(png_bytes()), prompt="x", quality="low"
    )
    assert len(result.data) == 1


def test_dalle2_generation_returns_fetchable_url(client: openai.OpenAI) -> None:
    result = client.images.generate(model="dall-e-2", prompt="a lighthouse", size="256x256", n=2)
    assert len(result.data) == 2
    assert result.usage is None and result.size is None
    for item in result.data:
        assert item.b64_json is None and item.url
        fetched = httpx.get(item.url, timeout=10)
        assert fetched.status_code == 200
        assert fetched.headers["content-type"] == "image/png"
        assert decode(fetched.content).size == (256, 256)


def test_dalle3_b64_with_revised_prompt(client: openai.OpenAI) -> None:
    result = client.images.generate(
        model="dall-e-3",
        prompt="a castle",
        size="1792x1024",
        quality="hd",
        style="natural",
        response_format="b64_json",
    )
    assert b64_image(result.data[0]).size == (1792, 1024)
    assert result.data[0].revised_prompt == "a castle"


def test_default_model_is_dalle2_unless_gpt_only_field(client: openai.OpenAI) -> None:
    plain = client.images.generate(prompt="a tree", size="256x256")
    assert plain.data[0].url is not None  # dall-e-2 answers with a URL by default
    gpt = client.images.generate(prompt="a tree", output_format="png", quality="low")
    assert gpt.data[0].b64_json is not None and gpt.usage is not None


def test_variation(client: openai.OpenAI) -> None:
    square = png_bytes((256, 256), "teal")
    result = client.images.create_variation(
        image=("in.png", square, "image/png"), n=2, size="512x512", response_format="b64_json"
    )
    assert [b64_image(item).size for item in result.data] == [(512, 512), (512, 512)]


def test_dalle2_edit_uses_image_transparency_as_mask(client: openai.OpenAI) -> None:
    from PIL import Image

    image = Image.new("RGBA", (256, 256), (10, 120, 200, 255))
    image.paste((0, 0, 0, 0), (0, 0, 128, 256))
    result = client.images.edit(
        model="dall-e-2",
        image=("in.png", encoded(image), "image/png"),
        prompt="a sun",
        size="256x256",
        response_format="b64_json",
    )
    out = np.asarray(b64_image(result.data[0]).convert("RGB")).astype(int)
    assert (out[:, 128:] == [10, 120, 200]).all()


@pytest.mark.anyio
async def test_async_client_generation_and_edit(async_client: openai.AsyncOpenAI) -> None:
    async with async_client:
        generated = await async_client.images.generate(
            model="gpt-image-1-mini", prompt="a boat", quality="low"
        )
        edited = await async_client.images.edit(
            model="gpt-image-1.5",
            image=[("a.png", png_bytes(), "image/png")],
            prompt="at night",
            quality="low",
        )
    assert b64_image(generated.data[0]).size == (1024, 1024)
    assert b64_image(edited.data[0]).size == (1024, 1024)
