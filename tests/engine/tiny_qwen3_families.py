"""Tiny random-weight pipelines of the Qwen3-prompted families: FLUX.2 klein and Z-Image.

As `tiny_families.py` does for FLUX.1: every component is the family's real class, small and
untrained, the tokenizer is built in code (`tiny_qwen_tokenizer.py`), and the pipeline is saved
so tests load it as users do. Sizes follow the real models where the pipelines depend on them:
both VAEs downsample 8x, as the real ones do, so the tiny pipelines ask for the sizes the real
ones ask for (a multiple of 16); FLUX.2's text encoder has enough layers for the three hidden
states the pipeline stacks.
"""

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLFlux2,
    FlowMatchEulerDiscreteScheduler,
    Flux2KleinPipeline,
    Flux2Transformer2DModel,
    ZImagePipeline,
    ZImageTransformer2DModel,
)
from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3Model

from tests.engine.tiny_qwen_tokenizer import QWEN_VOCAB_SIZE, build_tiny_qwen_tokenizer

# The text encoder's width; FLUX.2 klein concatenates three of its hidden states per token.
QWEN_HIDDEN = 16
# The hidden states Flux2KleinPipeline stacks by default (`text_encoder_out_layers`), which
# Limner does not override: `hidden_states[27]` needs at least 27 decoder layers. One more, so
# the last one read is an inner layer, as in the real 36-layer Qwen3-4B.
FLUX2_TEXT_LAYERS = (9, 18, 27)
_FLUX2_QWEN_LAYERS = max(FLUX2_TEXT_LAYERS) + 1
# Both pipelines pad every prompt to 512 tokens (their `max_sequence_length` default).
_QWEN_POSITIONS = 1024
# Four VAE levels: 8x downsampling, as in the real VAEs (`vae_scale_factor` 8).
_VAE_LEVELS = 4
# Latent channels of the tiny VAEs (32 in FLUX.2's, 16 in Z-Image's).
_LATENT_CHANNELS = 4


def _tiny_qwen3_config(num_hidden_layers: int) -> Qwen3Config:
    """Qwen3's layout (grouped-query attention, q/k norms, tied embeddings as Qwen3-4B's), small."""
    return Qwen3Config(
        vocab_size=QWEN_VOCAB_SIZE,
        hidden_size=QWEN_HIDDEN,
        intermediate_size=32,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=_QWEN_POSITIONS,
        tie_word_embeddings=True,
    )


def _pin_log_variance(conv: torch.nn.Conv2d, latent_channels: int) -> None:
    """A trained VAE's posterior is nearly a point; a random one's log-variance is whatever its
    weights give, so an encoded image would come back as noise that differs per seed. Pin the
    log-variance half of the moments conv's output to a tiny variance, as training would."""
    with torch.no_grad():
        conv.weight[latent_channels:] = 0.0
        conv.bias[latent_channels:] = -20.0


def _flux2_vae() -> AutoencoderKLFlux2:
    """FLUX.2's autoencoder: quant convs, and a batch norm over the 2x2-patchified latents whose
    running statistics the pipeline normalises latents with (and denormalises before decoding)."""
    torch.manual_seed(0)
    vae = AutoencoderKLFlux2(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * _VAE_LEVELS,
        up_block_types=("UpDecoderBlock2D",) * _VAE_LEVELS,
        block_out_channels=(16,) * _VAE_LEVELS,
        layers_per_block=1,
        latent_channels=_LATENT_CHANNELS,
        norm_num_groups=8,
        sample_size=64,
        use_quant_conv=True,
        use_post_quant_conv=True,
    )
    # FLUX.2 pipelines encode with the posterior's mode (`sample_mode="argmax"`), so the variance
    # is never sampled; pinned anyway, so any other reader of `latent_dist` gets a point too.
    assert vae.quant_conv is not None
    _pin_log_variance(vae.quant_conv, _LATENT_CHANNELS)
    # Running statistics other than the identity (a fresh BatchNorm's 0 and 1), as a trained
    # VAE has, so decoding latents without the pipeline's denormalisation shows.
    with torch.no_grad():
        vae.bn.running_mean.copy_(0.2 * torch.randn_like(vae.bn.running_mean))
        vae.bn.running_var.copy_(0.5 + torch.rand_like(vae.bn.running_var))
    return vae


