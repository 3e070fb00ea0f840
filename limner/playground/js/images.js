// One Images API request from a form: live previews while it streams, then the final images,
// each kept in the gallery with its size, seed, tokens and price.

import { call, stream } from "./api.js";
import { keep, newId, card } from "./gallery.js";
import { b64ToBlob, el, status } from "./ui.js";

const MEDIA = { png: "image/png", jpeg: "image/jpeg", webp: "image/webp" };

export async function runImages({ path, body, streaming, section, record, hooks }) {
  const previews = section.querySelector(".previews");
  const results = section.querySelector(".results");
  previews.replaceChildren();
  status(streaming ? "Rendering: previews appear as the image forms…" : "Rendering…");
  const finals = [];
  const options = body instanceof FormData ? { form: body } : { json: body };
  let cost = null;
  if (streaming) {
    for await (const { event, headers } of stream(path, options)) {
      cost = headers.get("x-limner-cost-usd");
      if (event.type.endsWith(".partial_image")) {
        previews.append(el("img", {
          src: `data:${MEDIA[event.output_format] || "image/png"};base64,${event.b64_json}`,
          alt: `Preview ${event.partial_image_index + 1}`,
          "data-partial": String(event.partial_image_index),
        }));
      } else if (event.type.endsWith(".completed")) {
        finals.push({ b64: event.b64_json, format: event.output_format, size: event.size, usage: event.usage });
      }
    }
  } else {
    const options2 = body instanceof FormData ? { method: "POST", form: body } : { method: "POST", json: body };
    const { data, headers } = await call(path, options2);
    cost = headers.get("x-limner-cost-usd");
    for (const image of data.data) {
      finals.push({ b64: image.b64_json, format: data.output_format || "png", size: data.size || record.params.size, usage: data.usage, revised: image.revised_prompt });
    }
  }
  const cards = [];
  for (const [index, image] of finals.entries()) {
    const kept = {
      ...record,
      id: newId(),
      created: Date.now(),
      blob: b64ToBlob(image.b64, MEDIA[image.format] || "image/png"),
      size: image.size || record.params.size || "auto",
      usage: index === 0 || streaming ? image.usage : null,
      // The price is the request's: told once, with its first image.
      cost: index === 0 ? cost : null,
      revised_prompt: image.revised || null,
    };
    await keep(kept);
    cards.push(card(kept, hooks));
  }
  results.prepend(...cards);
  status(`Done: ${finals.length} image${finals.length === 1 ? "" : "s"}${cost ? `, $${cost}` : ""}.`, "ok");
}
