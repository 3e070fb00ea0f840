// The same request as code: curl and the OpenAI Python SDK. The key is never written into a
// snippet: both read it from OPENAI_API_KEY.

const ENDPOINTS = {
  generation: "/v1/images/generations",
  edit: "/v1/images/edits",
  variation: "/v1/images/variations",
  response: "/v1/responses",
};
const METHODS = {
  generation: "images.generate",
  edit: "images.edit",
  variation: "images.create_variation",
  response: "responses.create",
};
// Sent as JSON; the others are multipart forms with files.
const JSON_KINDS = new Set(["generation", "response"]);

function shellQuote(text) { return `'${String(text).replaceAll("'", "'\\''")}'`; }

export function curlFor(record) {
  const url = `${location.origin}${ENDPOINTS[record.kind]}`;
  const lines = [`curl ${url}`, `  -H "Authorization: Bearer $OPENAI_API_KEY"`];
  if (JSON_KINDS.has(record.kind)) {
    lines.push(`  -H "Content-Type: application/json"`, `  -d ${shellQuote(JSON.stringify(record.params))}`);
  } else {
    for (const [name, value] of Object.entries(record.params)) lines.push(`  -F ${shellQuote(`${name}=${value}`)}`);
    for (let index = 0; index < (record.inputs || 1); index += 1) {
      lines.push(`  -F ${record.kind === "edit" ? "'image[]=@input-" + (index + 1) + ".png'" : "image=@input.png"}`);
    }
    if (record.masked) lines.push("  -F mask=@mask.png");
  }
  return lines.join(" \\\n");
}

function pythonValue(value) {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "boolean") return value ? "True" : "False";
  if (Array.isArray(value)) return `[${value.map(pythonValue).join(", ")}]`;
  if (value && typeof value === "object") {
    return `{${Object.entries(value).map(([key, item]) => `${JSON.stringify(key)}: ${pythonValue(item)}`).join(", ")}}`;
  }
  return String(value);
}

export function pythonFor(record) {
  const args = Object.entries(record.params).map(([name, value]) => `    ${name}=${pythonValue(value)},`);
  if (record.kind === "edit") {
    const files = Array.from({ length: record.inputs || 1 }, (_, index) => `open("input-${index + 1}.png", "rb")`);
    args.unshift(`    image=[${files.join(", ")}],`);
    if (record.masked) args.unshift(`    mask=open("mask.png", "rb"),`);
  } else if (record.kind === "variation") {
    args.unshift(`    image=open("input.png", "rb"),`);
  }
  return [
    "from openai import OpenAI",
    "",
    `client = OpenAI(base_url=${JSON.stringify(location.origin + "/v1")})  # key: OPENAI_API_KEY`,
    `result = client.${METHODS[record.kind]}(`,
    ...args,
    ")",
  ].join("\n");
}
