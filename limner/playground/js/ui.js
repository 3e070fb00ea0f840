// Small DOM helpers and the one status line every section reports to.

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) if (child !== null && child !== undefined) node.append(child);
  return node;
}

export function status(message, kind = "") {
  const line = document.getElementById("status");
  line.textContent = message;
  line.className = kind;
  line.setAttribute("role", kind === "error" ? "alert" : "status");
}

// What a person should read for a failed request.
export function describe(error) {
  if (error.code === "moderation_blocked" || error.code === "content_policy_violation") {
    return `Refused by moderation: this request was not generated and not billed. ${error.message}`;
  }
  if (error.status === 429) {
    const after = error.retryAfter;
    const when = after === null ? "later" : `in ${Math.max(1, Math.ceil(after))} s`;
    return `Rate limited (${error.code || "rate_limit_exceeded"}): retry ${when}. ${error.message}`;
  }
  return error.message;
}

export function failed(error) { status(describe(error), "error"); }

export async function busy(button, work) {
  button.disabled = true;
  try { return await work(); } finally { button.disabled = false; }
}

const MEDIA = { png: "image/png", jpeg: "image/jpeg", webp: "image/webp" };

// An answer's base64 image (`format`: png, jpeg, webp) as a URL an <img> shows at once.
export function dataUrl(b64, format) {
  return `data:${MEDIA[format] || "image/png"};base64,${b64}`;
}

// The same image as a Blob, decoded natively rather than byte by byte in JavaScript.
export async function blobOf(url) {
  return (await fetch(url)).blob();
}
