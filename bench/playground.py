"""The playground against the SDK: time from the click to the first partial preview and to the
final image, on the embedded model, against the same streamed request made with the `openai`
SDK.

Serves limner-mini with a plain `python -m limner serve` on 127.0.0.1, opens /playground in
Debian's chromium (Playwright, `executable_path`), and interleaves N runs of each:

- browser: the Generate form (gpt-image-1, 1024x1024, the quality chosen, 2 previews, a fixed
  seed); times from the button's click to the first preview <img> and to the final result
  card, taken in the page (performance.now()).
- SDK: `images.generate(..., stream=True, partial_images=2)` with the same fields; times from
  the call to the first partial_image event and to the completed event.

Prints the medians and the ratios browser / SDK (goal: at most 1.1 for both).

    python bench/playground.py [--runs 10] [--warmup 2] [--quality medium]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import openai
from playwright.sync_api import sync_playwright
from served import limner_serve

KEY = "sk-proj-bench-playground-key-0123456789"
PROMPT = "a lighthouse on a cliff at dusk, oil painting"
SEED = 7

# In the page: when the click happened, and when the first preview and the final card appeared.
TIMERS = """
window.timing = {};
document.querySelector("#generate-form button[type=submit]").addEventListener(
  "click", () => { window.timing = { click: performance.now() }; }, { capture: true });
new MutationObserver((changes) => {
  for (const change of changes) for (const node of change.addedNodes) {
    if (node.matches?.("img[data-partial]") && !timing.partial) timing.partial = performance.now();
    if (node.querySelector?.("img[data-final]")) timing.final = performance.now();
  }
}).observe(document.body, { childList: true, subtree: true });
"""


def browser_run(page: Any) -> tuple[float, float]:
    page.click("#generate-form button[type=submit]")
    # The page's own CSP stays on (no eval): wait for the card, then read the page's clock.
    page.wait_for_selector("#panel-generate .results img[data-final]", timeout=120_000)
    timing = page.evaluate("window.timing")
    while "final" not in timing:
        time.sleep(0.005)
        timing = page.evaluate("window.timing")
    page.evaluate("document.querySelector('#panel-generate .results').replaceChildren()")
    return timing["partial"] - timing["click"], timing["final"] - timing["click"]


def sdk_run(sdk: openai.OpenAI, quality: str) -> tuple[float, float]:
    started = time.perf_counter()
    first = final = 0.0
    for event in sdk.images.generate(
        model="gpt-image-1",
        prompt=PROMPT,
        size="1024x1024",
        quality=quality,  # type: ignore[arg-type]
        stream=True,
        partial_images=2,
        extra_body={"seed": SEED},
    ):
        now = (time.perf_counter() - started) * 1000
        if event.type == "image_generation.partial_image" and not first:
            first = now
        if event.type == "image_generation.completed":
            final = now
    return first, final


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--quality", default="medium", choices=["low", "medium", "high"])
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as home,
        limner_serve(Path(home), [], {"LIMNER_API_KEY": KEY}) as served,
        sync_playwright() as playwright,
        openai.OpenAI(base_url=served.base_url + "/v1", api_key=KEY, max_retries=0) as sdk,
    ):
        browser = playwright.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        context = browser.new_context()
        context.add_init_script(f"localStorage.setItem('limner.apiKey', '{KEY}')")
        page = context.new_page()
        page.goto(served.base_url + "/playground")
        page.wait_for_selector("#generate-form select[name=model] option", state="attached")
        page.select_option("#generate-form select[name=model]", "gpt-image-1")
        page.fill("#gen-prompt", PROMPT)
        page.select_option("#generate-form select[name=size]", "1024x1024")
        page.select_option("#generate-form select[name=quality]", args.quality)
        page.fill("#generate-form input[name=seed]", str(SEED))
        page.fill("#generate-form input[name=partial_images]", "2")
        page.evaluate(TIMERS)
        for _ in range(args.warmup):
            browser_run(page)
            sdk_run(sdk, args.quality)
        timings: dict[str, list[tuple[float, float]]] = {"browser": [], "sdk": []}
        for _ in range(args.runs):
            timings["browser"].append(browser_run(page))
            timings["sdk"].append(sdk_run(sdk, args.quality))
        browser.close()
    medians = {
        name: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
        for name, runs in timings.items()
    }
    print(
        f"limner-mini, gpt-image-1 1024x1024 quality={args.quality}, 2 previews, "
        f"{args.runs} runs each"
    )
    for name, (first, final) in medians.items():
        print(f"  {name:8s} first preview {first:7.1f} ms   final image {final:7.1f} ms")
    first_ratio = medians["browser"][0] / medians["sdk"][0]
    final_ratio = medians["browser"][1] / medians["sdk"][1]
    print(
        f"  ratio browser/SDK: first preview {first_ratio:.3f}, "
        f"final image {final_ratio:.3f} (goal <= 1.1)"
    )


if __name__ == "__main__":
    main()
