// Talking to this server: the key from the browser's storage in the Authorization header
// (never in a URL), errors as OpenAI's envelope, streams read from fetch (EventSource can
// neither POST nor send headers).

const KEY = "limner.apiKey";
const ADMIN_KEY = "limner.adminKey";

export const keys = {
  api: () => localStorage.getItem(KEY) || "",
  admin: () => localStorage.getItem(ADMIN_KEY) || "",
  save(api, admin) {
    for (const [name, value] of [[KEY, api], [ADMIN_KEY, admin]]) {
      if (value) localStorage.setItem(name, value); else localStorage.removeItem(name);
    }
  },
};

export class ApiError extends Error {
  constructor(status, error, headers) {
    super(error?.message || `HTTP ${status}`);
    this.status = status;
    this.code = error?.code || null;
    this.type = error?.type || null;
    this.param = error?.param || null;
    this.headers = headers || new Headers();
  }

  // Seconds until a retry may succeed, from retry-after or the rate-limit reset headers.
  get retryAfter() {
    const after = this.headers.get("retry-after");
    if (after && !Number.isNaN(Number(after))) return Number(after);
    for (const name of ["x-ratelimit-reset-images", "x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"]) {
      const seconds = parseDuration(this.headers.get(name));
      if (seconds !== null) return seconds;
    }
    return null;
  }
}

// "1s", "6m0s", "20ms", "1h2m3.5s" -> seconds.
export function parseDuration(text) {
  if (!text) return null;
  let seconds = 0;
  let matched = false;
  for (const [, amount, unit] of text.matchAll(/([\d.]+)(ms|h|m|s)/g)) {
    matched = true;
    seconds += Number(amount) * { ms: 0.001, s: 1, m: 60, h: 3600 }[unit];
  }
  return matched ? seconds : null;
}

const listeners = new Set();
// Every answer's headers go to these (the rate-limit line in the header listens).
export function onHeaders(listener) { listeners.add(listener); }

async function send(path, { method = "GET", json, form, admin = false } = {}) {
  const key = admin ? keys.admin() : keys.api();
  if (!key) throw new ApiError(401, { message: admin ? "Enter an admin key under Account first." : "Enter your API key under Account first.", code: "no_key" });
  const headers = { authorization: `Bearer ${key}` };
  let body;
  if (json !== undefined) { headers["content-type"] = "application/json"; body = JSON.stringify(json); }
  if (form !== undefined) body = form;
  const response = await fetch(path, { method, headers, body });
  for (const listener of listeners) listener(response.headers);
  if (!response.ok) {
    let error = null;
    try { error = (await response.json()).error; } catch { /* not JSON */ }
    throw new ApiError(response.status, error, response.headers);
  }
  return response;
}

export async function call(path, options) {
  const response = await send(path, options);
  return { data: await response.json(), headers: response.headers };
}

// Yields each server-sent event's parsed data (with `type`); an `error` event throws.
export async function* stream(path, options) {
  const response = await send(path, { method: "POST", ...options });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    // A final image is megabytes in one event: look for its end only in what just came.
    let from = Math.max(0, buffered.length - 1);
    buffered += value;
    let end;
    while ((end = buffered.indexOf("\n\n", from)) >= 0) {
      const block = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      from = 0;
      const data = block.split("\n").filter((line) => line.startsWith("data:")).map((line) => line.slice(5).trim()).join("\n");
      if (!data || data === "[DONE]") continue;
      const event = JSON.parse(data);
      if (event.error) throw new ApiError(500, event.error, response.headers);
      if (event.type === "error") throw new ApiError(500, event, response.headers);
      yield { event, headers: response.headers };
    }
  }
}
