"""The playground in a real browser, on the embedded model: what a person does, end to end."""

import base64
import io
import json
import re
from decimal import Decimal
from typing import Any

import httpx
from PIL import Image

from tests.api.conftest import new_organization, png, project_key
from tests.conftest import ADMIN_KEY, API_KEY, LiveServer
from tests.playground.conftest import enter_keys

# In the page, before a click: when each preview and each final image appeared.
WATCH_IMAGES = """
window.seen = [];
new MutationObserver((changes) => {
  for (const change of changes) for (const node of change.addedNodes) {
    if (node.matches?.("img[data-partial]")) seen.push(["partial", performance.now()]);
    if (node.querySelector?.("img[data-final]")) seen.push(["final", performance.now()]);
  }
}).observe(document.body, { childList: true, subtree: true });
"""


# In the page: a copy of every form body it sends (Chromium does not hand Playwright a body
# that holds files), blobs as base64.
RECORD_FORMS = """
window.sentForms = [];
const send = window.fetch;
window.fetch = async (url, options) => {
  if (options?.body instanceof FormData) {
    const entries = [];
    for (const [name, value] of options.body.entries()) {
      const bytes = value instanceof Blob ? new Uint8Array(await value.arrayBuffer()) : null;
      entries.push([name, bytes ? btoa(String.fromCharCode(...bytes)) : value, Boolean(bytes)]);
    }
    window.sentForms.push({ url: String(url), entries });
  }
  return send(url, options);
};
"""


def sent_form(page: Any) -> dict[str, list[Any]]:
    """The last form body the page sent: field name -> values (files as bytes)."""
    parts: dict[str, list[Any]] = {}
    for name, value, is_file in page.evaluate("window.sentForms.at(-1).entries"):
        parts.setdefault(name, []).append(base64.b64decode(value) if is_file else value)
    return parts


FINAL_IMAGE = "#panel-generate .results img[data-final]"


def fill_generation(page: Any, prompt: str, model: str | None = None) -> None:
    """The Generate form with `prompt` (and `model`), not yet sent."""
    page.click("#tab-generate")
    if model is not None:
        page.select_option("#generate-form select[name=model]", model)
    page.fill("#gen-prompt", prompt)


def generate(page: Any, prompt: str, model: str | None = None) -> None:
    """Fill and send the Generate form (the answer is not waited for)."""
    fill_generation(page, prompt, model)
    page.click("#generate-form button[type=submit]")


def test_a_prompt_shows_live_previews_then_the_image_with_what_it_cost(page: Any) -> None:
    enter_keys(page)
    fill_generation(page, "a red circle on a blue background", "gpt-image-1")
    page.select_option("#generate-form select[name=quality]", "high")
    page.fill("#generate-form input[name=seed]", "1234")
    page.evaluate(WATCH_IMAGES)
    page.click("#generate-form button[type=submit]")
    page.wait_for_selector(FINAL_IMAGE, timeout=60_000)
    seen = page.evaluate("window.seen")
    kinds = [kind for kind, _ in seen]
    assert kinds.count("partial") >= 2 and kinds[-1] == "final"
    assert max(t for kind, t in seen if kind == "partial") < seen[-1][1]
    meta = page.inner_text("#panel-generate .results .meta")
    found = re.fullmatch(r"1024x1024 · seed 1234 · (\d+) in \+ (\d+) out tokens · \$([\d.]+)", meta)
    assert found is not None, meta
    # gpt-image-1: $5 per million text tokens in, $40 per million image tokens out.
    text_in, image_out, price = int(found[1]), int(found[2]), Decimal(found[3])
    assert price == (text_in * 5 + image_out * 40) / Decimal(10**6)
    assert "requests left" in page.inner_text("#limits")
    # The key is in the browser's storage, never in a URL.
    assert "sk-" not in page.url
    # Kept in this browser: still in the gallery after a reload.
    page.reload()
    page.click("#tab-gallery")
    page.wait_for_selector("#gallery img[data-final]")
    assert "seed 1234" in page.inner_text("#gallery .meta")
    assert page.errors == []


def test_variations_code_and_an_edit_of_a_result(page: Any) -> None:
    enter_keys(page)
    generate(page, "a green square")
    page.wait_for_selector(FINAL_IMAGE, timeout=60_000)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("#panel-generate .results .card >> text=Copy curl")
    curl = page.evaluate("navigator.clipboard.readText()")
    assert curl.startswith("curl http") and "/v1/images/generations" in curl
    assert '"prompt":"a green square"' in curl and "$OPENAI_API_KEY" in curl and "sk-" not in curl
    page.click("#panel-generate .results .card >> text=Copy Python")
    python = page.evaluate("navigator.clipboard.readText()")
    assert "client.images.generate(" in python and 'prompt="a green square"' in python
    with page.expect_response("**/v1/images/variations") as answered:
        page.click("#panel-generate .results .card >> text=Variations")
    assert answered.value.status == 200
    page.wait_for_function(
        "document.querySelectorAll('#panel-generate .results .card').length == 2"
    )
    # A result taken into an edit: the first input, with the mask painter at its size.
    page.click("#panel-generate .results .card >> nth=0 >> text=Edit")
    assert page.is_visible("#panel-edit")
    page.wait_for_selector("#edit-inputs li img")
    page.wait_for_function("document.getElementById('mask-canvas').width > 1")
    assert page.locator("#edit-inputs li").count() == 1
    assert page.errors == []


