import json
import shutil
import threading
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


def test_a_video_style_vae_keeps_its_layout() -> None:
    """Qwen-Image's VAE is 3-D (rank-5 weights): channels-last does not exist for it, and trying
    it made `limner serve` exit at start."""
    from types import SimpleNamespace

    from diffusers import AutoencoderKLQwenImage, UNet2DModel

    from limner.engine.diffusers_backend import _prefer_channels_last

    vae = AutoencoderKLQwenImage(
        base_dim=8,
        z_dim=4,
        dim_mult=[1, 2],
        num_res_blocks=1,
        temperal_downsample=[False],
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
    )
    unet = UNet2DModel(
        sample_size=8,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
    )
    _prefer_channels_last(SimpleNamespace(vae=vae, unet=unet))
    assert any(parameter.ndim == 5 for parameter in vae.parameters())
    assert all(parameter.is_contiguous() for parameter in vae.parameters())
    three_by_three = [
        m.weight
        for m in unet.modules()
        if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)
    ]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in three_by_three)


@pytest.mark.parametrize("threads", [1, 2])
def test_every_cpu_call_runs_on_the_backends_thread_count(
    tiny_pipeline_path: Path, threads: int
) -> None:
    """Whatever the call size and the calling thread: the count is the backend's, set for the
    call's own steps and restored after, so a seed gives the same bytes on every call."""
    backend = DiffusersBackend("tiny-sd", tiny_pipeline_path, device="cpu", cpu_threads=threads)
    before = torch.get_num_threads()
    job = RenderJob(backend="tiny-sd", prompt="x", n=1, width=32, height=32, steps=2, seed=5)
    seen: list[int] = []
    renders: list[bytes] = []

    def render(n: int) -> None:
        images = backend.render(
            RenderJob(**{**job.__dict__, "n": n}),
            lambda _step: seen.append(torch.get_num_threads()),
        )
        renders.append(images[0].tobytes())

    for n in (1, 3, 1, 8, 1):
        render(n)
        assert torch.get_num_threads() == before
    worker = threading.Thread(target=render, args=(1,))  # as the engine's worker calls it
    worker.start()
    worker.join()
    assert set(seen) == {threads}
    assert len(set(renders)) == 1  # image 0 of seed 5, whatever the call size or thread


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
