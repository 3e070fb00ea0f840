"""Jobs and checks the family tests share: one small job, rendered and compared by bytes."""

from PIL import Image

from limner.engine.diffusers_backend import DiffusersBackend
from limner.engine.types import RenderJob
from tests.engine.backend_contract import StepRecorder

# The job size: a multiple of 16, which packed-latent pipelines render natively (8x VAE, 2x2
# patches).
SIZE = (64, 48)
# References larger than FLUX.2's 64 px minimum side, so they reach the model as they are.
RED, GREEN = Image.new("RGB", (80, 64), "red"), Image.new("RGB", (80, 64), "green")


def job(backend: DiffusersBackend, **fields: object) -> RenderJob:
    values: dict[str, object] = {
        "backend": backend.name,
        "prompt": "a red dot",
        "n": 1,
        "width": SIZE[0],
        "height": SIZE[1],
        "steps": 2,
        "seed": 1,
    }
    values.update(fields)
    return RenderJob(**values)  # type: ignore[arg-type]


def render(backend: DiffusersBackend, **fields: object) -> list[Image.Image]:
    return backend.render(job(backend, **fields), StepRecorder())


def sizes(images: list[Image.Image]) -> list[tuple[int, int]]:
    return [image.size for image in images]


def same_bytes(a: list[Image.Image], b: list[Image.Image]) -> bool:
    return [image.tobytes() for image in a] == [image.tobytes() for image in b]
