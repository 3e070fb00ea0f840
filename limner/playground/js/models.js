// The served models and what each can do (from /v1/models, Limner's `limner` field), and the
// OpenAI request rules per model name, so each form offers only what works.

import { call } from "./api.js";
import { el } from "./ui.js";

const RULES = {
  gpt: {
    sizes: ["auto", "1024x1024", "1536x1024", "1024x1536"],
    qualities: ["auto", "low", "medium", "high"],
    streams: true,
  },
  "dall-e-2": { sizes: ["1024x1024", "512x512", "256x256"], qualities: ["standard"], streams: false },
  "dall-e-3": { sizes: ["1024x1024", "1792x1024", "1024x1792"], qualities: ["standard", "hd"], streams: false },
};

export function rulesFor(model) {
  return RULES[model] || RULES.gpt;
}

// The fields every image form has, and what the form's model asks beyond them: DALL·E names
// answer with URLs unless told otherwise, the page wants the bytes.
export function baseParams(form) {
  const model = form.elements.model.value;
  const params = { model, prompt: form.elements.prompt.value, n: Number(form.elements.n.value), size: form.elements.size.value, quality: form.elements.quality.value };
  if (!rulesFor(model).streams) params.response_format = "b64_json";
  return params;
}

let served = [];

export function models() { return served; }

export async function loadModels() {
  const { data } = await call("/v1/models");
  served = data.data;
  for (const select of document.querySelectorAll("select[data-models]")) {
    const wanted = select.dataset.models;
    const previous = select.value;
    select.replaceChildren(
      ...served
        .filter((model) => (wanted === "edits" ? model.limner?.edits : model.limner?.generations ?? true))
        .map((model) => el("option", { value: model.id, text: model.id })),
    );
    if ([...select.options].some((option) => option.value === previous)) select.value = previous;
    select.dispatchEvent(new Event("change"));
  }
  renderTable();
}

// Sizes, qualities and GPT-only fields follow the form's model.
export function followModel(form) {
  const select = form.elements.model;
  const apply = () => {
    const rules = rulesFor(select.value);
    for (const [selector, values] of [["select[data-sizes]", rules.sizes], ["select[data-qualities]", rules.qualities]]) {
      const target = form.querySelector(selector);
      if (!target) continue;
      const previous = target.value;
      target.replaceChildren(...values.map((value) => el("option", { text: value })));
      if (values.includes(previous)) target.value = previous;
    }
    for (const field of form.querySelectorAll("[data-gpt]")) {
      field.disabled = !rules.streams;
      field.closest("label").hidden = !rules.streams;
    }
  };
  select.addEventListener("change", apply);
  apply();
}

function renderTable() {
  const body = document.querySelector("#models-table tbody");
  body.replaceChildren(
    ...served.map((model) => {
      const edits = model.limner?.edits;
      const streams = rulesFor(model.id).streams;
      return el(
        "tr",
        {},
        el("th", { scope: "row", text: model.id }),
        el("td", { text: model.limner?.generations ? "yes" : "no" }),
        el("td", { text: edits ? edits.kind : "no" }),
        el("td", { text: edits ? String(edits.max_images ?? "any") : "–" }),
        el("td", { text: edits ? edits.mask : "–" }),
        el("td", { text: streams ? "yes" : "no" }),
      );
    }),
  );
}
