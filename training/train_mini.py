"""Train limner-mini on generated scenes; resumable; exports a diffusers pipeline directory.

    python -m training.train_mini --name base --steps 3600   # train; resumes from a checkpoint
    python -m training.train_mini --name base --export limner/assets/limner-mini   # export latest
    python -m training.train_mini --name base --evaluate --eval-steps 16 --guidance 3  # adherence

Rectified flow in pixel space: x_t = (1 - t) x0 + t noise, the UNet predicts noise - x0.
Captions come from a pool that grows every step: MiniLM costs 5-20 ms a caption on two cores, so
encoding a whole batch each step would cost about as much as the UNet step; each caption is
encoded once and reused with freshly jittered renderings of its scene. A resumed run rebuilds
a new pool from its restored seed rather than storing hundreds of MB of embeddings in the
checkpoint.
"""

import argparse
import copy
import logging
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Other jobs share these two cores; OpenMP threads that spin while waiting for a busy core made
# a step 3-4x slower under contention (1.3 s instead of 2.6-3.5 s with another 2-thread job).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UNet2DConditionModel

from limner.engine.mini import (
    COORDINATE_CHANNELS,
    NATIVE_SIZE,
    LimnerMiniPipeline,
    PromptEmbeddings,
    SentenceEncoder,
    concat_embeddings,
    with_coordinates,
)
from training.evaluate import heldout_prompts, judge, summarise
from training.scenes import Captioned, caption, render, sample_scene

log = logging.getLogger("train_mini")
RUNS = Path(__file__).parent / "runs"
TEXT_DIM = 384


def build_unet() -> UNet2DConditionModel:
    """~2.0M parameters: 32 -> 16 -> 8 pixels, cross-attention at 16x16 and 8x8; the input is
    RGB plus x/y coordinate channels."""
    return UNet2DConditionModel(
        sample_size=NATIVE_SIZE,
        in_channels=3 + COORDINATE_CHANNELS,
        out_channels=3,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=4,
        norm_num_groups=8,
        class_embed_type="projection",
        projection_class_embeddings_input_dim=TEXT_DIM,
    )


# Time shift, for training's time draws and the sampler's steps alike. At 32x32 with flat
# shapes, layout is visible through almost any noise: where the objects go is decided at t > 0.9.
# Unshifted logit-normal time (SD3's) drew t > 0.9 1.4% of the time and the first run placed
# objects at random (position 19% at step 1000); shift 3 on uniform time draws it 25% of the time.
TIME_SHIFT = 3.0


def build_scheduler() -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=TIME_SHIFT)


def sample_time(batch: int) -> torch.Tensor:
    """Uniform time pushed towards noise: t = s u / (1 + (s - 1) u), the scheduler's own shift."""
    u = torch.rand(batch)
    return TIME_SHIFT * u / (1 + (TIME_SHIFT - 1) * u)


class CaptionPool:
    """Captions with their cached MiniLM embeddings (fp16 on CPU)."""

    def __init__(self, encoder: SentenceEncoder) -> None:
        self.encoder = encoder
        self.items: list[Captioned] = []
        self.embeddings: list[PromptEmbeddings] = []

    def add(self, items: list[Captioned]) -> list[PromptEmbeddings]:
        encoded = self.encoder.encode([item.text for item in items])
        added = []
        for row, item in enumerate(items):
            length = int(encoded.mask[row].sum())
            emb = PromptEmbeddings(
                encoded.states[row : row + 1, :length].half(),
                encoded.mask[row : row + 1, :length],
                encoded.pooled[row : row + 1].half(),
            )
            self.items.append(item)
            self.embeddings.append(emb)
            added.append(emb)
        return added


def _to_tensor(image: Any) -> torch.Tensor:
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1)