def test_a_painted_mask_goes_with_the_edit(page: Any, tmp_path: Any) -> None:
    first, second = tmp_path / "first.png", tmp_path / "second.png"
    first.write_bytes(png(Image.new("RGB", (256, 256), (30, 120, 200))))
    second.write_bytes(png(Image.new("RGB", (128, 128), (200, 120, 30))))
    enter_keys(page)
    page.click("#tab-edit")
    page.set_input_files("#edit-files", [str(first), str(second)])
    page.wait_for_function("document.getElementById('mask-canvas').width === 256")
    assert page.locator("#edit-inputs li").count() == 2
    canvas = page.locator("#mask-canvas").bounding_box()
    assert canvas is not None
    scale = canvas["width"] / 256  # screen pixels per image pixel

    def stroke(x: float, y: float, to_x: float) -> None:
        page.mouse.move(canvas["x"] + x * scale, canvas["y"] + y * scale)
        page.mouse.down()
        page.mouse.move(canvas["x"] + to_x * scale, canvas["y"] + y * scale, steps=8)
        page.mouse.up()

    page.fill("#mask-size", "20")  # the brush, 20 screen pixels across
    stroke(40, 40, 110)
    page.check("input[name=mask-tool][value=eraser]")
    stroke(40, 40, 41)  # the eraser takes back the stroke's start
    page.check("input[name=mask-tool][value=brush]")
    stroke(150, 200, 180)
    page.click("#mask-undo")  # the last stroke goes
    page.fill("#edit-prompt", "make the corner red")
    page.evaluate(WATCH_IMAGES)
    page.evaluate(RECORD_FORMS)
    page.click("#edit-form button[type=submit]")
    page.wait_for_selector("#panel-edit .results img[data-final]", timeout=60_000)
    parts = sent_form(page)
    mask = Image.open(io.BytesIO(parts["mask"][0]))
    assert mask.size == (256, 256) and mask.mode == "RGBA"
    alpha = mask.getchannel("A")
    assert alpha.getpixel((100, 40)) == 0  # painted: to be edited
    assert alpha.getpixel((40, 40)) == 255  # painted, then erased
    assert alpha.getpixel((165, 200)) == 255  # painted, then undone
    assert alpha.getpixel((250, 5)) == 255  # never painted
    assert parts["prompt"] == ["make the corner red"] and parts["stream"] == ["true"]
    sizes = [Image.open(io.BytesIO(data)).size for data in parts["image[]"]]
    assert sizes == [(256, 256), (128, 128)]
    assert [kind for kind, _ in page.evaluate("window.seen")].count("partial") >= 1
    # Clear: nothing painted, no mask sent.
    page.click("#mask-clear")
    page.click("#edit-form button[type=submit]")
    page.wait_for_selector("#panel-edit .results .card >> nth=1")
    assert "mask" not in sent_form(page)
    assert page.errors == []


def test_a_two_turn_conversation_continues_its_chain(page: Any) -> None:
    enter_keys(page)
    page.click("#tab-chat")
    page.fill("#chat-input", "a red circle on a blue background")
    page.click("#chat-form button[type=submit]")
    first = page.wait_for_selector("#chat-log li.assistant[data-response-id]", timeout=60_000)
    assert first.query_selector("img[data-final]") is not None
    assert "Revised prompt:" in first.inner_text()
    first_id = first.get_attribute("data-response-id")
    page.fill("#chat-input", "now make it blue")
    with page.expect_request("**/v1/responses") as sent:
        page.click("#chat-form button[type=submit]")
    assert json.loads(sent.value.post_data)["previous_response_id"] == first_id
    page.wait_for_function(
        "document.querySelectorAll('#chat-log li.assistant[data-response-id] img[data-final]')"
        ".length === 2",
        timeout=60_000,
    )
    # Each turn's image is in the gallery, its code the Responses call that made it.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("#tab-gallery")
    page.click("#gallery .card >> nth=0 >> text=Copy Python")
    python = page.evaluate("navigator.clipboard.readText()")
    assert "client.responses.create(" in python and 'input="now make it blue"' in python
    assert f'previous_response_id="{first_id}"' in python
    assert '"type": "image_generation"' in python and "stream" not in python
    assert page.errors == []


