"""The backend contract on tiny SDXL, SD3 and SANA pipelines, loaded as users load them."""

from typing import Any

import pytest
import torch
from PIL import Image

from limner.engine.diffusers_backend import DiffusersBackend
from limner.engine.types import RenderJob, Task
from tests.engine.backend_contract import BackendContract, centre_mask, gradient_image
from tests.engine.tiny_sd_families import build_tiny_sana, build_tiny_sd3, build_tiny_sdxl


@pytest.fixture(scope="session")
def sdxl_backend(tmp_path_factory: pytest.TempPathFactory) -> DiffusersBackend:
    path = build_tiny_sdxl(tmp_path_factory.mktemp("tiny-sdxl") / "pipeline")
    return DiffusersBackend("tiny-sdxl", path, device="cpu")


@pytest.fixture(scope="session")
def sd3_backend(tmp_path_factory: pytest.TempPathFactory) -> DiffusersBackend:
    path = build_tiny_sd3(tmp_path_factory.mktemp("tiny-sd3") / "pipeline")
    return DiffusersBackend("tiny-sd3", path, device="cpu")


@pytest.fixture(scope="session")
def sana_backend(tmp_path_factory: pytest.TempPathFactory) -> DiffusersBackend:
    path = build_tiny_sana(tmp_path_factory.mktemp("tiny-sana") / "pipeline")
    return DiffusersBackend("tiny-sana", path, device="cpu")


class TestSDXLBackend(BackendContract):
    @pytest.fixture
    def backend(self, sdxl_backend: DiffusersBackend) -> DiffusersBackend:
        return sdxl_backend


class TestSD3Backend(BackendContract):
    @pytest.fixture
    def backend(self, sd3_backend: DiffusersBackend) -> DiffusersBackend:
        return sd3_backend


class TestSanaBackend(BackendContract):
    # SANA renders only sizes divisible by 32.
    width = 64
    height = 64

    @pytest.fixture
    def backend(self, sana_backend: DiffusersBackend) -> DiffusersBackend:
        return sana_backend


def test_sdxl_and_sd3_offer_image_to_image_and_inpainting(
    sdxl_backend: DiffusersBackend, sd3_backend: DiffusersBackend
) -> None:
    assert [type(sdxl_backend._derived(t)).__name__ for t in ("img2img", "inpaint")] == [
        "StableDiffusionXLImg2ImgPipeline",
        "StableDiffusionXLInpaintPipeline",
    ]
    assert [type(sd3_backend._derived(t)).__name__ for t in ("img2img", "inpaint")] == [
        "StableDiffusion3Img2ImgPipeline",
        "StableDiffusion3InpaintPipeline",
    ]
    for backend in (sdxl_backend, sd3_backend):
        info = backend.info()
        assert (info.tasks, info.edit_kind) == (("text2img", "img2img", "inpaint"), "img2img")


def test_sana_offers_text_to_image_only(sana_backend: DiffusersBackend) -> None:
    """diffusers maps no image-to-image or inpainting twin for SanaPipeline."""
    info = sana_backend.info()
    assert (info.tasks, info.edit_kind, info.max_edit_images) == (("text2img",), "none", None)


class DecodedSizes:
    """Records the latent (height, width) each `vae.decode` of a pipeline is given."""

    def __init__(self, vae: Any) -> None:
        self.sizes: list[tuple[int, int]] = []
        self._vae = vae
        self._decode = vae.decode

    def __enter__(self) -> "DecodedSizes":
        def recording_decode(latents: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            self.sizes.append(tuple(latents.shape[-2:]))  # type: ignore[arg-type]
            return self._decode(latents, *args, **kwargs)

        self._vae.decode = recording_decode
        return self

    def __exit__(self, *_exc: object) -> None:
        del self._vae.decode


@pytest.fixture(params=["sdxl", "sd3"])
def edit_backend(request: pytest.FixtureRequest) -> DiffusersBackend:
    backend: DiffusersBackend = request.getfixturevalue(f"{request.param}_backend")
    return backend


@pytest.mark.parametrize("task", ["text2img", "img2img", "inpaint"])
def test_every_task_renders_at_the_working_size_and_previews(
    edit_backend: DiffusersBackend, task: Task
) -> None:
    """SD3's edit pipelines default to 1024² without a size; each call must run the job's 64x48,
    latents 1/vae_scale_factor of it, and every step's preview decodes one image per row."""
    width, height = 64, 48
    edits: dict[str, Any] = {}
    if task != "text2img":
        edits = {"init_image": gradient_image(width, height), "strength": 0.6}
    if task == "inpaint":
        edits["mask"] = centre_mask(width, height)
    job = RenderJob(
        backend=edit_backend.name,
        prompt="a red dot",
        n=2,
        width=width,
        height=height,
        steps=2,
        seed=1,
        task=task,
        **edits,
    )
    previews: list[list[Image.Image]] = []

    def on_step(step: Any) -> None:
        assert step.preview is not None
        previews.append(step.preview())

    pipe = edit_backend._derived(task)
    with DecodedSizes(pipe.vae) as decoded:
        images = edit_backend.render(job, on_step)
    scale = pipe.vae_scale_factor
    assert [image.size for image in images] == [(width, height)] * 2
    assert previews and all([i.size for i in row] == [(width, height)] * 2 for row in previews)
    # One decode per preview, then the final one: all at the working size.
    assert decoded.sizes == [(height // scale, width // scale)] * (len(previews) + 1)


def test_sana_renders_at_the_working_size(sana_backend: DiffusersBackend) -> None:
    """SANA bins every size to its trained aspect-ratio buckets (~512² for this model, ~1024² for
    SANA 1024px) unless told `use_resolution_binning=False`; the job's working size is what must
    run, as for every other family."""
    job = RenderJob(backend="tiny-sana", prompt="a dot", n=1, width=64, height=64, steps=2, seed=3)
    pipe = sana_backend._derived("text2img")
    with DecodedSizes(pipe.vae) as decoded:
        sana_backend.render(job, lambda _step: None)
    scale = pipe.vae_scale_factor
    assert decoded.sizes == [(64 // scale, 64 // scale)]


def test_sana_prompts_reach_the_model_past_the_complex_human_instruction(
    sana_backend: DiffusersBackend,
) -> None:
    """SANA puts its long default instruction before each prompt and keeps the first token (the
    <bos>) and the last max_sequence_length - 1: the prompt's own tokens must be among those."""
    pipe = sana_backend._derived("text2img")
    tokenizer = pipe.tokenizer
    assert tokenizer.encode("a dot")[0] == tokenizer.bos_token_id
    assert tokenizer.eos_token_id not in tokenizer.encode("a dot")
    embeds = {}
    for prompt in ("a red fox in the snow", "a blue boat on a calm lake"):
        with torch.inference_mode():
            embeds[prompt], mask, _, _ = pipe.encode_prompt(
                prompt, do_classifier_free_guidance=False, device=torch.device("cpu")
            )
        assert embeds[prompt].shape[1] == 300  # the pipeline's default max_sequence_length
        assert 0 < int(mask.sum()) < 300  # the instruction's tail and the prompt, then padding
    first, second = embeds.values()
    assert not torch.allclose(first, second)
