"""The contract every ImageBackend passes, as a mixin (diffusers' PipelineTesterMixin idea).

Use it by subclassing in a `Test*` class that provides a `backend` fixture:

    class TestMyBackend(BackendContract):
        @pytest.fixture(scope="class")
        def backend(self) -> ImageBackend:
            return MyBackend(...)

Sizes and step counts are class attributes, so a slower backend can shrink them.
"""

from typing import Any, ClassVar

import numpy as np
import pytest
from PIL import Image

from limner.engine.protocol import ImageBackend
from limner.engine.types import RenderJob, StepInfo
from limner.errors import InvalidRequest

# Mean absolute difference, in 0-255 levels, below which two images count as the same picture.
# Not zero: a GPU may sum a batch in another order than a single image.
SAME_PICTURE = 1.0


class StepRecorder:
    """An on_step callback that keeps every StepInfo and can decode its preview on the spot."""

    def __init__(self, decode_previews: bool = False) -> None:
        self.steps: list[StepInfo] = []
        self.previews: list[list[Image.Image]] = []
        self._decode_previews = decode_previews

    def __call__(self, step: StepInfo) -> None:
        self.steps.append(step)
        if self._decode_previews:
            assert step.preview is not None, "a backend with previews must offer one every step"
            self.previews.append(step.preview())


class StopAtFirstStep(Exception):
    """What the contract's on_step raises to stop a render."""


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).mean())