def make_batch(
    pool: CaptionPool,
    empty: PromptEmbeddings,
    args: argparse.Namespace,
    rng: random.Random,
    np_rng: np.random.Generator,
) -> tuple[torch.Tensor, PromptEmbeddings]:
    fresh_items = [caption(sample_scene(rng, args.plain_share), rng) for _ in range(args.fresh)]
    chosen = list(zip(fresh_items, pool.add(fresh_items), strict=True))
    for _ in range(args.batch - args.fresh):
        index = rng.randrange(len(pool.items))
        chosen.append((pool.items[index], pool.embeddings[index]))
    images = torch.stack([_to_tensor(render(item.scene, np_rng)) for item, _ in chosen])
    # Classifier-free guidance: some captions are dropped to the empty prompt.
    embeddings = [empty if rng.random() < args.drop else emb for _, emb in chosen]
    return images, concat_embeddings(embeddings).to(torch.device("cpu"), torch.float32)


def evaluate(unet: UNet2DConditionModel, prompts: list[Captioned], args: argparse.Namespace) -> str:
    pipe = LimnerMiniPipeline(unet=unet, scheduler=build_scheduler())
    pipe.set_progress_bar_config(disable=True)
    images = []
    for start in range(0, len(prompts), 40):
        chunk = prompts[start : start + 40]
        generators = [torch.Generator().manual_seed(i) for i in range(start, start + len(chunk))]
        images += pipe(
            prompt=[p.text for p in chunk],
            num_inference_steps=args.eval_steps,
            guidance_scale=args.guidance,
            generator=generators,
        ).images
    scores = summarise([judge(p, im) for p, im in zip(prompts, images, strict=True)])
    return " ".join(f"{name}={value:.2f}" for name, value in scores.items())


def object_weights(images: torch.Tensor, object_weight: float) -> torch.Tensor:
    """Per-pixel loss weights: `object_weight` where a pixel differs from the picture's
    background (the border's median), 1 elsewhere. Objects cover 5-20% of a picture, so an
    unweighted loss is mostly about flat background, which the model learns first; colour, shape
    and count live in the object pixels."""
    border = torch.cat(
        [images[:, :, 0], images[:, :, -1], images[:, :, :, 0], images[:, :, :, -1]], dim=2
    )
    background = border.median(dim=2).values[:, :, None, None]
    # 0.08 on the [-1, 1] scale is ~10 levels of 255: above the background's tone jitter.
    is_object = (images - background).abs().amax(dim=1, keepdim=True) > 0.08
    return 1.0 + (object_weight - 1.0) * is_object.float()


def lr_at(step: int, args: argparse.Namespace) -> float:
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = min(1.0, (step - args.warmup) / max(1, args.steps - args.warmup))
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def export(run: Path, target: Path) -> None:
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    unet = build_unet()
    unet.load_state_dict(state["ema"])
    pipe = LimnerMiniPipeline(unet=unet, scheduler=build_scheduler())
    pipe.save_pretrained(target, safe_serialization=True)
    log.info(f"exported step {state['step']} of {run} to {target}")


