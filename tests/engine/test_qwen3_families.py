"""The Qwen3-prompted families (FLUX.2 klein, Z-Image) on tiny pipelines, loaded as users do."""

import pytest
from PIL import Image

from limner.engine.diffusers_backend import DiffusersBackend
from tests.engine.backend_contract import (
    SAME_PICTURE,
    StepRecorder,
    centre_mask,
    gradient_image,
    mean_difference,
)
from tests.engine.family_jobs import GREEN, RED, SIZE, job, render, same_bytes, sizes
from tests.engine.tiny_qwen3_families import build_tiny_flux2_klein, build_tiny_z_image

# FLUX.2 klein.


@pytest.fixture(scope="session")
def flux2_klein(tmp_path_factory: pytest.TempPathFactory) -> DiffusersBackend:
    path = build_tiny_flux2_klein(tmp_path_factory.mktemp("tiny-flux2-klein") / "pipeline")
    return DiffusersBackend("tiny-flux2-klein", path, device="cpu")


def test_flux2_klein_declares_native_edits_of_up_to_four_images(
    flux2_klein: DiffusersBackend,
) -> None:
    info = flux2_klein.info()
    assert (info.edit_kind, info.max_edit_images) == ("instruct", 4)
    # No image-to-image twin; inpainting is diffusers' klein inpaint class, sharing the weights.
    assert info.tasks == ("text2img", "inpaint", "edit")
    inpaint = flux2_klein._derived("inpaint")
    assert type(inpaint).__name__ == "Flux2KleinInpaintPipeline"
    assert inpaint.transformer is flux2_klein._derived("edit").transformer


def test_flux2_klein_generates_reproducibly_at_the_job_size(flux2_klein: DiffusersBackend) -> None:
    first = render(flux2_klein, n=2)
    assert sizes(first) == [SIZE] * 2
    assert same_bytes(first, render(flux2_klein, n=2))
    assert not same_bytes(first, render(flux2_klein, n=2, prompt="a blue square"))


def test_flux2_klein_edits_follow_their_references(flux2_klein: DiffusersBackend) -> None:
    red = render(flux2_klein, task="edit", reference_images=(RED,))
    assert sizes(red) == [SIZE]
    assert same_bytes(red, render(flux2_klein, task="edit", reference_images=(RED,)))
    green = render(flux2_klein, task="edit", reference_images=(GREEN,))
    assert not same_bytes(red, green)  # the reference reaches the model
    # Two references in one call, each reaching the model.
    both = render(flux2_klein, task="edit", reference_images=(RED, GREEN), n=2)
    assert sizes(both) == [SIZE] * 2
    assert not same_bytes(both[:1], red)


def test_flux2_klein_edits_take_references_smaller_than_the_model_reads(
    flux2_klein: DiffusersBackend,
) -> None:
    """The klein pipeline refuses a reference under 64 px a side; a user's small picture is
    still an edit input, rendered at the job's size."""
    small = Image.new("RGB", (40, 40), "red")
    assert sizes(render(flux2_klein, task="edit", reference_images=(small,))) == [SIZE]


def test_flux2_klein_inpaints_at_the_job_size(flux2_klein: DiffusersBackend) -> None:
    init = gradient_image(*SIZE)
    fields = {"task": "inpaint", "init_image": init, "mask": centre_mask(*SIZE), "strength": 0.6}
    images = render(flux2_klein, n=2, **fields)
    assert sizes(images) == [SIZE] * 2
    assert same_bytes(images, render(flux2_klein, n=2, **fields))


def test_flux2_klein_previews_decode_as_the_pipeline_does(flux2_klein: DiffusersBackend) -> None:
    """FLUX.2 hands the step callback packed (batch, tokens, channels) latents, normalised by
    the VAE's batch norm; the last step's latents are the final ones, so decoded as the
    pipeline decodes them (scattered by position ids, denormalised, unpatchified) the last
    preview is the final picture."""
    recorder = StepRecorder(decode_previews=True)
    final = flux2_klein.render(job(flux2_klein, n=2), recorder)
    assert [sizes(row) for row in recorder.previews] == [[SIZE] * 2] * 2
    for preview, image in zip(recorder.previews[-1], final, strict=True):
        assert mean_difference(preview, image) < SAME_PICTURE


# Z-Image.


@pytest.fixture(scope="session")
def z_image(tmp_path_factory: pytest.TempPathFactory) -> DiffusersBackend:
    path = build_tiny_z_image(tmp_path_factory.mktemp("tiny-z-image") / "pipeline")
    return DiffusersBackend("tiny-z-image", path, device="cpu")


def test_z_image_edits_with_its_image_to_image_twins(z_image: DiffusersBackend) -> None:
    info = z_image.info()
    assert (info.tasks, info.edit_kind) == (("text2img", "img2img", "inpaint"), "img2img")
    assert type(z_image._derived("img2img")).__name__ == "ZImageImg2ImgPipeline"
    assert type(z_image._derived("inpaint")).__name__ == "ZImageInpaintPipeline"


def test_z_image_generates_reproducibly_at_the_job_size(z_image: DiffusersBackend) -> None:
    first = render(z_image, n=2)
    assert sizes(first) == [SIZE] * 2
    assert same_bytes(first, render(z_image, n=2))
    assert not same_bytes(first, render(z_image, n=2, prompt="a blue square"))


def test_z_image_renders_sizes_that_are_not_a_multiple_of_16(z_image: DiffusersBackend) -> None:
    """The pipeline refuses a size that is not a multiple of 16; the job's size is exact anyway."""
    assert sizes(render(z_image, width=40, height=40)) == [(40, 40)]


@pytest.mark.parametrize("task", ["img2img", "inpaint"])
def test_z_image_edits_follow_their_init_image(z_image: DiffusersBackend, task: str) -> None:
    # Four steps: at strength 0.6 the pipeline skips the first (int(4 - 4 * 0.6) = 1), so the
    # init image is noised, not replaced by noise (two steps would skip none: sigma 1).
    fields: dict[str, object] = {"task": task, "strength": 0.6, "steps": 4}
    if task == "inpaint":
        fields["mask"] = centre_mask(*SIZE)
    red = render(z_image, init_image=Image.new("RGB", SIZE, "red"), **fields)
    assert sizes(red) == [SIZE]
    assert same_bytes(red, render(z_image, init_image=Image.new("RGB", SIZE, "red"), **fields))
    assert not same_bytes(
        red, render(z_image, init_image=Image.new("RGB", SIZE, "green"), **fields)
    )


def test_z_image_previews_decode_as_the_pipeline_does(z_image: DiffusersBackend) -> None:
    recorder = StepRecorder(decode_previews=True)
    final = z_image.render(job(z_image, n=2), recorder)
    assert [sizes(row) for row in recorder.previews] == [[SIZE] * 2] * 2
    for preview, image in zip(recorder.previews[-1], final, strict=True):
        assert mean_difference(preview, image) < SAME_PICTURE
