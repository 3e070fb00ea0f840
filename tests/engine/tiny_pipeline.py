"""A tiny Stable Diffusion pipeline with random weights, built from configs and saved to disk.

Like diffusers' `get_dummy_components` in their StableDiffusionPipeline tests: every component is
real (UNet, VAE, CLIP text model and tokenizer, scheduler), only small and untrained, so tests
exercise the user-facing loader (`DiffusionPipeline.from_pretrained`) without a download.
"""

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

# The text model's vocabulary must cover every id the tokenizer can produce.
TEXT_VOCAB_SIZE = 1000
# Prompts are padded to this length by the pipeline, so the text model needs as many positions.
MAX_PROMPT_TOKENS = 77
# A handful of merges so the tokenizer exercises BPE, not only single bytes.
_MERGES = ["t h", "th e</w>", "a n", "an d</w>", "i n", "o n</w>", "e r", "r e", "a t", "c a"]


def _byte_alphabet() -> list[str]:
    """The 256 printable characters byte-level BPE uses for raw bytes (GPT-2 / CLIP)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    codepoints = list(printable)
    shift = 0
    for byte in range(256):
        if byte not in printable:
            codepoints.append(256 + shift)
            shift += 1
    return [chr(codepoint) for codepoint in codepoints]


def build_tiny_tokenizer() -> CLIPTokenizer:
    """A CLIP tokenizer whose vocab is the byte alphabet, its `</w>` forms, a few merges, specials.

    The vocab is laid out as CLIP's is (bytes, bytes + `</w>`, merges, then the two specials),
    only with 10 merges instead of ~48,000.
    """
    alphabet = _byte_alphabet()
    tokens = [*alphabet, *(char + "</w>" for char in alphabet)]
    tokens += ["".join(merge.split()) for merge in _MERGES]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(tokens)}
    assert len(vocab) <= TEXT_VOCAB_SIZE, "the text model must cover every token id"
    return CLIPTokenizer(
        vocab=vocab,
        merges=[tuple(merge.split()) for merge in _MERGES],
        model_max_length=MAX_PROMPT_TOKENS,
    )


def build_tiny_pipeline(path: Path, text_hidden_size: int = 32) -> Path:
    """Build the tiny pipeline from configs with seeded random weights and save it to `path`.

    `text_hidden_size` other than the UNet's 32 builds a pipeline that loads but fails on every
    render, for tests of engine failures.
    """
    # 1. Denoiser: two resolution levels, one cross-attention block reading 32-d text features.
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=32,
    )

    # 2. Autoencoder: two levels, so latents are half the image size (vae_scale_factor 2).
    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=[32, 64],
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        norm_num_groups=32,
        sample_size=32,
    )

    # 3. Text encoder (the tokenizer and noise scheduler are added by save_sd_pipeline).
    text_encoder = build_tiny_text_encoder(text_hidden_size)
    return save_sd_pipeline(path, unet, vae, text_encoder)


def build_tiny_text_encoder(hidden_size: int = 32) -> CLIPTextModel:
    """A two-layer CLIP text model over the tiny tokenizer's ids, seeded."""
    torch.manual_seed(0)
    return CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=2,
            pad_token_id=1,
            hidden_size=hidden_size,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            layer_norm_eps=1e-5,
            vocab_size=TEXT_VOCAB_SIZE,
            max_position_embeddings=MAX_PROMPT_TOKENS,
            projection_dim=32,
        )
    )


def save_sd_pipeline(
    path: Path, unet: UNet2DConditionModel, vae: AutoencoderKL, text_encoder: CLIPTextModel
) -> Path:
    """Assemble a Stable Diffusion pipeline around these models and save it like a real one."""
    # Noise scheduler: SD 1.x's betas; `steps_offset=1` as SD's own config, so the pipeline
    # does not patch (and warn about) the config on every load.
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=build_tiny_tokenizer(),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return path
