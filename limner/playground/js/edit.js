// Edit: up to 16 input images (chosen, dropped or taken from the gallery), a mask painted on
// the first, the same live previews as a generation.

import { baseParams, followModel, rulesFor } from "./models.js";
import { runImages } from "./images.js";
import { MaskPainter } from "./mask.js";
import { busy, el, failed, status } from "./ui.js";

const MAX_INPUTS = 16;

export function setUpEdit(hooks) {
  const form = document.getElementById("edit-form");
  const section = document.getElementById("panel-edit");
  const list = document.getElementById("edit-inputs");
  const drop = document.getElementById("edit-drop");
  const painter = new MaskPainter(
    document.getElementById("mask-canvas"),
    document.getElementById("mask-size"),
    form.querySelectorAll("input[name=mask-tool]"),
  );
  document.getElementById("mask-undo").addEventListener("click", () => painter.undo());
  document.getElementById("mask-clear").addEventListener("click", () => painter.clear());
  followModel(form);
  const inputs = [];

  const render = () => {
    list.replaceChildren(...inputs.map((input, index) => el(
      "li", {},
      el("img", { src: input.url, alt: `Input ${index + 1}: ${input.name}` }),
      el("button", { type: "button", text: "Remove", "aria-label": `Remove input ${index + 1}`, onclick: () => remove(index) }),
    )));
  };
  const remove = (index) => {
    const [gone] = inputs.splice(index, 1);
    URL.revokeObjectURL(gone.url);
    if (index === 0) painter.setImage(inputs[0]?.blob);
    render();
  };
  const add = (blobs) => {
    const wasEmpty = inputs.length === 0;
    for (const blob of blobs) {
      if (inputs.length >= MAX_INPUTS) { status(`At most ${MAX_INPUTS} images per edit.`, "error"); break; }
      inputs.push({ blob, name: blob.name || "result.png", url: URL.createObjectURL(blob) });
    }
    if (wasEmpty && inputs.length) painter.setImage(inputs[0].blob);
    render();
  };

  document.getElementById("edit-files").addEventListener("change", (changed) => { add([...changed.target.files]); changed.target.value = ""; });
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    add([...event.dataTransfer.files].filter((file) => file.type.startsWith("image/")));
  });

  form.addEventListener("submit", (submitted) => {
    submitted.preventDefault();
    if (!inputs.length) { status("Add at least one image to edit.", "error"); return; }
    const params = baseParams(form);
    const { model } = params;
    const rules = rulesFor(model);
    if (rules.streams) params.input_fidelity = form.elements.input_fidelity.value;
    busy(form.querySelector("button[type=submit]"), async () => {
      const body = new FormData();
      for (const [name, value] of Object.entries(params)) body.append(name, String(value));
      for (const [index, input] of inputs.entries()) body.append(inputs.length > 1 ? "image[]" : "image", input.blob, `input-${index + 1}.png`);
      const mask = await painter.toBlob();
      if (mask) body.append("mask", mask, "mask.png");
      if (rules.streams) {
        body.append("stream", "true");
        body.append("partial_images", form.elements.partial_images.value);
      }
      await runImages({
        path: "/v1/images/edits",
        body,
        streaming: rules.streams,
        section,
        record: { kind: "edit", model, prompt: params.prompt, params, inputs: inputs.length, masked: Boolean(mask) },
        hooks,
      }).catch(failed);
    });
  });

  // The gallery's "Edit": this result becomes an input.
  return { take: (record) => add([record.blob]) };
}
