"""The backend contract on other model families' tiny pipelines, loaded as users load them."""

from pathlib import Path

import pytest

from limner.engine.diffusers_backend import DiffusersBackend
from limner.engine.types import RenderJob
from tests.engine.backend_contract import BackendContract
from tests.engine.tiny_families import build_tiny_flux


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
    from PIL import Image

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
