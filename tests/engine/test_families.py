"""The backend contract on other model families' tiny pipelines, loaded as users load them."""

from pathlib import Path

import pytest
from PIL import Image

from limner.engine.diffusers_backend import DiffusersBackend
from limner.engine.types import RenderJob
from tests.engine.backend_contract import BackendContract
from tests.engine.tiny_families import build_tiny_flux, build_tiny_kontext


@pytest.fixture(scope="session")
def tiny_flux_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_flux(tmp_path_factory.mktemp("tiny-flux") / "pipeline")


@pytest.fixture(scope="session")
def flux_backend(tiny_flux_path: Path) -> DiffusersBackend:
    return DiffusersBackend("tiny-flux", tiny_flux_path, device="cpu")


class TestFluxBackend(BackendContract):
    @pytest.fixture
    def backend(self, flux_backend: DiffusersBackend) -> DiffusersBackend:
        return flux_backend


def test_flux_previews_unpack_its_packed_latents(flux_backend: DiffusersBackend) -> None:
    """FLUX hands the step callback (batch, tokens, channels) latents; each step still decodes
    to one real intermediate image per row, at the job's size."""
    job = RenderJob(backend="tiny-flux", prompt="a dot", n=2, width=48, height=32, steps=3, seed=3)
    previews = []

    def on_step(step: object) -> None:
        assert step.preview is not None  # type: ignore[attr-defined]
        previews.append(step.preview())  # type: ignore[attr-defined]

    final = flux_backend.render(job, on_step)
    assert len(previews) == 3
    assert all([image.size for image in row] == [(48, 32)] * 2 for row in previews)
    # Intermediate states, not the final picture three times.
    assert previews[0][0].tobytes() != final[0].tobytes()


def test_flux_edits_render_at_the_working_size(flux_backend: DiffusersBackend) -> None:
    """FLUX's image-to-image defaults to 1024²; the job's working size is what it must run."""
    sizes = []
    vae = flux_backend._derived("img2img").vae
    original = vae.decode

    def recording_decode(latents: object, *args: object, **kwargs: object) -> object:
        sizes.append(tuple(latents.shape[-2:]))  # type: ignore[attr-defined]
        return original(latents, *args, **kwargs)

    vae.decode = recording_decode
    try:
        job = RenderJob(
            backend="tiny-flux",
            prompt="a dot",
            n=1,
            width=48,
            height=32,
            steps=2,
            seed=3,
            task="img2img",
            init_image=Image.new("RGB", (48, 32), "red"),
            strength=0.6,
        )
        flux_backend.render(job, lambda _step: None)
    finally:
        del vae.decode
    scale = flux_backend._derived("img2img").vae_scale_factor
    assert sizes == [(32 // scale, 48 // scale)]


@pytest.fixture(scope="session")
def kontext_backend(tmp_path_factory: pytest.TempPathFactory) -> DiffusersBackend:
    path = build_tiny_kontext(tmp_path_factory.mktemp("tiny-kontext") / "pipeline")
    return DiffusersBackend("tiny-kontext", path, device="cpu")


def test_kontext_declares_native_edits_of_one_image(kontext_backend: DiffusersBackend) -> None:
    info = kontext_backend.info()
    assert (info.edit_kind, info.max_edit_images) == ("instruct", 1)
    # No image-to-image twin (AutoPipeline's would be Kontext itself, which takes no strength);
    # its inpainting twin is diffusers' FluxKontextInpaintPipeline, sharing the weights.
    assert info.tasks == ("text2img", "inpaint", "edit")
    inpaint = kontext_backend._derived("inpaint")
    assert type(inpaint).__name__ == "FluxKontextInpaintPipeline"
    assert inpaint.transformer is kontext_backend._derived("edit").transformer


def kontext_edit(reference: Image.Image, seed: int = 1, **fields: object) -> RenderJob:
    return RenderJob(
        backend="tiny-kontext",
        prompt="make it blue",
        n=1,
        width=48,
        height=32,
        steps=2,
        seed=seed,
        task="edit",
        reference_images=(reference,),
        **fields,  # type: ignore[arg-type]
    )


def test_kontext_edits_follow_the_reference_at_the_working_size(
    kontext_backend: DiffusersBackend,
) -> None:
    red, green = Image.new("RGB", (40, 40), "red"), Image.new("RGB", (40, 40), "green")
    first = kontext_backend.render(kontext_edit(red), lambda _step: None)[0]
    again = kontext_backend.render(kontext_edit(red), lambda _step: None)[0]
    other = kontext_backend.render(kontext_edit(green), lambda _step: None)[0]
    assert first.size == (48, 32)
    assert first.tobytes() == again.tobytes()
    assert first.tobytes() != other.tobytes()  # the reference reaches the model


def test_kontext_edits_stream_previews(kontext_backend: DiffusersBackend) -> None:
    previews = []

    def on_step(step: object) -> None:
        previews.append(step.preview() if step.preview else None)  # type: ignore[attr-defined]

    kontext_backend.render(kontext_edit(Image.new("RGB", (40, 40), "red")), on_step)
    assert [len(row) for row in previews if row] == [1, 1]
