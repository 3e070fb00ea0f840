// Conversation: multi-turn image editing through /v1/responses, each turn continuing the
// chain by previous_response_id; partial images live, then the image with its revised prompt.

import { stream } from "./api.js";
import { keep, newId } from "./gallery.js";
import { blobOf, busy, dataUrl, describe, el, status } from "./ui.js";

export function setUpChat() {
  const form = document.getElementById("chat-form");
  const log = document.getElementById("chat-log");
  let previous = null;

  document.getElementById("chat-new").addEventListener("click", () => {
    previous = null;
    log.replaceChildren();
    status("New conversation.");
  });

  form.addEventListener("submit", (submitted) => {
    submitted.preventDefault();
    const text = form.elements.input.value.trim();
    if (!text) return;
    const tool = { type: "image_generation", partial_images: 2, quality: form.elements.quality.value, size: form.elements.size.value };
    if (form.elements.image_model.value) tool.model = form.elements.image_model.value;
    const body = { model: form.elements.model.value, input: text, tools: [tool], stream: true };
    if (previous) body.previous_response_id = previous;
    log.append(el("li", { class: "user", text }));
    const reply = el("li", { class: "assistant", "data-turn": String(log.children.length) });
    const previews = el("div", { class: "previews" });
    reply.append(previews);
    log.append(reply);
    form.elements.input.value = "";
    busy(form.querySelector("button[type=submit]"), async () => {
      try {
        for await (const { event } of stream("/v1/responses", { json: body })) {
          if (event.type === "response.image_generation_call.partial_image") {
            previews.append(el("img", { src: dataUrl(event.partial_image_b64, event.output_format), alt: `Preview ${event.partial_image_index + 1}`, "data-partial": String(event.partial_image_index) }));
          } else if (event.type === "response.output_item.done" && event.item.type === "image_generation_call") {
            const { stream: _streamed, ...params } = body;
            await showImage(reply, previews, event.item, text, params);
          } else if (event.type === "response.output_text.done") {
            reply.append(el("p", { class: "text", text: event.text }));
          } else if (event.type === "response.completed") {
            previous = event.response.id;
            reply.dataset.responseId = previous;
          } else if (event.type === "response.failed") {
            throw Object.assign(new Error(event.response.error?.message || "The turn failed."), { code: event.response.error?.code });
          }
        }
        status("Turn done: reply to keep editing this image.", "ok");
      } catch (error) {
        reply.append(el("p", { class: "error", role: "alert", text: describe(error) }));
        status(describe(error), "error");
      }
    });
  });
}

// `params`: the turn's request, for the gallery's curl and Python snippets.
async function showImage(reply, previews, item, prompt, params) {
  const src = dataUrl(item.result, item.output_format);
  previews.remove();
  reply.append(
    el("img", { src, alt: item.revised_prompt || prompt, "data-final": "" }),
    el("p", { class: "revised", text: `Revised prompt: ${item.revised_prompt || prompt}` }),
  );
  await keep({ id: newId(), created: Date.now(), kind: "response", model: params.model, prompt, revised_prompt: item.revised_prompt, size: item.size || "auto", blob: await blobOf(src), params });
}
