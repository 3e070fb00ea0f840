"""Other model families through `limner serve --catalog` and the official SDK: tiny random-weight
pipelines of each family, saved and served as an operator serves the real ones."""

import base64
from collections.abc import Iterator

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from tests.api.conftest import decoded, png
from tests.conftest import API_KEY, LiveServer, start_server, stop_server
from tests.engine.tiny_families import build_tiny_flux, build_tiny_kontext

FAMILY_CATALOG = """
[backends.flux]
path = "{flux}"
[backends.flux.quality]
low = {{ steps = 2, resolution = 64 }}
medium = {{ steps = 3, resolution = 64 }}
high = {{ steps = 4, resolution = 64 }}

[backends.kontext]
path = "{kontext}"
[backends.kontext.quality]
low = {{ steps = 2, resolution = 64 }}
medium = {{ steps = 2, resolution = 64 }}
high = {{ steps = 3, resolution = 64 }}

[models.gpt-image-1]
backend = "flux"

[models.kontext]
backend = "kontext"

[models.flux-kontext]
backend = "flux"
edit_backend = "kontext"
"""


@pytest.fixture(scope="module")
def family_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("families")
    catalog = root / "catalog.toml"
    catalog.write_text(
        FAMILY_CATALOG.format(
            flux=build_tiny_flux(root / "flux"), kontext=build_tiny_kontext(root / "kontext")
        )
    )
    server = start_server(root / "home", ["--catalog", str(catalog)])
    yield server
    stop_server(server)


@pytest.fixture()
def sdk(family_server: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=family_server.api_url, api_key=API_KEY, max_retries=0) as client:
        yield client


def test_flux_generates_n_images(sdk: openai.OpenAI) -> None:
    result = sdk.images.generate(model="gpt-image-1", prompt="a red circle", n=2, quality="low")
    images = [decoded(item.b64_json or "") for item in result.data]
    assert [image.size for image in images] == [(1024, 1024)] * 2
    assert images[0].tobytes() != images[1].tobytes()


def test_flux_streams_the_partials_it_was_asked_for(sdk: openai.OpenAI) -> None:
    events = list(
        sdk.images.generate(
            model="gpt-image-1",
            prompt="a red circle",
            quality="high",
            stream=True,
            partial_images=2,
        )
    )
    kinds = [event.type for event in events]
    assert kinds == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    partial, final = decoded(events[0].b64_json), decoded(events[-1].b64_json)  # type: ignore[union-attr]
    assert partial.size == final.size == (1024, 1024)
    assert partial.tobytes() != final.tobytes()


def test_flux_same_seed_gives_the_same_bytes(sdk: openai.OpenAI) -> None:
    def once() -> str:
        result = sdk.images.generate(
            model="gpt-image-1", prompt="a dot", quality="low", extra_body={"seed": 9}
        )
        return result.data[0].b64_json or ""

    assert len({once() for _ in range(3)}) == 1


def test_flux_edit_with_a_mask_keeps_unmasked_pixels(sdk: openai.OpenAI) -> None:
    source = Image.new("RGB", (256, 256), (30, 140, 200))
    mask = Image.new("RGBA", (256, 256), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (64, 64, 192, 192))  # transparent: repaint here
    result = sdk.images.edit(
        model="gpt-image-1",
        image=("source.png", png(source), "image/png"),
        mask=("mask.png", png(mask), "image/png"),
        prompt="a dot",
        quality="low",
        size="1024x1024",
    )
    edited = np.asarray(decoded(result.data[0].b64_json or "").convert("RGB"), dtype=np.int16)
    kept = edited[:128, :128]  # far from the hole, scaled 4x
    assert np.abs(kept - np.array([30, 140, 200])).max() <= 2


def test_health_shows_how_each_backend_edits(family_server: LiveServer) -> None:
    backends = {
        b["name"]: b for b in httpx.get(family_server.base_url + "/healthz").json()["backends"]
    }
    assert (backends["kontext"]["edits"], backends["kontext"]["max_edit_images"]) == ("instruct", 1)
    assert (backends["flux"]["edits"], backends["flux"]["max_edit_images"]) == ("img2img", None)


def test_kontext_edits_one_image_natively(sdk: openai.OpenAI) -> None:
    def edit(color: tuple[int, int, int]) -> bytes:
        result = sdk.images.edit(
            model="kontext",
            image=("in.png", png(Image.new("RGB", (256, 256), color)), "image/png"),
            prompt="make it blue",
            extra_body={"seed": 4},
        )
        return base64.b64decode(result.data[0].b64_json or "")

    first = edit((200, 30, 30))
    assert first == edit((200, 30, 30))
    assert first != edit((30, 200, 30))


