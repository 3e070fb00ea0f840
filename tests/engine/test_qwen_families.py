"""The Qwen-Image family (Qwen-Image, Qwen-Image-Edit, Qwen-Image-Edit Plus) on tiny pipelines,
loaded as users load them.

The edit pipelines VAE-encode every reference image at about 1 MP whatever the job's size (and
Qwen-Image-Edit's inpainting renders at about 1 MP too), so each edit call costs seconds even
with tiny models: the edit tests share their renders through fixtures.
"""

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
from tests.engine.tiny_qwen import (
    build_tiny_qwen_image,
    build_tiny_qwen_image_edit,
    build_tiny_qwen_image_edit_plus,
)

# Qwen-Image: text-to-image, edits through its image-to-image and inpainting twins.


@pytest.fixture(scope="session")
def qwen_image(tmp_path_factory: pytest.TempPathFactory) -> DiffusersBackend:
    path = build_tiny_qwen_image(tmp_path_factory.mktemp("tiny-qwen-image") / "pipeline")
    return DiffusersBackend("tiny-qwen-image", path, device="cpu")


def test_qwen_image_edits_with_its_image_to_image_twins(qwen_image: DiffusersBackend) -> None:
    info = qwen_image.info()
    assert info.tasks == ("text2img", "img2img", "inpaint")
    assert (info.edit_kind, info.max_edit_images) == ("img2img", None)
    img2img, inpaint = qwen_image._derived("img2img"), qwen_image._derived("inpaint")
    assert type(img2img).__name__ == "QwenImageImg2ImgPipeline"
    assert type(inpaint).__name__ == "QwenImageInpaintPipeline"
    assert img2img.transformer is inpaint.transformer is qwen_image._derived("text2img").transformer


def test_qwen_image_generates_reproducibly_at_the_job_size(qwen_image: DiffusersBackend) -> None:
    recorder = StepRecorder()
    first = qwen_image.render(job(qwen_image, n=2), recorder)
    assert sizes(first) == [SIZE] * 2
    assert [(step.step, step.total) for step in recorder.steps] == [(1, 2), (2, 2)]
    assert not same_bytes(first[:1], first[1:])
    assert same_bytes(first, render(qwen_image, n=2))
    assert not same_bytes(first, render(qwen_image, n=2, prompt="a blue square"))


def test_qwen_image_batch_image_i_equals_a_solo_render_with_seed_plus_i(
    qwen_image: DiffusersBackend,
) -> None:
    batch = render(qwen_image, n=2, seed=40)
    [solo] = render(qwen_image, seed=41)
    assert mean_difference(batch[1], solo) < SAME_PICTURE


@pytest.mark.parametrize("task", ["img2img", "inpaint"])
def test_qwen_image_edits_follow_their_init_image(qwen_image: DiffusersBackend, task: str) -> None:
    fields: dict[str, object] = {"task": task, "strength": 0.6, "steps": 4}
    if task == "inpaint":
        fields["mask"] = centre_mask(*SIZE)
    red = render(qwen_image, init_image=Image.new("RGB", SIZE, "red"), **fields)
    assert sizes(red) == [SIZE]
    assert same_bytes(red, render(qwen_image, init_image=Image.new("RGB", SIZE, "red"), **fields))
    assert not same_bytes(
        red, render(qwen_image, init_image=Image.new("RGB", SIZE, "green"), **fields)
    )


def test_qwen_image_previews_decode_as_the_pipeline_does(qwen_image: DiffusersBackend) -> None:
    """Qwen-Image hands the step callback packed (batch, tokens, 4 x channels) latents,
    normalised by the VAE's per-channel latents_mean/std; the pipeline unpacks them to the VAE's
    (batch, channels, 1, height, width) and denormalises before decoding, and so must a
    preview: the last step's is the final picture."""
    recorder = StepRecorder(decode_previews=True)
    final = qwen_image.render(job(qwen_image, n=2), recorder)
    assert [sizes(row) for row in recorder.previews] == [[SIZE] * 2] * 2
    for preview, image in zip(recorder.previews[-1], final, strict=True):
        assert mean_difference(preview, image) < SAME_PICTURE


# Qwen-Image-Edit: one reference image; no text-to-image.


@pytest.fixture(scope="session")
def qwen_image_edit(tmp_path_factory: pytest.TempPathFactory) -> DiffusersBackend:
    path = build_tiny_qwen_image_edit(tmp_path_factory.mktemp("tiny-qwen-edit") / "pipeline")
    return DiffusersBackend("tiny-qwen-image-edit", path, device="cpu")