def build_tiny_flux2_klein(path: Path, is_distilled: bool = False) -> Path:
    """FLUX.2 klein: a packed-latent flow transformer reading three stacked hidden states of a
    Qwen3 causal LM; reference images enter as extra tokens beside the output's.

    `is_distilled=False` is the base variant (guidance on by default); True, the step-distilled
    4B, which ignores guidance."""
    torch.manual_seed(0)
    transformer = Flux2Transformer2DModel(
        patch_size=1,
        in_channels=_LATENT_CHANNELS * 4,  # latents patchified 2x2 before packing
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=len(FLUX2_TEXT_LAYERS) * QWEN_HIDDEN,
        timestep_guidance_channels=256,
        axes_dims_rope=(4, 4, 4, 4),  # (t, h, w, l); sums to the head dim
        guidance_embeds=False,  # klein has no guidance embedding
    )
    torch.manual_seed(0)
    text_encoder = Qwen3ForCausalLM(_tiny_qwen3_config(_FLUX2_QWEN_LAYERS))
    # The real klein's schedule: the pipeline always passes `mu` (compute_empirical_mu, from
    # the image's token count and the step count), which dynamic shifting applies.
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000,
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
        time_shift_type="exponential",
    )
    pipe = Flux2KleinPipeline(
        scheduler=scheduler,
        vae=_flux2_vae(),
        text_encoder=text_encoder,
        tokenizer=build_tiny_qwen_tokenizer(),
        transformer=transformer,
        is_distilled=is_distilled,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def _z_image_vae() -> AutoencoderKL:
    """Z-Image's autoencoder: FLUX.1's layout and scaling/shift (16 latent channels there)."""
    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * _VAE_LEVELS,
        up_block_types=["UpDecoderBlock2D"] * _VAE_LEVELS,
        block_out_channels=[16] * _VAE_LEVELS,
        layers_per_block=1,
        latent_channels=_LATENT_CHANNELS,
        norm_num_groups=8,
        sample_size=64,
        use_quant_conv=False,
        use_post_quant_conv=False,
        scaling_factor=0.3611,
        shift_factor=0.1159,
    )
    # Z-Image's image-to-image and inpainting sample the posterior: pin it to a point.
    _pin_log_variance(vae.encoder.conv_out, _LATENT_CHANNELS)
    return vae


def build_tiny_z_image(path: Path) -> Path:
    """Z-Image: a single-stream transformer over caption and image tokens, the caption being
    the second-to-last hidden state of a Qwen3 base model (Qwen3Model, no LM head)."""
    torch.manual_seed(0)
    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=_LATENT_CHANNELS,
        dim=32,
        n_layers=1,
        n_refiner_layers=1,
        n_heads=2,
        n_kv_heads=2,
        qk_norm=True,
        cap_feat_dim=QWEN_HIDDEN,
        rope_theta=256.0,
        t_scale=1000.0,
        axes_dims=[8, 4, 4],  # (caption/frame, h, w); sums to the head dim
        axes_lens=[1024, 64, 64],
    )
    torch.manual_seed(0)
    text_encoder = Qwen3Model(_tiny_qwen3_config(2))
    # Z-Image-Turbo's schedule: a fixed shift. The pipeline computes `mu` from this config's
    # base/max_image_seq_len and base/max_shift, which only dynamic shifting would apply.
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=False
    )
    pipe = ZImagePipeline(
        scheduler=scheduler,
        vae=_z_image_vae(),
        text_encoder=text_encoder,
        tokenizer=build_tiny_qwen_tokenizer(),
        transformer=transformer,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return path