def test_kontext_refuses_more_images_than_it_takes(sdk: openai.OpenAI) -> None:
    image = png(Image.new("RGB", (64, 64), "red"))
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.images.edit(
            model="kontext",
            image=[("a.png", image, "image/png"), ("b.png", image, "image/png")],
            prompt="put them together",
        )
    error = refused.value.body
    assert error["param"] == "image"  # type: ignore[index]
    assert "at most 1 input image" in error["message"]  # type: ignore[index]


def test_kontext_edit_with_a_mask_keeps_unmasked_pixels(sdk: openai.OpenAI) -> None:
    source = Image.new("RGB", (256, 256), (30, 140, 200))
    mask = Image.new("RGBA", (256, 256), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (64, 64, 192, 192))
    result = sdk.images.edit(
        model="kontext",
        image=("source.png", png(source), "image/png"),
        mask=("mask.png", png(mask), "image/png"),
        prompt="a dot",
        size="1024x1024",
    )
    edited = np.asarray(decoded(result.data[0].b64_json or "").convert("RGB"), dtype=np.int16)
    assert np.abs(edited[:128, :128] - np.array([30, 140, 200])).max() <= 2


def kontext_renders(family_server: LiveServer) -> float:
    """Pipeline calls the kontext backend has run, from /metrics."""
    text = httpx.get(family_server.base_url + "/metrics").text
    for line in text.splitlines():
        if line.startswith('limner_generation_seconds_count{model="kontext"}'):
            return float(line.split()[-1])
    return 0.0


def test_one_name_generates_on_flux_and_edits_on_kontext(
    sdk: openai.OpenAI, family_server: LiveServer
) -> None:
    generated = sdk.images.generate(model="flux-kontext", prompt="a dot", quality="low")
    assert decoded(generated.data[0].b64_json or "").size == (1024, 1024)
    before = kontext_renders(family_server)
    image = png(Image.new("RGB", (64, 64), "red"))
    edited = sdk.images.edit(
        model="flux-kontext", image=("a.png", image, "image/png"), prompt="make it blue"
    )
    assert decoded(edited.data[0].b64_json or "").size == (1024, 1024)
    assert kontext_renders(family_server) == before + 1
    # Kontext's limit, not FLUX's (whose image-to-image takes any number, in a grid).
    with pytest.raises(openai.BadRequestError, match="at most 1 input image"):
        sdk.images.edit(
            model="flux-kontext",
            image=[("a.png", image, "image/png"), ("b.png", image, "image/png")],
            prompt="put them together",
        )


def test_models_say_what_each_name_can_do(sdk: openai.OpenAI) -> None:
    models = {model.id: model.model_dump() for model in sdk.models.list()}
    assert models["flux-kontext"]["limner"] == {
        "generations": True,
        "edits": {"kind": "instruct", "max_images": 1, "mask": "inpaint"},
    }
    assert models["gpt-image-1"]["limner"]["edits"] == {
        "kind": "img2img",
        "max_images": None,
        "mask": "inpaint",
    }


def test_health_shows_which_backend_runs_what(family_server: LiveServer) -> None:
    models = httpx.get(family_server.base_url + "/healthz").json()["models"]
    assert models["flux-kontext"] == {"generations": "flux", "edits": "kontext"}
    assert models["kontext"] == {"generations": "kontext", "edits": "kontext"}


@pytest.mark.parametrize("model", ["kontext", "gpt-image-1"])
def test_input_fidelity_reaches_the_model(sdk: openai.OpenAI, model: str) -> None:
    """Kontext gets its reference at 4x the working area for `high` (FLUX image-to-image:
    less of the schedule re-drawn); with the seed fixed, the two give other pictures."""
    source = Image.new("RGB", (256, 256), (200, 30, 30))
    source.paste((30, 30, 200), (0, 0, 128, 256))

    def edit(fidelity: str) -> str:
        result = sdk.images.edit(
            model=model,
            image=("in.png", png(source), "image/png"),
            prompt="make it blue",
            input_fidelity=fidelity,  # type: ignore[arg-type]
            extra_body={"seed": 4},
        )
        return result.data[0].b64_json or ""

    low = edit("low")
    assert low == edit("low")
    assert low != edit("high")