@pytest.fixture(scope="session")
def edit_of_red(qwen_image_edit: DiffusersBackend) -> tuple[list[Image.Image], StepRecorder]:
    """One edit of the red reference, its previews decoded; shared, as each costs seconds."""
    recorder = StepRecorder(decode_previews=True)
    images = qwen_image_edit.render(
        job(qwen_image_edit, task="edit", reference_images=(RED,)), recorder
    )
    return images, recorder


def test_qwen_image_edit_declares_instruction_edits_of_one_image(
    qwen_image_edit: DiffusersBackend,
) -> None:
    info = qwen_image_edit.info()
    assert (info.edit_kind, info.max_edit_images) == ("instruct", 1)
    # No text-to-image; inpainting is diffusers' edit-inpaint class, sharing the weights.
    assert info.tasks == ("inpaint", "edit")
    inpaint = qwen_image_edit._derived("inpaint")
    assert type(inpaint).__name__ == "QwenImageEditInpaintPipeline"
    assert inpaint.transformer is qwen_image_edit._derived("edit").transformer


def test_qwen_image_edit_follows_its_reference_reproducibly(
    qwen_image_edit: DiffusersBackend, edit_of_red: tuple[list[Image.Image], StepRecorder]
) -> None:
    red, _ = edit_of_red
    assert sizes(red) == [SIZE]
    assert same_bytes(red, render(qwen_image_edit, task="edit", reference_images=(RED,)))
    green = render(qwen_image_edit, task="edit", reference_images=(GREEN,))
    assert not same_bytes(red, green)  # the reference reaches the model


def test_qwen_image_edit_previews_decode_as_the_pipeline_does(
    edit_of_red: tuple[list[Image.Image], StepRecorder],
) -> None:
    """The edit's step latents are the output's tokens alone (the reference's ride beside them
    only inside the transformer call), so they unpack at the job's size."""
    final, recorder = edit_of_red
    assert [sizes(row) for row in recorder.previews] == [[SIZE]] * 2
    assert mean_difference(recorder.previews[-1][0], final[0]) < SAME_PICTURE


def test_qwen_image_edit_renders_n_images_of_one_reference(
    qwen_image_edit: DiffusersBackend,
) -> None:
    images = render(qwen_image_edit, task="edit", reference_images=(RED,), n=2)
    assert sizes(images) == [SIZE] * 2
    assert not same_bytes(images[:1], images[1:])


def test_qwen_image_edit_inpaints_at_the_job_size(qwen_image_edit: DiffusersBackend) -> None:
    fields = {"task": "inpaint", "init_image": gradient_image(*SIZE), "strength": 0.6}
    recorder = StepRecorder()
    images = qwen_image_edit.render(
        job(qwen_image_edit, mask=centre_mask(*SIZE), **fields), recorder
    )
    assert sizes(images) == [SIZE]
    assert all(image.mode == "RGB" for image in images)
    assert recorder.steps, "inpainting ran no denoising step"


# Qwen-Image-Edit Plus (2509/2511): up to three reference images; no text-to-image.


@pytest.fixture(scope="session")
def qwen_image_edit_plus(tmp_path_factory: pytest.TempPathFactory) -> DiffusersBackend:
    path = build_tiny_qwen_image_edit_plus(
        tmp_path_factory.mktemp("tiny-qwen-edit-plus") / "pipeline"
    )
    return DiffusersBackend("tiny-qwen-image-edit-plus", path, device="cpu")


def test_qwen_image_edit_plus_declares_instruction_edits_of_three_images(
    qwen_image_edit_plus: DiffusersBackend,
) -> None:
    info = qwen_image_edit_plus.info()
    assert (info.edit_kind, info.max_edit_images) == ("instruct", 3)
    assert info.tasks == ("edit",)  # diffusers has no inpainting twin for it


def test_qwen_image_edit_plus_edits_follow_each_reference(
    qwen_image_edit_plus: DiffusersBackend,
) -> None:
    red = render(qwen_image_edit_plus, task="edit", reference_images=(RED,))
    assert sizes(red) == [SIZE]
    green = render(qwen_image_edit_plus, task="edit", reference_images=(GREEN,))
    assert not same_bytes(red, green)  # the reference reaches the model
    # Two references in one call, the second reaching the model too.
    both = render(qwen_image_edit_plus, task="edit", reference_images=(RED, GREEN))
    assert sizes(both) == [SIZE]
    assert not same_bytes(both, red)


def test_qwen_image_edit_plus_renders_n_images_of_its_references(
    qwen_image_edit_plus: DiffusersBackend,
) -> None:
    images = render(qwen_image_edit_plus, task="edit", reference_images=(RED,), n=2)
    assert sizes(images) == [SIZE] * 2
    assert not same_bytes(images[:1], images[1:])