def train(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    run = RUNS / args.name
    run.mkdir(parents=True, exist_ok=True)
    checkpoint = run / "checkpoint.pt"

    # 1. Model, EMA copy (what is evaluated and shipped), optimiser.
    torch.manual_seed(args.seed)
    unet = build_unet()
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    optimiser = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=0.01)
    rng = random.Random(args.seed)
    np_rng = np.random.default_rng(args.seed)
    step = 0
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        unet.load_state_dict(state["unet"])
        ema.load_state_dict(state["ema"])
        optimiser.load_state_dict(state["optimiser"])
        step = state["step"]
        rng.setstate(state["python_rng"])
        np_rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        log.info(f"resumed from step {step}")
    params = sum(p.numel() for p in unet.parameters())
    log.info(f"unet parameters: {params:,}")

    # 2. Text: the encoder, the empty prompt, the initial caption pool, the eval prompts.
    encoder = SentenceEncoder()
    empty = CaptionPool(encoder).add([Captioned(sample_scene(random.Random(0)), "", False, False)])[
        0
    ]
    pool = CaptionPool(encoder)
    started = time.time()
    for _ in range(0, args.pool, 64):
        pool.add([caption(sample_scene(rng, args.plain_share), rng) for _ in range(64)])
    log.info(f"pool of {len(pool.items)} captions in {time.time() - started:.0f}s")
    eval_prompts = heldout_prompts(args.eval_prompts)

    # 3. Train.
    unet.train()
    losses: list[float] = []
    tick = time.time()
    while step < args.steps:
        images, emb = make_batch(pool, empty, args, rng, np_rng)
        noise = torch.randn_like(images)
        t = sample_time(images.shape[0])
        t_ = t.view(-1, 1, 1, 1)
        noisy = (1 - t_) * images + t_ * noise
        velocity = unet(
            with_coordinates(noisy),
            t * 1000,
            encoder_hidden_states=emb.states,
            class_labels=emb.pooled,
            encoder_attention_mask=emb.mask,
        ).sample
        weights = object_weights(images, args.object_weight)
        loss = (weights * (velocity - (noise - images)) ** 2).mean() / weights.mean()

        for group in optimiser.param_groups:
            group["lr"] = lr_at(step, args)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimiser.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema.parameters(), unet.parameters(), strict=True):
                e.lerp_(p, 1 - decay)
        step += 1
        losses.append(loss.item())

        if step % args.log_every == 0:
            elapsed = (time.time() - tick) / args.log_every
            tick = time.time()
            log.info(
                f"step {step} loss {np.mean(losses):.4f} lr {lr_at(step, args):.2e} "
                f"{elapsed:.2f}s/step pool {len(pool.items)}"
            )
            losses = []
        if step % args.checkpoint_every == 0 or step == args.steps:
            save_checkpoint(
                checkpoint,
                {
                    "unet": unet.state_dict(),
                    "ema": ema.state_dict(),
                    "optimiser": optimiser.state_dict(),
                    "step": step,
                    "python_rng": rng.getstate(),
                    "numpy_rng": np_rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(),
                    "args": vars(args),
                },
            )
            log.info(f"checkpoint at step {step}")
        if step % args.eval_every == 0 or step == args.steps:
            # Kept per eval point (8 MB each), so the best, not only the last, can be shipped.
            torch.save(ema.state_dict(), run / f"ema-{step:06d}.pt")
            started = time.time()
            try:
                scores = evaluate(ema, eval_prompts, args)
            except Exception as error:  # an eval bug must not stop a two-hour run
                scores = f"eval failed: {error!r}"
            log.info(f"eval step {step} heldout {scores} ({time.time() - started:.0f}s)")
            tick = time.time()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="base")
    parser.add_argument("--steps", type=int, default=3600)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--fresh", type=int, default=12, help="new captions encoded per step")
    parser.add_argument("--pool", type=int, default=2048, help="captions encoded before step 1")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--drop", type=float, default=0.1, help="empty-prompt share")
    parser.add_argument(
        "--object-weight", type=float, default=4.0, help="loss weight of object pixels"
    )
    parser.add_argument(
        "--plain-share", type=float, default=0.25, help="share of bare basic colour words"
    )
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--checkpoint-every", type=int, default=200)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--eval-prompts", type=int, default=80)
    parser.add_argument("--eval-steps", type=int, default=16)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--export", type=Path, help="export the run's checkpoint here and exit")
    parser.add_argument(
        "--evaluate",
        action="store_true",
        help="print held-out adherence of the run's checkpoint (EMA) and exit",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    if args.export is not None:
        export(RUNS / args.name, args.export)
    elif args.evaluate:
        torch.set_num_threads(args.threads)
        unet = build_unet()
        state = torch.load(
            RUNS / args.name / "checkpoint.pt", map_location="cpu", weights_only=False
        )
        unet.load_state_dict(state["ema"])
        scores = evaluate(unet.eval(), heldout_prompts(args.eval_prompts), args)
        log.info(
            f"step {state['step']} steps {args.eval_steps} guidance {args.guidance} "
            f"heldout {scores}"
        )
    else:
        train(args)


if __name__ == "__main__":
    sys.exit(main())
