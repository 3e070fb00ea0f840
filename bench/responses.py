"""What the Responses API costs over the Images API, and whether a chain's cost stays flat.

Serves the embedded limner-mini model with a plain `python -m limner serve` on 127.0.0.1 (no
catalog) and drives it through the official `openai` SDK:

1. Overhead: after warm-up, N interleaved pairs of `images.generate(model="gpt-image-1", ...)`
   and `responses.create(model="gpt-4.1", tools=[{"type": "image_generation", ...}])` with the
   same prompt, size 1024x1024, quality low and seed. Prints both medians and their ratio
   responses / images (goal: at most 1.05), and whether the two paths returned the same image
   (byte-identical, else at least the same pixel size). The server's CPU time per call is
   printed too: it moves less than wall time when other jobs share the CPU.
2. A chain: one generation, then four edits ("now make it ...") each by previous_response_id,
   seed fixed, repeated --chains times. Prints each turn's latency (median over the chains) and
   the bytes its response keeps in the server's database (responses.body + its response_items
   bodies + its response_images data, read from LIMNER_HOME's SQLite file after the run), and
   the ratios turn 5 / turn 1 and turn 5 / turn 2 for both (goal: flat, about 1.0; turn 1 is a
   generation and later turns edits, so turn 2 is the like-for-like base). Each turn edits a
   different image, so as a control for what the chain itself costs, turn 5 is also sent
   without one: turn 4's image as an input_image data URL, the same prompt and seed.

    python bench/responses.py [--runs 10] [--warmup 2] [--chains 10]
"""

import argparse
import base64
import contextlib
import io
import os
import secrets
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import openai
from PIL import Image
from served import limner_serve

IMAGE_MODEL: Final = "gpt-image-1"
MAINLINE = "gpt-4.1"
SIZE: Final = "1024x1024"
QUALITY: Final = "low"
SEED = 7
PROMPT = "a lighthouse on a cliff at dusk, oil painting"
EDITS = (
    "now make it snowy",
    "now make it night, with the lamp lit",
    "now make it a watercolor",
    "now make it stormy, with high waves",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="timed calls of each kind")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls of each kind first")
    parser.add_argument("--chains", type=int, default=10, help="five-turn chains to time")
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"  # inherited by the server: weights from disk only
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

    # A project key: model endpoints refuse admin keys, as OpenAI's do.
    key = "sk-proj-bench-" + secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="limner-bench-") as temp:
        home = Path(temp) / "home"
        # trust_env=False: no proxy from the environment; every byte stays on 127.0.0.1.
        with (
            limner_serve(home, [], {"LIMNER_API_KEY": key}) as served,
            httpx.Client(trust_env=False, timeout=300) as http,
            openai.OpenAI(
                base_url=served.base_url + "/v1", api_key=key, max_retries=0, http_client=http
            ) as client,
        ):
            load_start = os.getloadavg()[0]
            overhead = measure_overhead(client, served.pid, args)
            chains = measure_chains(client, args)
            load_end = os.getloadavg()[0]
        stored = stored_bytes(
            home / "limner.db", [turn for chain in chains.turns for turn in chain]
        )

    print(
        f"limner serve (defaults: embedded limner-mini, moderation on), {os.cpu_count()} cpus; "
        f"load average {load_start:.2f} at start, {load_end:.2f} at end"
    )
    report_overhead(args, overhead)
    report_chains(args, chains, stored)


# -- 1. overhead ---------------------------------------------------------------------------


@dataclass
class Overhead:
    wall: dict[str, list[float]]  # seconds per call, by kind
    cpu: dict[str, list[float]]  # the server's CPU seconds per call, by kind
    pairs: list[tuple[bytes, bytes]]  # (images image, responses image) per pair


def measure_overhead(client: openai.OpenAI, pid: int, args: argparse.Namespace) -> Overhead:
    def images_call() -> bytes:
        result = client.images.generate(
            model=IMAGE_MODEL, prompt=PROMPT, quality=QUALITY, size=SIZE, extra_body={"seed": SEED}
        )
        assert result.data and result.data[0].b64_json
        return base64.b64decode(result.data[0].b64_json)

    def responses_call() -> bytes:
        response = client.responses.create(
            model=MAINLINE,
            input=PROMPT,
            tools=[tool()],
        )
        return _image_of(response)

    calls: list[tuple[str, Callable[[], bytes]]] = [
        ("images", images_call),
        ("responses", responses_call),
    ]
    for _ in range(args.warmup):
        for _, call in calls:
            call()
    result = Overhead({"images": [], "responses": []}, {"images": [], "responses": []}, [])
    for index in range(args.runs):
        # Alternate which goes first, so drift in machine load hits both alike.
        outputs: dict[str, bytes] = {}
        for kind, call in calls if index % 2 == 0 else calls[::-1]:
            cpu = _cpu_seconds(pid)
            start = time.perf_counter()
            outputs[kind] = call()
            result.wall[kind].append(time.perf_counter() - start)
            result.cpu[kind].append(_cpu_seconds(pid) - cpu)
        result.pairs.append((outputs["images"], outputs["responses"]))
    return result


