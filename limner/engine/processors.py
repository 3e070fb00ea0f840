"""Pipeline components Limner builds itself where the class a checkpoint names cannot load.

Qwen-Image-Edit(-Plus) name transformers' `Qwen2VLProcessor`, whose video half needs
torchvision, and no torchvision wheel exists for the pinned CPU torch (PyPI's fails to import
beside it). The pipelines only ever pass it text and images, so an image-and-text processor
built from the same files (`processor/`: image processor config, tokenizer, chat template)
gives them the same inputs, on every machine alike.
"""

from pathlib import Path
from typing import Any

from transformers import AutoImageProcessor, AutoTokenizer, Qwen2VLProcessor


class ImageTextQwen2VLProcessor(Qwen2VLProcessor):
    """Qwen2-VL's processor for text and images only: no video processor."""

    def __init__(
        self, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None
    ) -> None:
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template)  # type: ignore[no-untyped-call]


def load_qwen2_vl_processor(folder: Path) -> ImageTextQwen2VLProcessor:
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return ImageTextQwen2VLProcessor(
        AutoImageProcessor.from_pretrained(folder, local_files_only=True),  # type: ignore[no-untyped-call]
        tokenizer,
        chat_template=getattr(tokenizer, "chat_template", None),
    )


# Component classes by the name model_index.json gives them, and how Limner loads each.
COMPONENT_LOADERS = {"Qwen2VLProcessor": load_qwen2_vl_processor}
