// One Images API request from a form: live previews while it streams, then the final images,
// each shown the moment it arrives and kept in the gallery with its size, seed, tokens and
// price.

import { call, stream } from "./api.js";
import { card, keep, newId } from "./gallery.js";
import { blobOf, dataUrl, el, status } from "./ui.js";

export async function runImages({ path, body, streaming, section, record, hooks }) {
  const previews = section.querySelector(".previews");
  const results = section.querySelector(".results");
  previews.replaceChildren();
  status(streaming ? "Rendering: previews appear as the image forms…" : "Rendering…");
  const options = body instanceof FormData ? { form: body } : { json: body };
  const kept = [];
  let cost = null;
  let shown = 0;
  let newest = null;

  const show = (image) => {
    const src = dataUrl(image.b64, image.format);
    const made = {
      ...record,
      id: newId(),
      created: Date.now(),
      blob: null,
      size: image.size || record.params.size || "auto",
      usage: image.usage || null,
      // The price is the request's: told once, with its first image.
      cost: shown === 0 ? cost : null,
      revised_prompt: image.revised || null,
    };
    shown += 1;
    // Shown from the answer's own bytes at once; its Blob (for the gallery, edits and
    // variations) is decoded natively just after.
    const shownCard = card(made, hooks, src);
    // In order of arrival, ahead of earlier requests' results.
    if (newest) newest.after(shownCard); else results.prepend(shownCard);
    newest = shownCard;
    kept.push(blobOf(src).then((blob) => { made.blob = blob; return keep(made); }));
  };

  if (streaming) {
    for await (const { event, headers } of stream(path, options)) {
      cost = headers.get("x-limner-cost-usd");
      if (event.type.endsWith(".partial_image")) {
        previews.append(el("img", {
          src: dataUrl(event.b64_json, event.output_format),
          alt: `Preview ${event.partial_image_index + 1}`,
          "data-partial": String(event.partial_image_index),
        }));
      } else if (event.type.endsWith(".completed")) {
        show({ b64: event.b64_json, format: event.output_format, size: event.size, usage: event.usage });
      }
    }
  } else {
    const { data, headers } = await call(path, { method: "POST", ...options });
    cost = headers.get("x-limner-cost-usd");
    for (const [index, image] of data.data.entries()) {
      show({ b64: image.b64_json, format: data.output_format || "png", size: data.size, usage: index === 0 ? data.usage : null, revised: image.revised_prompt });
    }
  }
  // Shown first, kept after: the gallery's write is not what the person waits for.
  Promise.all(kept).catch((error) => status(`Not kept in the gallery: ${error.message}`, "error"));
  status(`Done: ${shown} image${shown === 1 ? "" : "s"}${cost ? `, $${cost}` : ""}.`, "ok");
}
