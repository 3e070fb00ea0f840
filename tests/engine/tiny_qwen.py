"""Tiny random-weight pipelines of the Qwen-Image family, built from configs and saved.

As `tiny_families.py` does for FLUX: every component is the family's real class (Qwen-Image's
video-style VAE, its MMDiT, a Qwen2.5-VL text encoder with a vision tower, the flow-matching
scheduler), small and untrained; the tokenizer and the edit pipelines' processor are built in
code, so nothing comes from a hub.

Prompt templates: each pipeline wraps the prompt in a fixed chat template and drops the first
`prompt_template_encode_start_idx` hidden states (34 for Qwen-Image, 64 for the edits: the
template's system part in Qwen's real tokenizer). The tiny tokenizer spells what comes before
the prompt in far more tokens (134 for Qwen-Image, 276 for the edits, their image tokens
aside), so the embeddings keep the rest of the template with the prompt and are never empty
("a red dot": 120 of them for Qwen-Image); the text model has positions for all of them.
"""

import json
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKLQwenImage,
    FlowMatchEulerDiscreteScheduler,
    QwenImageEditPipeline,
    QwenImageEditPlusPipeline,
    QwenImagePipeline,
    QwenImageTransformer2DModel,
)
from transformers import (
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Tokenizer,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from tests.engine.tiny_qwen_tokenizer import QWEN_VOCAB_SIZE, build_tiny_qwen_tokenizer

# Latent channels (16 in the real VAE) and the text model's width, which the transformer's joint
# attention takes as is.
_Z_DIM = 4
_TEXT_HIDDEN = 16
# Qwen2.5-VL's vision geometry (14-pixel patches merged 2x2 into one text token). The real
# processor takes up to ~12.8 MP; this one at most 112x112 (64 patches, 16 image tokens), so
# an edit's condition image costs the tiny vision tower next to nothing.
_PATCH = 14
_MERGE = 2
_MAX_VISION_PIXELS = (_PATCH * _MERGE * 4) ** 2
_MIN_VISION_PIXELS = (_PATCH * _MERGE) ** 2


def _tiny_vae() -> AutoencoderKLQwenImage:
    """Qwen-Image's causal 3-D autoencoder layout: three 2x downsamplings (8x, as the real one),
    `_Z_DIM` latent channels, and per-channel latent statistics the pipeline normalises with
    (the first channels of the real VAE's, so denormalising is not the identity).

    Kept as cheap as the class allows, because the edit pipelines VAE-encode every reference
    image at ~1 MP whatever the output size (and Qwen-Image-Edit's inpainting also decodes at
    ~1 MP): no residual blocks in the encoder (the decoder keeps one per level), and 8
    channels throughout, the fewest for which torch's CPU conv3d takes oneDNN rather than its
    several-times-slower fallback. One 1 MP encode still takes 2-4 s on two cores, half of it
    in the middle block's attention over all 128x128 latent positions, which the class always
    has."""
    torch.manual_seed(0)
    vae = AutoencoderKLQwenImage(
        base_dim=8,
        z_dim=_Z_DIM,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=0,
        temperal_downsample=[False, True, True],
        latents_mean=[-0.7571, -0.7089, -0.9113, 0.1075],
        latents_std=[2.8184, 1.4541, 2.3275, 2.6558],
    )
    with torch.no_grad():
        # As `tiny_families._flux_vae`: a trained VAE's posterior is nearly a point, a random
        # one's is not, so pin the log-variance half of the encoder's output to a tiny variance.
        vae.quant_conv.weight[_Z_DIM:] = 0.0
        vae.quant_conv.bias[_Z_DIM:] = -20.0
        # Left as initialised, this VAE's latents barely vary with its input (std ~0.3; red and
        # green images 0.05 apart) and its pixels sit in a narrow band, so which image went in
        # hardly showed in what came out (under one level of 255). Scaled, the latents spread
        # as the real VAE's do (std ~2.5; its latents_std runs 1.1-3.3) and pixels span [-1, 1].
        vae.quant_conv.weight[:_Z_DIM] *= 8.0
        vae.quant_conv.bias[:_Z_DIM] *= 8.0
        vae.decoder.conv_out.weight *= 4.0
        vae.decoder.conv_out.bias *= 4.0
    return vae


def _tiny_transformer() -> QwenImageTransformer2DModel:
    torch.manual_seed(0)
    return QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=_Z_DIM * 4,  # latents packed 2x2
        out_channels=_Z_DIM,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=_TEXT_HIDDEN,
        guidance_embeds=False,
        axes_dims_rope=(4, 6, 6),  # frame, height, width; sums to the head dim
    )


