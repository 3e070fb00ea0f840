"""Tiny random-weight pipelines of the other model families, built from configs and saved.

As `tiny_pipeline.py` does for Stable Diffusion: every component is the family's real class,
small and untrained, and every tokenizer is built in code, so nothing comes from a hub.
"""

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    FluxKontextPipeline,
    FluxPipeline,
    FluxTransformer2DModel,
)
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import T5Config, T5EncoderModel, T5TokenizerFast

from tests.engine.tiny_pipeline import build_tiny_text_encoder, build_tiny_tokenizer

# Pieces in the tiny T5 vocabulary (specials included); the encoder's embedding covers them.
_T5_WORDS = 200


def build_tiny_t5_tokenizer() -> T5TokenizerFast:
    """A unigram T5 tokenizer (T5's own model kind) over letters and a few pieces: text split on
    whitespace and punctuation, unknown pieces to <unk>, `</s>` appended as T5's does."""
    specials = ["<pad>", "</s>", "<unk>"]
    letters = [chr(ord("a") + i) for i in range(26)]
    pieces = [a + b for a in "aeiou" for b in "nrst"]
    tokens = [*specials, *letters, *pieces]
    tokens += [f"w{i}" for i in range(_T5_WORDS - len(tokens) + len(specials))]
    vocab = [(token, 0.0 if token in specials else -1.0 - len(token)) for token in tokens]
    backend = Tokenizer(models.Unigram(vocab, unk_id=2))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    return T5TokenizerFast(
        tokenizer_object=backend,
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_ids=0,
        model_max_length=512,
    )


def _tiny_t5() -> T5EncoderModel:
    torch.manual_seed(0)
    return T5EncoderModel(
        T5Config(
            vocab_size=_T5_WORDS + 3,
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
        )
    )


def _flux_vae() -> AutoencoderKL:
    """FLUX's autoencoder layout (16 latent channels in the real one; 4 here), two levels."""
    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=[16, 16],
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        norm_num_groups=8,
        sample_size=32,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )
    # A trained VAE's posterior is nearly a point; a random one's log-variance is whatever its
    # weights give, so an encoded image came back as noise that differs per seed. Pin the
    # log-variance half of the encoder's output to a tiny variance, as training would.
    with torch.no_grad():
        log_variance = slice(vae.config.latent_channels, None)
        vae.encoder.conv_out.weight[log_variance] = 0.0
        vae.encoder.conv_out.bias[log_variance] = -20.0
    return vae


def build_tiny_flux(path: Path, pipeline_class: type[FluxPipeline] = FluxPipeline) -> Path:
    """FLUX.1 (dev/schnell layout): a packed-latent flow transformer, CLIP + T5, flow-matching.
    FLUX.1 Kontext is the same components under FluxKontextPipeline."""
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,  # 4 latent channels, packed 2x2
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=[4, 4, 8],
    )
    pipe = pipeline_class(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=_flux_vae(),
        text_encoder=build_tiny_text_encoder(),
        tokenizer=build_tiny_tokenizer(),
        text_encoder_2=_tiny_t5(),
        tokenizer_2=build_tiny_t5_tokenizer(),
        transformer=transformer,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def build_tiny_kontext(path: Path) -> Path:
    """FLUX.1 Kontext: FLUX.1's models, taking its reference image's tokens beside the output's."""
    return build_tiny_flux(path, FluxKontextPipeline)  # type: ignore[arg-type]
