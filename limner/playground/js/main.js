// The playground: tabs, and each section wired to its module.

import { setUpAccount, loadAccount } from "./account.js";
import { setUpChat } from "./chat.js";
import { setUpEdit } from "./edit.js";
import { renderGallery } from "./gallery.js";
import { setUpGenerate } from "./generate.js";
import { runImages } from "./images.js";
import { loadModels } from "./models.js";
import { failed, status } from "./ui.js";
import { keys } from "./api.js";

const tabs = [...document.querySelectorAll("[role=tab]")];

function select(tab) {
  for (const other of tabs) {
    const chosen = other === tab;
    other.setAttribute("aria-selected", String(chosen));
    other.tabIndex = chosen ? 0 : -1;
    document.getElementById(other.getAttribute("aria-controls")).hidden = !chosen;
  }
  tab.focus();
  if (tab.id === "tab-gallery") renderGallery(hooks);
  if (tab.id === "tab-account") loadAccount();
}

for (const tab of tabs) {
  tab.addEventListener("click", () => select(tab));
  tab.addEventListener("keydown", (event) => {
    const index = tabs.indexOf(tab);
    const moves = { ArrowRight: 1, ArrowLeft: -1, Home: -index, End: tabs.length - 1 - index };
    if (event.key in moves) {
      event.preventDefault();
      select(tabs[(index + moves[event.key] + tabs.length) % tabs.length]);
    }
  });
}

// What a result's buttons do, wherever it is shown.
// (A result's Blob is made just after it is shown; a click in between waits for nothing.)
const hooks = {
  edit(record) {
    if (!record.blob) return status("One moment: the image is still being decoded.");
    edit.take(record);
    select(document.getElementById("tab-edit"));
    status("Added to the images to edit.", "ok");
  },
  vary(record) {
    if (!record.blob) return status("One moment: the image is still being decoded.");
    const section = document.getElementById("panel-generate");
    select(document.getElementById("tab-generate"));
    const body = new FormData();
    const params = { model: "dall-e-2", n: 1, size: "1024x1024", response_format: "b64_json" };
    for (const [name, value] of Object.entries(params)) body.append(name, String(value));
    body.append("image", record.blob, "input.png");
    runImages({ path: "/v1/images/variations", body, streaming: false, section, record: { kind: "variation", model: "dall-e-2", prompt: null, params }, hooks }).catch(failed);
  },
};

setUpGenerate(hooks);
const edit = setUpEdit(hooks);
setUpChat();
setUpAccount(() => loadModels().catch(failed));

if (keys.api()) loadModels().catch(failed);
else {
  status("Enter your API key under Account to begin (it stays in this browser).");
  select(document.getElementById("tab-account"));
}
