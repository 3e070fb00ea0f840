"""The one picture an edit starts from, built from the request's input images."""

import math

from PIL import Image

_BACKDROP = (255, 255, 255)


def flatten(image: Image.Image) -> Image.Image:
    """RGB over a white backdrop: diffusion pipelines take no alpha channel."""
    if image.mode == "RGB":
        return image
    rgba = image.convert("RGBA")
    backdrop = Image.new("RGB", rgba.size, _BACKDROP)
    backdrop.paste(rgba, mask=rgba.getchannel("A"))
    return backdrop


def init_image(images: list[Image.Image], *, has_mask: bool) -> Image.Image:
    """The first image when there is one or a mask applies to it; else a grid of all of them.

    Open img2img pipelines take a single picture. Laying several inputs side by side in the
    first image's frame keeps every input visible to the model, which is what a multi-image
    edit asks for ("put these things together").
    """
    first = flatten(images[0])
    if has_mask or len(images) == 1:
        return first
    columns = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    cell_width, cell_height = first.width // columns, first.height // rows
    canvas = Image.new("RGB", first.size, _BACKDROP)
    for index, image in enumerate(images):
        cell = flatten(image).copy()
        cell.thumbnail((cell_width, cell_height), Image.Resampling.LANCZOS)
        left = (index % columns) * cell_width + (cell_width - cell.width) // 2
        top = (index // columns) * cell_height + (cell_height - cell.height) // 2
        canvas.paste(cell, (left, top))
    return canvas


def reference(image: Image.Image, max_area: int) -> Image.Image:
    """An input as an instruction-edit model takes it: flattened, and no larger than the working
    area (its aspect kept), so the model encodes no more pixels than it renders."""
    flat = flatten(image)
    area = flat.width * flat.height
    if area <= max_area:
        return flat
    scale = math.sqrt(max_area / area)
    size = (max(1, round(flat.width * scale)), max(1, round(flat.height * scale)))
    return flat.resize(size, Image.Resampling.LANCZOS)
