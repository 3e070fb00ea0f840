"""The prompt classifier: a small network over limner-mini's sentence encoder (all-MiniLM-L6-v2).

Word lists catch what is named outright; this catches what is described ("a woman wearing
nothing on the bed"). Two heads per category: `any` (mild or severe: what `auto` refuses) and
`severe` (what even `low` refuses). The weights are a few kilobytes of numpy arrays trained by
training/moderation/train.py on the labelled prompts beside it, and ship in the package.
"""

import re
from pathlib import Path

import numpy as np

from limner.moderation.protocol import CATEGORIES, Signal

DEFAULT_WEIGHTS = Path(__file__).parent / "prompt_classifier.npz"
CHECK_NAME = "prompt_classifier"
HEADS = tuple(f"{category}/{kind}" for category in CATEGORIES for kind in ("any", "severe"))
# The encoder reads at most 48 tokens; a longer prompt is read in overlapping windows of words
# and each category takes its highest score, so nothing hides at the end of a long prompt.
WINDOW_WORDS = 28
WINDOW_STRIDE = 14


def windows(prompt: str) -> list[str]:
    words = re.findall(r"\S+", prompt)
    if len(words) <= WINDOW_WORDS:
        return [" ".join(words) or prompt]
    starts = range(0, len(words) - WINDOW_WORDS + WINDOW_STRIDE, WINDOW_STRIDE)
    return [" ".join(words[start : start + WINDOW_WORDS]) for start in starts]


class PromptHeads:
    """A multi-layer perceptron in numpy: (embedding) → ReLU layers → one sigmoid per head."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray]]) -> None:
        if layers[-1][0].shape[1] != len(HEADS):
            raise ValueError(f"the last layer must have {len(HEADS)} outputs, one per head")
        self.layers = layers

    @classmethod
    def load(cls, path: Path = DEFAULT_WEIGHTS) -> "PromptHeads":
        with np.load(path) as data:
            count = int(data["layers"])
            return cls([(data[f"w{i}"], data[f"b{i}"]) for i in range(count)])

    def save(self, path: Path) -> None:
        arrays: dict[str, np.ndarray] = {"layers": np.array(len(self.layers))}
        for index, (weight, bias) in enumerate(self.layers):
            arrays[f"w{index}"], arrays[f"b{index}"] = weight, bias
        np.savez(path, **arrays)  # type: ignore[arg-type]

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """(rows, 384) unit vectors → (rows, heads) probabilities."""
        hidden = embeddings.astype(np.float32)
        for index, (weight, bias) in enumerate(self.layers):
            hidden = hidden @ weight + bias
            if index < len(self.layers) - 1:
                hidden = np.maximum(hidden, 0.0)
        return 1.0 / (1.0 + np.exp(-hidden))


class PromptClassifier:
    """Scores a prompt per category with the packaged heads and the shared sentence encoder."""

    name = CHECK_NAME

    def __init__(self, heads: PromptHeads | None = None) -> None:
        # Imported here: only a server that moderates prompts loads the encoder.
        from limner.engine.mini import shared_encoder

        self._encoder = shared_encoder()
        self._heads = heads or PromptHeads.load()

    def embed(self, texts: list[str]) -> np.ndarray:
        pooled = self._encoder.encode(texts).pooled
        return pooled.float().cpu().numpy()

    def score_prompt(self, prompt: str) -> list[Signal]:
        scores = self._heads.probabilities(self.embed(windows(prompt))).max(axis=0)
        by_head = dict(zip(HEADS, scores.tolist(), strict=True))
        signals = []
        for category in CATEGORIES:
            any_score, severe_score = by_head[f"{category}/any"], by_head[f"{category}/severe"]
            if category == "minors":
                # Every sexualisation of a minor is severe; the two heads learn the same label.
                signals.append(Signal(self.name, category, "severe", max(any_score, severe_score)))
                continue
            signals.append(Signal(self.name, category, "mild", any_score))
            signals.append(Signal(self.name, category, "severe", severe_score))
        return signals
