"""Tiny random-weight pipelines of Stable Diffusion XL, Stable Diffusion 3 and SANA, saved to disk.

As `tiny_pipeline.py` and `tiny_families.py` do: every component is the family's real class, small
and untrained, each model seeded, and every tokenizer built in code, so the user-facing loader
(`DiffusionPipeline.from_pretrained`) runs without a download.
"""

import inspect
import json
from pathlib import Path

import torch
from diffusers import (
    AutoencoderDC,
    AutoencoderKL,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    SanaPipeline,
    SanaTransformer2DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import (
    CLIPTextModelWithProjection,
    Gemma2Config,
    Gemma2Model,
    GemmaTokenizer,
)

from tests.engine.tiny_families import _tiny_t5, build_tiny_t5_tokenizer
from tests.engine.tiny_pipeline import build_tiny_text_encoder, build_tiny_tokenizer

# The tiny CLIP text models' widths (see build_tiny_text_encoder): hidden states and projection.
_CLIP_HIDDEN = 32
_CLIP_PROJECTION = 32


def _clip_with_projection() -> CLIPTextModelWithProjection:
    """The tiny CLIP text model with its text projection (pooled `text_embeds`), seeded."""
    config = build_tiny_text_encoder().config
    torch.manual_seed(0)
    return CLIPTextModelWithProjection(config)


def _pin_posterior(vae: AutoencoderKL) -> AutoencoderKL:
    """Pin the log-variance half of the posterior to a tiny variance, as training would.

    A trained VAE's posterior is nearly a point; a random one's log-variance is whatever its
    weights give, so an encoded image would come back as seed-dependent noise. The moments come
    out of `quant_conv` where the VAE has one (SDXL's), else out of the encoder's last conv."""
    conv = vae.quant_conv if vae.quant_conv is not None else vae.encoder.conv_out
    with torch.no_grad():
        log_variance = slice(vae.config.latent_channels, None)
        conv.weight[log_variance] = 0.0
        conv.bias[log_variance] = -20.0
    return vae


# Stable Diffusion XL.

# SDXL's micro-conditioning: six size numbers (original size, crop corner, target size), each
# embedded to this width, beside the second text encoder's pooled projection.
_SDXL_TIME_EMBED = 8


def build_tiny_sdxl(path: Path) -> Path:
    """SDXL: a UNet conditioned on both CLIP encoders' penultimate states (concatenated, 64-d)
    and on "text_time" (pooled text projection + size/crop embedding); SDXL's VAE and scheduler."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        cross_attention_dim=2 * _CLIP_HIDDEN,
        addition_embed_type="text_time",
        addition_time_embed_dim=_SDXL_TIME_EMBED,
        projection_class_embeddings_input_dim=6 * _SDXL_TIME_EMBED + _CLIP_PROJECTION,
        norm_num_groups=8,
    )
    # SDXL's VAE layout: quant convs, and `force_upcast` (its real weights overflow in float16,
    # so the pipeline runs it in float32). The scaling factor is what one is: 1 / the latents'
    # std (SDXL's trained VAE: 0.13025; this random one's latents have std ~0.24). SDXL's own
    # would leave an init image's latents ~0.03 under noise of std ~1.6: edits would ignore it.
    torch.manual_seed(0)
    vae = _pin_posterior(
        AutoencoderKL(
            in_channels=3,
            out_channels=3,
            block_out_channels=[16, 32],
            down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
            up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
            latent_channels=4,
            norm_num_groups=8,
            sample_size=32,
            scaling_factor=4.0,
            force_upcast=True,
        )
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=build_tiny_text_encoder(),
        text_encoder_2=_clip_with_projection(),
        tokenizer=build_tiny_tokenizer(),
        tokenizer_2=build_tiny_tokenizer(),
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return path


# Stable Diffusion 3.

# SD3's latent channels. Not fewer: its inpainting pipeline accepts only a transformer of 16 input
# channels (or 33, an inpainting model's), so a 4-channel one (as FLUX's tiny VAE) has no twin.
_SD3_LATENT_CHANNELS = 16


def _sd3_vae() -> AutoencoderKL:
    """SD3's autoencoder layout: 16 latent channels, no quant convs, a shift and a scaling
    factor; two levels (vae_scale_factor 2), log-variance pinned. The factors are what they
    are for: the latents' mean and 1 / their std (SD3's trained VAE: 0.0609 and 1.5035; this
    random one's latents: ~0.05 and ~0.32), so an init image weighs in edits as in SD3's."""
    torch.manual_seed(0)
    return _pin_posterior(
        AutoencoderKL(
            in_channels=3,
            out_channels=3,
            block_out_channels=[16, 16],
            down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
            up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
            latent_channels=_SD3_LATENT_CHANNELS,
            norm_num_groups=8,
            sample_size=32,
            use_quant_conv=False,
            use_post_quant_conv=False,
            shift_factor=0.05,
            scaling_factor=3.0,
        )
    )


def build_tiny_sd3(path: Path) -> Path:
    """SD3: an MMDiT over patches of 2x2 latents, two CLIP encoders with projections (their
    pooled outputs concatenated, 64-d) and T5 (32-d; the pipeline cuts the concatenated 64-d
    CLIP states to its width), a shifted flow-matching schedule, SD3's VAE layout."""
    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(
        sample_size=32,
        patch_size=2,
        in_channels=_SD3_LATENT_CHANNELS,
        out_channels=_SD3_LATENT_CHANNELS,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=4,
        joint_attention_dim=32,  # T5's d_model
        caption_projection_dim=32,
        pooled_projection_dim=2 * _CLIP_PROJECTION,
    )
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_sd3_vae(),
        text_encoder=_clip_with_projection(),
        tokenizer=build_tiny_tokenizer(),
        text_encoder_2=_clip_with_projection(),
        tokenizer_2=build_tiny_tokenizer(),
        text_encoder_3=_tiny_t5(),
        tokenizer_3=build_tiny_t5_tokenizer(),
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return path


# SANA.

# Gemma's special tokens, at Gemma's ids.
_GEMMA_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
# Characters with a piece of their own (any other falls back to byte pieces, as in Gemma). "▁" is
# the space, as Gemma's normalizer writes it.
_GEMMA_ALPHABET = "▁abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,:;!?'\"-()/\n"
# Pieces learnt (specials and alphabet included) besides the 256 byte pieces.
_GEMMA_LEARNT_PIECES = 400
_GEMMA_HIDDEN = 16


def _gemma_pieces() -> tuple[list[str], list[tuple[str, str]]]:
    """Word pieces and merges, learnt by BPE (deterministically) from SANA's default complex human
    instruction, which SANA puts before every prompt: so the instruction takes ~260 tokens, about
    what Gemma's real vocabulary takes, not the ~980 of a tokenizer of single characters (an
    encoder's attention costs the square of that)."""
    learner = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    learner.normalizer = normalizers.Replace(" ", "▁")
    learner.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    instruction = inspect.signature(SanaPipeline.__call__).parameters["complex_human_instruction"]
    learner.train_from_iterator(
        instruction.default,
        trainers.BpeTrainer(
            vocab_size=_GEMMA_LEARNT_PIECES,
            special_tokens=_GEMMA_SPECIALS,
            initial_alphabet=list(_GEMMA_ALPHABET),
            show_progress=False,
        ),
    )
    model = json.loads(learner.to_str())["model"]
    pieces = sorted(model["vocab"], key=model["vocab"].__getitem__)
    return pieces, [(left, right) for left, right in model["merges"]]


def build_tiny_gemma_tokenizer() -> GemmaTokenizer:
    """Gemma's tokenizer kind (BPE with byte fallback over "▁"-joined text), built in code: the
    specials at Gemma's ids, the 256 byte pieces, then ~400 learnt pieces (`_gemma_pieces`). It
    adds <bos> and no <eos>, as Gemma's does: SANA keeps token 0 of every prompt (the <bos>)."""
    pieces, merges = _gemma_pieces()
    byte_pieces = [f"<0x{byte:02X}>" for byte in range(256)]
    ordered = dict.fromkeys([*_GEMMA_SPECIALS, *byte_pieces, *pieces])
    return GemmaTokenizer(
        vocab={piece: index for index, piece in enumerate(ordered)},
        merges=merges,
        add_bos_token=True,
        add_eos_token=False,
        model_max_length=4096,
    )


def _tiny_gemma2(vocab_size: int) -> Gemma2Model:
    torch.manual_seed(0)
    return Gemma2Model(
        Gemma2Config(
            vocab_size=vocab_size,
            hidden_size=_GEMMA_HIDDEN,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=8,
            query_pre_attn_scalar=8,
            max_position_embeddings=4096,
        )
    )


def build_tiny_sana(path: Path) -> Path:
    """SANA: a linear-attention DiT over a deep-compression autoencoder's latents, reading a
    Gemma-2 decoder's last hidden states; SANA's flow-matching DPM-Solver++ schedule."""
    tokenizer = build_tiny_gemma_tokenizer()
    torch.manual_seed(0)
    transformer = SanaTransformer2DModel(
        in_channels=4,
        out_channels=4,
        num_layers=1,
        num_attention_heads=2,
        attention_head_dim=4,
        num_cross_attention_heads=2,
        cross_attention_head_dim=4,
        cross_attention_dim=8,
        caption_channels=_GEMMA_HIDDEN,
        # SANA bins its output size by this (16: the 512-px bins, its smallest).
        sample_size=16,
        patch_size=1,
    )
    # DC-AE's layout, as SANA's: three residual levels, then three linear-attention (EfficientViT)
    # ones, 32x compression; the full-resolution level has no blocks (its conv downsamples).
    blocks = ("ResBlock",) * 3 + ("EfficientViTBlock",) * 3
    multiscales = ((),) * 3 + ((5,),) * 3
    torch.manual_seed(0)
    vae = AutoencoderDC(
        in_channels=3,
        latent_channels=4,
        attention_head_dim=2,
        encoder_block_types=blocks,
        decoder_block_types=blocks,
        encoder_block_out_channels=(4, 8, 8, 8, 8, 8),
        decoder_block_out_channels=(4, 8, 8, 8, 8, 8),
        encoder_layers_per_block=(0, 1, 1, 1, 1, 1),
        decoder_layers_per_block=(0, 1, 1, 1, 1, 1),
        encoder_qkv_multiscales=multiscales,
        decoder_qkv_multiscales=multiscales,
        downsample_block_type="conv",
        upsample_block_type="interpolate",
        scaling_factor=0.41407,
    )
    scheduler = DPMSolverMultistepScheduler(
        algorithm_type="dpmsolver++",
        solver_order=2,
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=3.0,
    )
    pipe = SanaPipeline(
        tokenizer=tokenizer,
        text_encoder=_tiny_gemma2(len(tokenizer)),
        vae=vae,
        transformer=transformer,
        scheduler=scheduler,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return path


__all__ = ["build_tiny_gemma_tokenizer", "build_tiny_sana", "build_tiny_sd3", "build_tiny_sdxl"]