def gradient_image(width: int, height: int) -> Image.Image:
    """A smooth, colourful init image: red across, green down, blue constant."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, axis=0)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None].repeat(width, axis=1)
    pixels = np.stack([x, y, np.full_like(x, 96)], axis=-1).astype(np.uint8)
    return Image.fromarray(pixels, mode="RGB")


def centre_mask(width: int, height: int) -> Image.Image:
    """White (repaint) in the middle half, black (keep) around it."""
    mask = Image.new("L", (width, height), 0)
    mask.paste(255, (width // 4, height // 4, 3 * width // 4, 3 * height // 4))
    return mask


class BackendContract:
    """Behaviour the service relies on, checked against a real backend."""

    width: ClassVar[int] = 64
    height: ClassVar[int] = 64
    steps: ClassVar[int] = 2
    # Steps for edits: enough that the edit denoises more than once at strength 0.75.
    edit_steps: ClassVar[int] = 4
    supports_preview: ClassVar[bool] = True
    # Job fields every contract job starts from, for a backend that needs some set.
    job_defaults: ClassVar[dict[str, Any]] = {}

    def job(self, backend: ImageBackend, **overrides: Any) -> RenderJob:
        values: dict[str, Any] = {
            "backend": backend.info().name,
            "prompt": "a red fox in the snow",
            "n": 1,
            "width": self.width,
            "height": self.height,
            "steps": self.steps,
            "seed": 1234,
            **self.job_defaults,
        }
        values.update(overrides)
        return RenderJob(**values)

    def edit_job(self, backend: ImageBackend, **overrides: Any) -> RenderJob:
        values: dict[str, Any] = {
            "task": "img2img",
            "steps": self.edit_steps,
            "init_image": gradient_image(self.width, self.height),
            "strength": 0.75,
        }
        values.update(overrides)
        return self.job(backend, **values)

    def require_task(self, backend: ImageBackend, task: str) -> None:
        if task not in backend.info().tasks:
            pytest.skip(f"backend does not offer {task}")

    # Shape of the output.

    def test_info_offers_text2img(self, backend: ImageBackend) -> None:
        info = backend.info()
        assert info.tasks[0] == "text2img"
        assert set(info.tasks) <= {"text2img", "img2img", "inpaint"}
        assert info.device and info.dtype

    @pytest.mark.parametrize("n", [1, 3])
    def test_returns_n_rgb_images_of_the_job_size(self, backend: ImageBackend, n: int) -> None:
        images = backend.render(self.job(backend, n=n), StepRecorder())
        assert len(images) == n
        assert all(image.size == (self.width, self.height) for image in images)
        assert all(image.mode == "RGB" for image in images)

    def test_size_the_model_cannot_render_is_returned_exactly(self, backend: ImageBackend) -> None:
        # 60 x 76 is not a multiple of 8; the backend renders near it and resizes.
        images = backend.render(self.job(backend, width=60, height=76), StepRecorder())
        assert [image.size for image in images] == [(60, 76)]

    # Seeds.

    def test_same_seed_reproduces_the_pixels(self, backend: ImageBackend) -> None:
        first = backend.render(self.job(backend, n=2, seed=7), StepRecorder())
        second = backend.render(self.job(backend, n=2, seed=7), StepRecorder())
        for a, b in zip(first, second, strict=True):
            assert mean_difference(a, b) < SAME_PICTURE

    def test_different_seed_gives_a_different_picture(self, backend: ImageBackend) -> None:
        [a] = backend.render(self.job(backend, seed=7), StepRecorder())
        [b] = backend.render(self.job(backend, seed=8), StepRecorder())
        assert mean_difference(a, b) > SAME_PICTURE

    def test_images_of_one_batch_differ(self, backend: ImageBackend) -> None:
        a, b = backend.render(self.job(backend, n=2), StepRecorder())
        assert mean_difference(a, b) > SAME_PICTURE

    def test_batch_image_i_equals_a_solo_render_with_seed_plus_i(
        self, backend: ImageBackend
    ) -> None:
        batch = backend.render(self.job(backend, n=3, seed=40), StepRecorder())
        for index in (1, 2):
            [solo] = backend.render(self.job(backend, n=1, seed=40 + index), StepRecorder())
            assert mean_difference(batch[index], solo) < SAME_PICTURE

    # Batches of jobs (one pipeline call).

    def test_render_batch_gives_each_job_its_solo_images(self, backend: ImageBackend) -> None:
        jobs = [
            self.job(backend, n=2, seed=21),
            self.job(backend, n=1, seed=60, prompt="a blue boat on a calm lake at noon"),
        ]
        recorder = StepRecorder()
        batched = backend.render_batch(jobs, recorder)
        assert [len(images) for images in batched] == [2, 1]
        # One call: each step reported once, not once per job.
        assert [step.step for step in recorder.steps] == list(range(1, self.steps + 1))
        for job, images in zip(jobs, batched, strict=True):
            solo = backend.render(job, StepRecorder())
            for together, alone in zip(images, solo, strict=True):
                assert together.size == (self.width, self.height)
                assert mean_difference(together, alone) < SAME_PICTURE

    def test_render_batch_refuses_jobs_that_cannot_share_a_call(
        self, backend: ImageBackend
    ) -> None:
        jobs = [self.job(backend), self.job(backend, steps=self.steps + 1)]
        with pytest.raises(ValueError, match="cannot share"):
            backend.render_batch(jobs, StepRecorder())

    # Progress and cancellation.

    def test_on_step_counts_up_to_total(self, backend: ImageBackend) -> None:
        recorder = StepRecorder()
        backend.render(self.job(backend, steps=3), recorder)
        steps = [step.step for step in recorder.steps]
        totals = {step.total for step in recorder.steps}
        assert len(totals) == 1
        total = totals.pop()
        assert steps == list(range(1, total + 1))
        assert total >= 3

    def test_raising_on_step_stops_the_render(self, backend: ImageBackend) -> None:
        calls: list[int] = []

        def stop(step: StepInfo) -> None:
            calls.append(step.step)
            raise StopAtFirstStep

        with pytest.raises(StopAtFirstStep):
            backend.render(self.job(backend, steps=5), stop)
        assert calls == [1]
        # The backend is not left half-busy: the next render runs normally.
        assert len(backend.render(self.job(backend), StepRecorder())) == 1

    def test_preview_decodes_one_image_per_requested_image(self, backend: ImageBackend) -> None:
        if not self.supports_preview:
            pytest.skip("backend offers no preview")
        recorder = StepRecorder(decode_previews=True)
        final = backend.render(self.job(backend, n=2), recorder)
        assert recorder.previews, "no step was reported"
        for preview in recorder.previews:
            assert len(preview) == 2
            assert all(image.size == (self.width, self.height) for image in preview)
        # After the last step the preview is the result itself, decoded the same way.
        for shown, result in zip(recorder.previews[-1], final, strict=True):
            assert mean_difference(shown, result) < 2 * SAME_PICTURE

    # Edits.

    def test_img2img_changes_the_init_image_and_follows_it(self, backend: ImageBackend) -> None:
        self.require_task(backend, "img2img")
        gradient = gradient_image(self.width, self.height)
        flat = Image.new("RGB", (self.width, self.height), (20, 160, 220))
        [from_gradient] = backend.render(
            self.edit_job(backend, init_image=gradient), StepRecorder()
        )
        [from_flat] = backend.render(self.edit_job(backend, init_image=flat), StepRecorder())
        assert from_gradient.size == (self.width, self.height)
        assert mean_difference(from_gradient, gradient) > SAME_PICTURE
        assert mean_difference(from_gradient, from_flat) > SAME_PICTURE

    def test_img2img_reproduces_with_the_same_seed(self, backend: ImageBackend) -> None:
        self.require_task(backend, "img2img")
        first = backend.render(self.edit_job(backend, n=2), StepRecorder())
        second = backend.render(self.edit_job(backend, n=2), StepRecorder())
        for a, b in zip(first, second, strict=True):
            assert mean_difference(a, b) < SAME_PICTURE

    def test_img2img_at_low_strength_still_denoises(self, backend: ImageBackend) -> None:
        self.require_task(backend, "img2img")
        # 2 steps x strength 0.1 would be zero steps; the backend must run at least one.
        recorder = StepRecorder()
        images = backend.render(self.edit_job(backend, steps=2, strength=0.1), recorder)
        assert len(recorder.steps) >= 1
        assert len(images) == 1

    def test_img2img_accepts_an_init_image_of_another_size(self, backend: ImageBackend) -> None:
        self.require_task(backend, "img2img")
        init = gradient_image(self.width * 2, self.height // 2)
        images = backend.render(self.edit_job(backend, init_image=init), StepRecorder())
        assert [image.size for image in images] == [(self.width, self.height)]

    def test_inpaint_returns_n_images_of_the_job_size(self, backend: ImageBackend) -> None:
        self.require_task(backend, "inpaint")
        job = self.edit_job(backend, task="inpaint", n=2, mask=centre_mask(self.width, self.height))
        recorder = StepRecorder()
        images = backend.render(job, recorder)
        assert [image.size for image in images] == [(self.width, self.height)] * 2
        assert all(image.mode == "RGB" for image in images)
        assert recorder.steps, "inpainting ran no denoising step"

    def test_inpaint_repaints_inside_the_mask_and_keeps_the_rest(
        self, backend: ImageBackend
    ) -> None:
        self.require_task(backend, "inpaint")
        mask = centre_mask(self.width, self.height)
        first, second = (
            backend.render(
                self.edit_job(backend, task="inpaint", mask=mask, seed=seed), StepRecorder()
            )[0]
            for seed in (1, 2)
        )
        # Where seeds disagree is where the backend repainted.
        change = np.abs(np.asarray(first, dtype=np.int16) - np.asarray(second, dtype=np.int16))
        w, h = self.width, self.height
        inside = change[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].mean()
        # A band along the edges, an eighth of the size away from the mask: a decoder mixes
        # neighbouring pixels, so the pixels right at the mask's border may change a little.
        band_w, band_h = w // 8, h // 8
        outside = np.concatenate(
            [
                change[:band_h].ravel(),
                change[-band_h:].ravel(),
                change[:, :band_w].ravel(),
                change[:, -band_w:].ravel(),
            ]
        ).mean()
        assert inside > 4 * outside, f"inside changed {inside:.1f}, outside {outside:.1f}"

    def test_tasks_not_offered_are_refused_as_invalid_requests(self, backend: ImageBackend) -> None:
        missing = [t for t in ("img2img", "inpaint") if t not in backend.info().tasks]
        if not missing:
            pytest.skip("backend offers every task")
        for task in missing:
            job = self.edit_job(backend, task=task, mask=centre_mask(self.width, self.height))
            with pytest.raises(InvalidRequest):
                backend.render(job, StepRecorder())