def _tiny_text_encoder(tokenizer: Qwen2Tokenizer) -> Qwen2_5_VLForConditionalGeneration:
    """Qwen2.5-VL: a 2-layer text model over the tiny vocabulary and a 2-block vision tower
    (one windowed block, one full-attention block, as the real one alternates them)."""
    ids = tokenizer.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": QWEN_VOCAB_SIZE,
            "hidden_size": _TEXT_HIDDEN,
            "intermediate_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 4096,
            # Multimodal RoPE: (time, height, width) sections of half the 8-wide head.
            "rope_parameters": {"rope_type": "default", "mrope_section": [1, 1, 2]},
            "rope_theta": 1000000.0,
            "bos_token_id": ids("<|endoftext|>"),
            "eos_token_id": ids("<|im_end|>"),
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "depth": 2,
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_heads": 2,
            "patch_size": _PATCH,
            "spatial_merge_size": _MERGE,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1],
            "out_hidden_size": _TEXT_HIDDEN,
        },
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    torch.manual_seed(0)
    return Qwen2_5_VLForConditionalGeneration(config).eval()


def _scheduler() -> FlowMatchEulerDiscreteScheduler:
    """Qwen-Image's own scheduler config: the shift follows the image's token count."""
    return FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000,
        shift=1.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=0.9,
        base_image_seq_len=256,
        max_image_seq_len=8192,
        shift_terminal=0.02,
        time_shift_type="exponential",
    )


def build_tiny_qwen_image_processor() -> Qwen2VLImageProcessorPil:
    """Qwen2-VL's image processor, its PIL/numpy variant (the default one needs torchvision).
    Its saved config names `Qwen2VLImageProcessor`, the name both variants share; without
    torchvision, transformers loads that name as this variant."""
    return Qwen2VLImageProcessorPil(
        patch_size=_PATCH,
        merge_size=_MERGE,
        temporal_patch_size=2,
        min_pixels=_MIN_VISION_PIXELS,
        max_pixels=_MAX_VISION_PIXELS,
    )


def _save_processor(path: Path, tokenizer: Qwen2Tokenizer) -> None:
    """The edit pipelines' `processor/`: a Qwen2VLProcessor, saved as its parts.

    A Qwen2VLProcessor object cannot be made without torchvision: its video processor is a
    required part and every video processor needs torchvision, so the pipeline is saved without
    the object and its folder is written here, as the real checkpoints lay it out (the image
    processor's preprocessor_config.json, the tokenizer and its chat template; with no
    video_preprocessor_config.json, transformers reads the video processor's settings from
    preprocessor_config.json). `DiffusionPipeline.from_pretrained` loads it as a
    Qwen2VLProcessor, which needs torchvision as a real checkpoint does."""
    folder = path / "processor"
    build_tiny_qwen_image_processor().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    index_path = path / "model_index.json"
    index = json.loads(index_path.read_text())
    index["processor"] = ["transformers", "Qwen2VLProcessor"]
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def _components() -> dict[str, Any]:
    tokenizer = build_tiny_qwen_tokenizer()
    return {
        "scheduler": _scheduler(),
        "vae": _tiny_vae(),
        "text_encoder": _tiny_text_encoder(tokenizer),
        "tokenizer": tokenizer,
        "transformer": _tiny_transformer(),
    }


def build_tiny_qwen_image(path: Path) -> Path:
    """Qwen-Image text-to-image (its image-to-image and inpainting twins share these parts)."""
    QwenImagePipeline(**_components()).save_pretrained(path, safe_serialization=True)
    return path


def _build_edit(path: Path, pipeline_class: type[Any]) -> Path:
    components = _components()
    pipe = pipeline_class(**components, processor=None)
    pipe.save_pretrained(path, safe_serialization=True)
    _save_processor(path, components["tokenizer"])
    return path


def build_tiny_qwen_image_edit(path: Path) -> Path:
    """Qwen-Image-Edit: one reference image, seen by the text encoder's vision tower (through
    the processor) and, VAE-encoded, as tokens beside the output's."""
    return _build_edit(path, QwenImageEditPipeline)


def build_tiny_qwen_image_edit_plus(path: Path) -> Path:
    """Qwen-Image-Edit-2509/2511 (Plus): Qwen-Image-Edit's parts, several reference images."""
    return _build_edit(path, QwenImageEditPlusPipeline)