def report_overhead(args: argparse.Namespace, overhead: Overhead) -> None:
    images, responses, pairs = overhead.wall["images"], overhead.wall["responses"], overhead.pairs
    print()
    print(
        f"1. responses.create({MAINLINE}, image_generation tool) vs "
        f"images.generate({IMAGE_MODEL}): size {SIZE}, quality {QUALITY}, seed {SEED}; "
        f"{args.runs} of each, interleaved after {args.warmup} warm-up"
    )
    print(f"   images.generate:  {_spread(images)}")
    print(f"   responses.create: {_spread(responses)}")
    identical = sum(a == b for a, b in pairs)
    sizes = {(_pixels(a), _pixels(b)) for a, b in pairs}
    same_size = all(a == b for a, b in sizes)
    described = ", ".join(f"{a[0]}x{a[1]} vs {b[0]}x{b[1]}" for a, b in sorted(sizes))
    print(
        f"   same image: byte-identical in {identical} of {len(pairs)} pairs "
        f"({len(pairs[0][0])} vs {len(pairs[0][1])} bytes in the first); pixel size "
        f"{'the same' if same_size else 'DIFFERENT'} ({described})"
    )
    images_median, responses_median = statistics.median(images), statistics.median(responses)
    paired = statistics.median(r / i for i, r in zip(images, responses, strict=True))
    print(
        f"   difference of medians {(responses_median - images_median) * 1000:.1f} ms; "
        f"other estimates: paired ratios median {paired:.3f}, minimums "
        f"{min(responses) / min(images):.3f}"
    )
    cpu_images = statistics.median(overhead.cpu["images"])
    cpu_responses = statistics.median(overhead.cpu["responses"])
    print(
        f"   server CPU time medians: images {cpu_images * 1000:.1f} ms, responses "
        f"{cpu_responses * 1000:.1f} ms, ratio {cpu_responses / cpu_images:.3f}"
    )
    print(f"   ratio responses / images (goal <= 1.05): {responses_median / images_median:.3f}")


# -- 2. the chain --------------------------------------------------------------------------


@dataclass
class Chains:
    turns: list[list[tuple[str, float]]] = field(default_factory=list)  # (id, seconds) per turn
    standalone: list[float] = field(default_factory=list)  # turn 5 without the chain, seconds
    standalone_same: list[bool] = field(default_factory=list)  # ... made turn 5's image


def measure_chains(client: openai.OpenAI, args: argparse.Namespace) -> Chains:
    """`--chains` chains of five turns, each followed by its turn 5 sent without the chain."""
    chains = Chains()
    for _ in range(args.chains):
        chain: list[tuple[str, float]] = []
        images: list[bytes] = []
        previous: str | None = None
        for text in (PROMPT, *EDITS):
            start = time.perf_counter()
            response = client.responses.create(
                model=MAINLINE,
                input=text,
                tools=[tool()],
                previous_response_id=previous or openai.omit,
            )
            elapsed = time.perf_counter() - start
            images.append(_image_of(response))  # a turn without an image fails the run
            chain.append((response.id, elapsed))
            previous = response.id
        chains.turns.append(chain)
        url = "data:image/png;base64," + base64.b64encode(images[3]).decode()
        message: Any = {
            "role": "user",
            "content": [
                {"type": "input_text", "text": EDITS[-1]},
                {"type": "input_image", "image_url": url},
            ],
        }
        start = time.perf_counter()
        response = client.responses.create(model=MAINLINE, input=[message], tools=[tool()])
        chains.standalone.append(time.perf_counter() - start)
        chains.standalone_same.append(_image_of(response) == images[4])
    return chains


