// Generate: the form becomes a generations request, streamed where the model streams.

import { baseParams, followModel, rulesFor } from "./models.js";
import { runImages } from "./images.js";
import { busy, failed } from "./ui.js";

export function generationParams(form) {
  const seedText = form.elements.seed.value;
  // The playground picks the seed when none is given, so every result can say its own.
  const seed = seedText === "" ? Math.floor(Math.random() * 2 ** 31) : Number(seedText);
  const params = { ...baseParams(form), seed };
  if (rulesFor(params.model).streams) {
    params.background = form.elements.background.value;
    params.output_format = form.elements.output_format.value;
    if (params.output_format !== "png") params.output_compression = Number(form.elements.output_compression.value);
    params.moderation = form.elements.moderation.value;
  }
  return params;
}

export function setUpGenerate(hooks) {
  const form = document.getElementById("generate-form");
  const section = document.getElementById("panel-generate");
  followModel(form);
  form.addEventListener("submit", (submitted) => {
    submitted.preventDefault();
    const params = generationParams(form);
    const partials = Number(form.elements.partial_images.value);
    const streaming = rulesFor(params.model).streams;
    const body = streaming ? { ...params, stream: true, partial_images: partials } : params;
    busy(form.querySelector("button[type=submit]"), () =>
      runImages({
        path: "/v1/images/generations",
        body,
        streaming,
        section,
        record: { kind: "generation", model: params.model, prompt: params.prompt, seed: params.seed, params },
        hooks,
      }).catch(failed),
    );
  });
}
