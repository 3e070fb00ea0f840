"""Train the prompt classifier's heads (limner/moderation/prompt_classifier.npz).

Reads prompts.train{,.extra,.boundary,.idioms,.edits}.jsonl beside this file (rows of "text",
"category", "severity"), embeds each prompt with limner-mini's sentence encoder
(all-MiniLM-L6-v2, the one the server uses), and fits a small MLP with one sigmoid per head
(`<category>/any`, `<category>/severe`). A sexualised minor is also sexual and severe. Then
scores prompts.eval.jsonl (held out) at the packaged threshold and prints the false-positive
rate on benign prompts and the block rate per category at both levels.

    python training/moderation/train.py [--epochs 800] [--hidden 256] [--seed 0]
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from limner.engine.mini import shared_encoder  # noqa: E402
from limner.moderation.prompt_classifier import DEFAULT_WEIGHTS, HEADS, PromptHeads  # noqa: E402

HERE = Path(__file__).parent


def read(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def targets(rows: list[dict[str, str]]) -> np.ndarray:
    labels = np.zeros((len(rows), len(HEADS)), dtype=np.float32)
    index = {head: i for i, head in enumerate(HEADS)}
    for row, (category, severity) in enumerate((r["category"], r["severity"]) for r in rows):
        if category == "none":
            continue
        labels[row, index[f"{category}/any"]] = 1.0
        if severity == "severe" or category == "minors":
            labels[row, index[f"{category}/severe"]] = 1.0
        if category == "minors":
            labels[row, index["sexual/any"]] = labels[row, index["sexual/severe"]] = 1.0
    return labels


def embed(texts: list[str]) -> np.ndarray:
    encoder = shared_encoder()
    parts = [
        encoder.encode(texts[i : i + 64]).pooled.float().numpy() for i in range(0, len(texts), 64)
    ]
    return np.concatenate(parts)


def fit(
    features: np.ndarray, labels: np.ndarray, hidden: int, epochs: int, seed: int
) -> PromptHeads:
    torch.manual_seed(seed)
    x, y = torch.from_numpy(features), torch.from_numpy(labels)
    model = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, y.shape[1])
    )
    # Positives are rare per head; weigh them up so a head does not learn "never".
    positives = y.sum(dim=0).clamp(min=1.0)
    pos_weight = ((y.shape[0] - positives) / positives).clamp(max=8.0)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
    for epoch in range(epochs):
        optimizer.zero_grad()
        noisy = x + 0.01 * torch.randn_like(x)  # a little robustness to paraphrase
        loss = loss_fn(model(noisy), y)
        loss.backward()
        optimizer.step()
        if epoch % 100 == 0 or epoch == epochs - 1:
            print(f"epoch {epoch:4d}  loss {loss.item():.4f}")
    first, second = model[0], model[2]
    return PromptHeads(
        [
            (first.weight.detach().numpy().T.copy(), first.bias.detach().numpy().copy()),
            (second.weight.detach().numpy().T.copy(), second.bias.detach().numpy().copy()),
        ]
    )


def report(
    heads: PromptHeads, rows: list[dict[str, str]], features: np.ndarray, threshold: float
) -> None:
    scores = heads.probabilities(features)
    index = {head: i for i, head in enumerate(HEADS)}
    any_columns = [index[h] for h in HEADS if h.endswith("/any")]
    severe_columns = [index[h] for h in HEADS if h.endswith("/severe")]
    blocked_auto = (scores[:, any_columns] >= threshold).any(axis=1) | (
        scores[:, severe_columns] >= threshold
    ).any(axis=1)
    blocked_low = (scores[:, severe_columns] >= threshold).any(axis=1)
    categories = sorted({r["category"] for r in rows})
    print(f"held-out, classifier alone, threshold {threshold}:")
    for category in categories:
        for severity in ("none", "mild", "severe"):
            mask = np.array([r["category"] == category and r["severity"] == severity for r in rows])
            if not mask.any():
                continue
            print(
                f"  {category:10s} {severity:7s} n={mask.sum():4d}  "
                f"blocked at auto {blocked_auto[mask].mean():6.1%}  "
                f"at low {blocked_low[mask].mean():6.1%}"
            )
    benign = np.array([r["category"] == "none" for r in rows])
    for row in np.flatnonzero(benign & blocked_auto):
        print(f"  false positive: {rows[row]['text']!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=800)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS)
    args = parser.parse_args()
    torch.set_num_threads(2)

    # prompts.train.extra.jsonl: more hard benign prompts (identities, medicine, children in
    # innocent scenes, combat sports, double meanings) written after the first round's errors.
    # prompts.train.boundary.jsonl: where mild ends (clothed glamour and contact sports are
    # benign; nudity without a sexual act is mild, not severe).
    train = [
        *read(HERE / "prompts.train.jsonl"),
        *read(HERE / "prompts.train.extra.jsonl"),
        *read(HERE / "prompts.train.boundary.jsonl"),
        # prompts.train.idioms.jsonl: idioms ("killing it", "photobomb"), red messes, rescue
        # work, games, beauty, 16 other languages, very short inputs.
        *read(HERE / "prompts.train.idioms.jsonl"),
        # prompts.train.edits.jsonl: edit instructions ("make it look real", "turn it into a
        # cartoon"), which the classifier read as self-harm ("make it look realistic": 0.95).
        *read(HERE / "prompts.train.edits.jsonl"),
    ]
    held_out = read(HERE / "prompts.eval.jsonl")
    print(f"{len(train)} training prompts, {len(held_out)} held out")
    heads = fit(
        embed([r["text"] for r in train]), targets(train), args.hidden, args.epochs, args.seed
    )
    heads.save(args.out)
    print(f"saved {args.out} ({args.out.stat().st_size} bytes)")
    report(heads, held_out, embed([r["text"] for r in held_out]), args.threshold)


if __name__ == "__main__":
    main()