def stored_bytes(database: Path, turns: list[tuple[str, float]]) -> dict[str, dict[str, int]]:
    """Per response id: the bytes of its row's body, its items' bodies and its images."""
    stored = {}
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        for response_id, _ in turns:
            query = {
                "body": "SELECT length(CAST(body AS BLOB)) FROM responses WHERE id = ?",
                "items": "SELECT coalesce(sum(length(CAST(body AS BLOB))), 0), count(*) "
                "FROM response_items WHERE response_id = ?",
                "images": "SELECT coalesce(sum(length(data)), 0), count(*) "
                "FROM response_images WHERE response_id = ?",
            }
            row: dict[str, int] = {}
            for name, sql in query.items():
                values = connection.execute(sql, (response_id,)).fetchone()
                row[name] = values[0] or 0
                if len(values) > 1:
                    row[name + "_rows"] = values[1]
            row["total"] = row["body"] + row["items"] + row["images"]
            stored[response_id] = row
    return stored


def report_chains(
    args: argparse.Namespace, chains: Chains, stored: dict[str, dict[str, int]]
) -> None:
    print()
    print(
        f"2. a five-turn chain by previous_response_id (turn 1 generates, turns 2-5 edit), "
        f"seed {SEED}; {args.chains} chain(s), latency median over them; stored bytes of the "
        "first chain (the others in brackets when they differ)"
    )
    print(
        f"   {'turn':>4}  {'latency ms':>10}  {'stored bytes':>12}  {'body':>6}  "
        f"{'items (rows)':>13}  {'images (rows)':>16}  prompt"
    )
    latency, total, meta = [], [], []
    varied = False
    for turn, text in enumerate((PROMPT, *EDITS)):
        seconds = statistics.median(chain[turn][1] for chain in chains.turns)
        rows = [stored[chain[turn][0]] for chain in chains.turns]
        first = rows[0]
        others = sorted({row["total"] for row in rows[1:]} - {first["total"]})
        extra = f" [{', '.join(map(str, others))}]" if others else ""
        varied = varied or bool(others)
        latency.append(seconds)
        total.append(first["total"])
        meta.append(first["body"] + first["items"])
        items = f"{first['items']} ({first['items_rows']})"
        images = f"{first['images']} ({first['images_rows']})"
        print(
            f"   {turn + 1:>4}  {seconds * 1000:>10.0f}  {first['total']:>12}  "
            f"{first['body']:>6}  {items:>13}  {images:>16}  {text!r}{extra}"
        )
    print(
        f"   stored bytes the same turn by turn in all {len(chains.turns)} chains: "
        f"{'no (see brackets)' if varied else 'yes'}"
    )
    print(
        f"   turn 5 / turn 1 (goal ~1.0): time {latency[4] / latency[0]:.3f}, "
        f"stored bytes {total[4] / total[0]:.3f}"
    )
    print(
        f"   turn 5 / turn 2 (edit vs edit, goal ~1.0): time {latency[4] / latency[1]:.3f}, "
        f"stored bytes {total[4] / total[1]:.3f}"
    )
    print(
        f"   without the images (body + items; a chain copied into each turn would show here): "
        f"turn 5 / turn 1 {meta[4] / meta[0]:.3f}, turn 5 / turn 2 {meta[4] / meta[1]:.3f}; "
        "the images are one new PNG per turn, whose size follows its content"
    )
    standalone = statistics.median(chains.standalone)
    print(
        f"   control, turn 5 without the chain (turn 4's image sent as input_image): "
        f"{_spread(chains.standalone)}; chained turn 5 / it {latency[4] / standalone:.3f}; "
        f"same image as chained turn 5 in {sum(chains.standalone_same)} of "
        f"{len(chains.standalone_same)}"
    )


# -- helpers -------------------------------------------------------------------------------


def tool() -> Any:
    """The image_generation tool object; `seed` is Limner's own key, outside the SDK's type."""
    return {"type": "image_generation", "quality": QUALITY, "size": SIZE, "seed": SEED}


def _image_of(response: Any) -> bytes:
    calls = [item for item in response.output if item.type == "image_generation_call"]
    if response.status != "completed" or len(calls) != 1 or not calls[0].result:
        raise SystemExit(f"response {response.id} made no image: {response.model_dump_json()}")
    return base64.b64decode(calls[0].result)


def _cpu_seconds(pid: int) -> float:
    """CPU time of every live thread of process `pid`, from /proc (as bench/overhead.py)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        # A thread may end between the listing and the read.
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def _pixels(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


def _spread(samples: list[float]) -> str:
    return (
        f"median {statistics.median(samples) * 1000:.1f} ms "
        f"(min {min(samples) * 1000:.1f}, max {max(samples) * 1000:.1f})"
    )


if __name__ == "__main__":
    main()
