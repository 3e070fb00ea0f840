// This browser's results, kept in IndexedDB (images as Blobs), newest first.

import { curlFor, pythonFor } from "./snippets.js";
import { el, status } from "./ui.js";

const DATABASE = "limner-playground";
const STORE = "results";

function open() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DATABASE, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE, { keyPath: "id" });
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function run(mode, work) {
  const database = await open();
  return new Promise((resolve, reject) => {
    const transaction = database.transaction(STORE, mode);
    const request = work(transaction.objectStore(STORE));
    transaction.oncomplete = () => resolve(request?.result);
    transaction.onerror = () => reject(transaction.error);
  });
}

export const keep = (record) => run("readwrite", (store) => store.put(record));
export const forget = (id) => run("readwrite", (store) => store.delete(id));
export const all = async () => ((await run("readonly", (store) => store.getAll())) || []).sort((a, b) => b.created - a.created);

let counter = 0;
export function newId() { counter += 1; return `${Date.now()}-${counter}-${Math.random().toString(36).slice(2, 8)}`; }

// What a result says of itself: size, seed, tokens, price.
export function describeRecord(record) {
  const parts = [record.size];
  if (record.seed !== undefined && record.seed !== null) parts.push(`seed ${record.seed}`);
  if (record.usage) parts.push(`${record.usage.input_tokens} in + ${record.usage.output_tokens} out tokens`);
  if (record.cost !== undefined && record.cost !== null) parts.push(`$${record.cost}`);
  return parts.join(" · ");
}

// A result card; its buttons call main.js's edit/vary hooks. `src`: the image as the answer
// brought it (a data: URL), before its Blob exists.
export function card(record, hooks, src = null) {
  const url = src || URL.createObjectURL(record.blob);
  const type = src ? src.slice(5, src.indexOf(";")) : record.blob.type;
  const extension = (type.split("/")[1] || "png").replace("jpeg", "jpg");
  const copy = (what, text) => async () => {
    try {
      await navigator.clipboard.writeText(text);
      status(`${what} copied.`, "ok");
    } catch {
      status(`${what}:\n${text}`);
    }
  };
  return el(
    "article",
    { class: "card", "data-result": record.id },
    el("img", { src: url, alt: record.prompt ? `Result for: ${record.prompt}` : "Result", "data-final": "" }),
    el("p", { class: "meta", text: describeRecord(record) }),
    record.prompt ? el("p", { text: record.revised_prompt || record.prompt }) : null,
    el(
      "div",
      { class: "actions" },
      el("a", { href: url, download: `limner-${record.id}.${extension}`, text: "Download" }),
      el("button", { type: "button", text: "Edit", onclick: () => hooks.edit(record) }),
      el("button", { type: "button", text: "Variations", onclick: () => hooks.vary(record) }),
      el("button", { type: "button", text: "Copy curl", onclick: copy("curl", curlFor(record)) }),
      el("button", { type: "button", text: "Copy Python", onclick: copy("Python", pythonFor(record)) }),
    ),
  );
}

export async function renderGallery(hooks) {
  const gallery = document.getElementById("gallery");
  const records = await all();
  gallery.replaceChildren(
    ...(records.length ? records.map((record) => {
      const shown = card(record, hooks);
      shown.querySelector(".actions").append(
        el("button", { type: "button", text: "Delete", onclick: async () => { await forget(record.id); renderGallery(hooks); } }),
      );
      return shown;
    }) : [el("p", { text: "Nothing yet: what you generate appears here." })]),
  );
}
