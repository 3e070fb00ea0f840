import json
import shutil
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from PIL import Image

from limner.engine.diffusers_backend import DiffusersBackend
from limner.engine.types import RenderJob
from limner.errors import InvalidRequest
from tests.engine.backend_contract import BackendContract, StepRecorder, gradient_image


class TestDiffusersBackend(BackendContract):
    @pytest.fixture
    def backend(self, tiny_backend: DiffusersBackend) -> DiffusersBackend:
        return tiny_backend


def test_info_describes_the_loaded_pipeline(tiny_backend: DiffusersBackend) -> None:
    info = tiny_backend.info()
    assert info.name == "tiny-sd"
    assert info.device == "cpu"
    assert info.dtype == "float32"
    assert info.tasks == ("text2img", "img2img", "inpaint")


def test_edit_twins_share_the_loaded_weights(tiny_backend: DiffusersBackend) -> None:
    text2img = tiny_backend._derived("text2img")
    img2img = tiny_backend._derived("img2img")
    inpaint = tiny_backend._derived("inpaint")
    assert type(img2img).__name__ == "StableDiffusionImg2ImgPipeline"
    assert type(inpaint).__name__ == "StableDiffusionInpaintPipeline"
    assert img2img.unet is text2img.unet and inpaint.unet is text2img.unet
    assert img2img.vae is text2img.vae and inpaint.text_encoder is text2img.text_encoder
    # Derived once, then reused.
    assert tiny_backend._derived("img2img") is img2img


def test_cpu_convolution_weights_are_channels_last(tiny_backend: DiffusersBackend) -> None:
    pipe = tiny_backend._derived("text2img")
    for module in (pipe.unet, pipe.vae):
        convolutions = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
        assert convolutions
        for convolution in convolutions:
            assert convolution.weight.is_contiguous(memory_format=torch.channels_last)
        # A 1x1 kernel is laid out the same either way; a 3x3 one tells the orders apart.
        assert any(not c.weight.is_contiguous() for c in convolutions)


@pytest.mark.skipif(torch.get_num_threads() < 2, reason="one CPU thread: nothing to choose")
def test_cpu_calls_try_one_thread_and_all_then_keep_one(tiny_pipeline_path: Path) -> None:
    """The tiny pipeline's calls are far under a second, so each call size tries both counts
    (see CallThreads); the count is what the call's own steps run on, and is restored after."""
    backend = DiffusersBackend("tiny-sd", tiny_pipeline_path, device="cpu")
    most = torch.get_num_threads()
    seen: list[int] = []
    job = RenderJob(backend="tiny-sd", prompt="x", n=1, width=32, height=32, steps=1, seed=0)
    for _ in range(7):
        backend.render(job, lambda _step: seen.append(torch.get_num_threads()))
        assert torch.get_num_threads() == most
    assert seen[:6] == [most, 1, most, 1, most, 1]
    assert seen[6] in (1, most)
    # Another call size starts over, on every thread.
    seen.clear()
    backend.render(
        RenderJob(**{**job.__dict__, "n": 2}), lambda _step: seen.append(torch.get_num_threads())
    )
    assert seen == [most]


def test_each_run_steps_a_fresh_scheduler(tiny_backend: DiffusersBackend) -> None:
    job = RenderJob(backend="tiny-sd", prompt="x", n=1, width=32, height=32, steps=2, seed=0)
    pipe = tiny_backend._derived("text2img")
    tiny_backend.render(job, StepRecorder())
    first = pipe.scheduler
    tiny_backend.render(job, StepRecorder())
    assert pipe.scheduler is not first
    assert pipe.scheduler is not tiny_backend._scheduler
    # The kept template was never stepped, so every copy starts clean.
    assert tiny_backend._scheduler.step_index is None


def test_guidance_scale_and_negative_prompt_reach_the_pipeline(
    tiny_backend: DiffusersBackend,
) -> None:
    base = RenderJob(backend="tiny-sd", prompt="a boat", n=1, width=32, height=32, steps=2, seed=3)
    [plain] = tiny_backend.render(base, StepRecorder())
    [guided] = tiny_backend.render(
        RenderJob(**{**base.__dict__, "guidance_scale": 1.0}), StepRecorder()
    )
    [negative] = tiny_backend.render(
        RenderJob(**{**base.__dict__, "negative_prompt": "a car"}), StepRecorder()
    )
    assert plain.tobytes() != guided.tobytes()
    assert plain.tobytes() != negative.tobytes()


def test_render_leaves_no_autograd_state(tiny_backend: DiffusersBackend) -> None:
    latents_seen: list[bool] = []

    def on_step(step: object) -> None:
        latents_seen.append(torch.is_inference_mode_enabled())

    job = RenderJob(backend="tiny-sd", prompt="x", n=1, width=32, height=32, steps=2, seed=0)
    tiny_backend.render(job, on_step)  # type: ignore[arg-type]
    assert latents_seen == [True, True]


def test_edit_without_init_image_is_refused(tiny_backend: DiffusersBackend) -> None:
    job = RenderJob(
        backend="tiny-sd", prompt="x", n=1, width=32, height=32, steps=2, seed=0, task="img2img"
    )
    with pytest.raises(ValueError, match="init_image"):
        tiny_backend.render(job, StepRecorder())


def test_inpaint_without_mask_is_refused(tiny_backend: DiffusersBackend) -> None:
    job = RenderJob(
        backend="tiny-sd",
        prompt="x",
        n=1,
        width=32,
        height=32,
        steps=2,
        seed=0,
        task="inpaint",
        init_image=gradient_image(32, 32),
    )
    with pytest.raises(ValueError, match="mask"):
        tiny_backend.render(job, StepRecorder())


@pytest.fixture(scope="module")
def panorama_backend(
    tiny_pipeline_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> DiffusersBackend:
    """The same weights loaded as StableDiffusionPanoramaPipeline: a text-to-image class with
    no image-to-image or inpainting twin in diffusers' AutoPipeline tables."""
    path = tmp_path_factory.mktemp("panorama") / "pipeline"
    shutil.copytree(tiny_pipeline_path, path)
    index = json.loads((path / "model_index.json").read_text())
    index["_class_name"] = "StableDiffusionPanoramaPipeline"
    (path / "model_index.json").write_text(json.dumps(index))
    return DiffusersBackend("panorama", path, device="cpu")


class TestPipelineWithoutEditTwins(BackendContract):
    # Without guidance: Panorama pairs a batch's latents with the wrong prompt embeddings under
    # classifier-free guidance when n > 1 (repeat_interleave against concatenated embeddings),
    # which would fail batch-equals-solo for a reason in diffusers, not in the backend.
    job_defaults: ClassVar[dict[str, Any]] = {"guidance_scale": 1.0}

    @pytest.fixture
    def backend(self, panorama_backend: DiffusersBackend) -> DiffusersBackend:
        return panorama_backend


def test_pipeline_without_twins_offers_only_text2img(panorama_backend: DiffusersBackend) -> None:
    assert panorama_backend.info().tasks == ("text2img",)
    job = RenderJob(
        backend="panorama",
        prompt="x",
        n=1,
        width=32,
        height=32,
        steps=2,
        seed=0,
        task="img2img",
        init_image=Image.new("RGB", (32, 32)),
    )
    with pytest.raises(InvalidRequest, match="does not support 'img2img'"):
        panorama_backend.render(job, StepRecorder())
