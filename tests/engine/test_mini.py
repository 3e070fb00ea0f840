"""limner-mini through DiffusersBackend: an untrained, tiny LimnerMiniPipeline saved to disk and
loaded by the backend's normal path passes the backend contract."""

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UNet2DConditionModel
from PIL import Image

from limner.engine import mini
from limner.engine.diffusers_backend import DiffusersBackend
from limner.engine.mini import COORDINATE_CHANNELS, NATIVE_SIZE, LimnerMiniPipeline, SentenceEncoder
from limner.engine.types import RenderJob
from tests.engine.backend_contract import BackendContract, StepRecorder, centre_mask

# all-MiniLM-L6-v2's hidden size: the UNet reads its token states and pooled vector.
TEXT_DIM = 384


def build_tiny_mini(path: Path) -> Path:
    """A LimnerMiniPipeline with a two-level, randomly initialised UNet, saved to `path`; it reads
    coordinate channels, as the shipped one does."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=NATIVE_SIZE,
        in_channels=3 + COORDINATE_CHANNELS,
        out_channels=3,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=2,
        norm_num_groups=8,
        class_embed_type="projection",
        projection_class_embeddings_input_dim=TEXT_DIM,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
    LimnerMiniPipeline(unet=unet, scheduler=scheduler).save_pretrained(
        path, safe_serialization=True
    )
    return path


@pytest.fixture(scope="module")
def mini_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_mini(tmp_path_factory.mktemp("limner-mini") / "pipeline")


@pytest.fixture(scope="module")
def mini_backend(mini_path: Path) -> DiffusersBackend:
    return DiffusersBackend("limner-mini", mini_path, device="cpu")


class TestLimnerMiniBackend(BackendContract):
    # Guidance on, as served: the batch carries unconditional rows beside the prompt's.
    job_defaults: ClassVar[dict[str, float]] = {"guidance_scale": 3.0}

    @pytest.fixture
    def backend(self, mini_backend: DiffusersBackend) -> DiffusersBackend:
        return mini_backend


def test_directory_holds_no_text_encoder(mini_path: Path) -> None:
    index = json.loads((mini_path / "model_index.json").read_text())
    assert index["_class_name"] == "LimnerMiniPipeline"
    assert {k for k in index if not k.startswith("_")} == {"unet", "scheduler"}
    assert sorted(p.name for p in mini_path.iterdir()) == ["model_index.json", "scheduler", "unet"]


def test_backend_offers_every_task_from_the_one_pipeline(mini_backend: DiffusersBackend) -> None:
    assert mini_backend.info().tasks == ("text2img", "img2img", "inpaint")
    base = mini_backend._derived("text2img")
    assert isinstance(base, LimnerMiniPipeline)
    assert mini_backend._derived("img2img") is base
    assert mini_backend._derived("inpaint") is base


def test_inpaint_keeps_the_unmasked_pixels_exactly(mini_path: Path) -> None:
    pipe = LimnerMiniPipeline.from_pretrained(mini_path, local_files_only=True)
    rng = np.random.default_rng(0)
    init = Image.fromarray(rng.integers(0, 256, (NATIVE_SIZE, NATIVE_SIZE, 3), dtype=np.uint8))
    mask = centre_mask(NATIVE_SIZE, NATIVE_SIZE)
    [image] = pipe(
        "a blue square",
        image=init,
        mask_image=mask,
        strength=0.75,
        num_inference_steps=4,
        generator=[torch.Generator().manual_seed(0)],
    ).images
    kept = np.asarray(mask) == 0
    out, original = np.asarray(image, dtype=np.int16), np.asarray(init, dtype=np.int16)
    # Exact up to the round trip through [-1, 1] floats.
    assert np.abs(out - original)[kept].max() <= 1
    assert np.abs(out - original)[~kept].mean() > 10


def test_renders_at_native_size_whatever_the_job_asks(mini_backend: DiffusersBackend) -> None:
    pipe = mini_backend._derived("text2img")
    [native] = pipe("a red circle", num_inference_steps=2, width=512, height=256).images
    assert native.size == (NATIVE_SIZE, NATIVE_SIZE)
    job = RenderJob(backend="limner-mini", prompt="x", n=1, width=96, height=48, steps=2, seed=0)
    [image] = mini_backend.render(job, StepRecorder())
    assert image.size == (96, 48)


def test_inpaint_job_through_the_backend(mini_backend: DiffusersBackend) -> None:
    job = RenderJob(
        backend="limner-mini",
        prompt="a green star",
        n=1,
        width=64,
        height=64,
        steps=4,
        seed=5,
        task="inpaint",
        init_image=Image.new("RGB", (64, 64), (250, 250, 250)),
        mask=centre_mask(64, 64),
    )
    [image] = mini_backend.render(job, StepRecorder())
    pixels = np.asarray(image, dtype=np.int16)
    # The corners are well away from the mask and its resampling halo.
    assert np.abs(pixels[:8, :8] - 250).max() <= 1


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    """A private encoder, so its cache starts empty and no other test's prompts are in it."""
    return SentenceEncoder()


def count_forward_calls(encoder: SentenceEncoder) -> list[int]:
    calls: list[int] = []
    encoder.model.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_encoder_encodes_a_prompt_once_and_matches_a_solo_encoding(
    encoder: SentenceEncoder,
) -> None:
    calls = count_forward_calls(encoder)
    short, long = "a red square", "a yellow circle at the top on a green background"
    batch = encoder.encode([long, short, ""])
    assert len(calls) == 1
    again = encoder.encode(["", short, short])
    assert len(calls) == 1, "cached prompts were encoded again"

    for prompt, row in ((short, 1), ("", 0)):
        solo = encoder._encode([prompt])
        length = solo.mask.shape[1]
        rows = (batch, row if prompt == short else 2), (again, row)
        for embeddings, index in rows:
            # Padded to the longest prompt of the call, masked past the prompt's own tokens.
            assert embeddings.mask[index, :length].all()
            assert not embeddings.mask[index, length:].any()
            torch.testing.assert_close(embeddings.states[index, :length], solo.states[0])
            torch.testing.assert_close(embeddings.pooled[index], solo.pooled[0])
    assert again.states.shape[1] == encoder._encode([short]).states.shape[1]


def test_encoder_forgets_the_least_recent_prompt_past_its_size(
    encoder: SentenceEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mini, "ENCODING_CACHE_SIZE", 2)
    encoder.encode(["first"])
    encoder.encode(["second"])
    encoder.encode(["first"])  # now the most recent
    calls = count_forward_calls(encoder)
    encoder.encode(["third"])  # evicts "second"
    encoder.encode(["first"])
    assert len(calls) == 1
    encoder.encode(["second"])
    assert len(calls) == 2