def test_a_moderation_refusal_is_said_plainly(page: Any) -> None:
    enter_keys(page)
    generate(page, "a topless sunbather on a crowded beach", "gpt-image-1")
    page.wait_for_selector("#status.error")
    said = page.inner_text("#status")
    assert said.startswith("Refused by moderation") and "not billed" in said
    assert page.get_attribute("#status", "role") == "alert"


def limited_customer(server: LiveServer) -> tuple[str, str]:
    """A verified organization whose project may make one gpt-image-1 image a minute: its
    project key and its admin key."""
    created = new_organization(server, name="playground-limited", verified=True, tier="1")
    project = created["default_project_id"]
    response = httpx.post(
        f"{server.api_url}/organization/projects/{project}/rate_limits/rl-gpt-image-1",
        json={"max_images_per_1_minute": 1},
        headers={"authorization": f"Bearer {created['admin_api_key']['value']}"},
    )
    assert response.status_code == 200, response.text
    key = project_key(server, created["id"], project, admin_key=ADMIN_KEY)
    return key, created["admin_api_key"]["value"]


def test_a_rate_limit_says_when_to_retry_and_the_admin_chart_draws(
    page: Any, mini_server: LiveServer
) -> None:
    key, admin_key = limited_customer(mini_server)
    enter_keys(page, key, admin_key)
    generate(page, "a dot", "gpt-image-1")
    page.wait_for_selector(FINAL_IMAGE, timeout=60_000)
    assert "images left: 0 of 1" in page.inner_text("#limits")
    page.click("#generate-form button[type=submit]")
    page.wait_for_selector("#status.error")
    said = page.inner_text("#status")
    assert said.startswith("Rate limited") and "retry in" in said
    page.click("#tab-account")
    page.wait_for_selector("#usage-chart svg rect.bar >> nth=0", state="attached")
    assert "Verified · usage tier 1" in page.inner_text("#organization")
    bars = page.eval_on_selector_all(
        "#usage-chart rect.bar", "bars => bars.map(b => b.getAttribute('height'))"
    )
    assert any(float(height) > 0 for height in bars)
    assert page.errors == []


def test_tabs_keyboard_and_a_phone_screen(page: Any) -> None:
    page.set_viewport_size({"width": 375, "height": 800})
    enter_keys(page)
    page.focus("#tab-generate")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.id") == "tab-edit"
    assert page.is_visible("#panel-edit") and not page.is_visible("#panel-generate")
    page.keyboard.press("End")
    assert page.evaluate("document.activeElement.id") == "tab-account"
    page.click("#tab-models")
    page.wait_for_selector("#models-table tbody tr")
    assert "gpt-image-1" in page.inner_text("#models-table")
    # Nothing wider than the screen; every form field has a label.
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    unlabeled = page.evaluate(
        "[...document.querySelectorAll('input, select, textarea')]"
        ".filter((field) => !field.labels?.length).map((field) => field.id || field.name)"
    )
    assert unlabeled == []


def test_the_page_runs_under_its_own_policy(browser: Any, mini_server: LiveServer) -> None:
    """No eval, no inline script or style, nothing from another origin: the strict policy the
    server sends holds, and a generation still works under it."""
    context = browser.new_context()
    page = context.new_page()
    refused: list[str] = []
    page.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    page.goto(mini_server.base_url + "/playground")
    page.click("#tab-account")
    page.fill("#api-key", API_KEY)
    page.click("#key-form button[type=submit]")
    page.click("#tab-generate")
    page.wait_for_selector("#generate-form select[name=model] option >> nth=0", state="attached")
    generate(page, "a dot")
    page.wait_for_selector(FINAL_IMAGE, timeout=60_000)
    context.close()
    assert refused == []


def test_images_dropped_on_the_box_are_inputs_up_to_sixteen(page: Any) -> None:
    enter_keys(page)
    page.click("#tab-edit")
    page.evaluate(
        """async () => {
          const transfer = new DataTransfer();
          for (let index = 0; index < 17; index += 1) {
            const canvas = new OffscreenCanvas(32, 32);
            canvas.getContext("2d").fillRect(0, 0, 8 + index, 8);
            const blob = await canvas.convertToBlob({ type: "image/png" });
            transfer.items.add(new File([blob], `dropped-${index}.png`, { type: "image/png" }));
          }
          transfer.items.add(new File(["not an image"], "notes.txt", { type: "text/plain" }));
          const box = document.getElementById("edit-drop");
          box.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true }));
        }"""
    )
    page.wait_for_selector("#status.error")
    assert page.locator("#edit-inputs li").count() == 16
    assert "At most 16 images" in page.inner_text("#status")
    page.click("#edit-inputs li >> nth=0 >> text=Remove")
    assert page.locator("#edit-inputs li").count() == 15
