// Shared by the scripts here: the client, PNG facts, and printing one JSON object.
// Usage of every script: node <script>.mjs [BASE_URL [API_KEY]]
// (or LIMNER_BASE_URL / LIMNER_API_KEY in the environment; BASE_URL ends in /v1).
import OpenAI from "openai";

export const MODEL = "gpt-4.1";

export function client() {
  const baseURL = process.argv[2] ?? process.env.LIMNER_BASE_URL;
  const apiKey = process.argv[3] ?? process.env.LIMNER_API_KEY;
  if (!baseURL || !apiKey) {
    throw new Error("usage: node <script>.mjs BASE_URL API_KEY (or LIMNER_BASE_URL, LIMNER_API_KEY)");
  }
  return new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 120_000 });
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

// What a base64 string decodes to: a PNG's size from its IHDR chunk, or why it is not one.
export function pngFacts(b64) {
  if (typeof b64 !== "string" || b64.length === 0) return { png: false, reason: `not a string: ${typeof b64}` };
  if (b64.startsWith("data:")) return { png: false, reason: "a data URL, not bare base64" };
  const bytes = Buffer.from(b64, "base64");
  if (bytes.toString("base64") !== b64) return { png: false, reason: "not canonical base64" };
  if (bytes.length < 24 || !bytes.subarray(0, 8).equals(PNG_SIGNATURE)) {
    return { png: false, reason: "no PNG signature" };
  }
  if (bytes.subarray(12, 16).toString("latin1") !== "IHDR") return { png: false, reason: "no IHDR first" };
  return { png: true, width: bytes.readUInt32BE(16), height: bytes.readUInt32BE(20), bytes: bytes.length };
}

// The facts of a finished Response the tests assert on; `result` keeps each call's base64.
export function responseFacts(response) {
  const calls = response.output.filter((item) => item.type === "image_generation_call");
  return {
    id: response.id,
    object: response.object,
    status: response.status,
    model: response.model,
    previous_response_id: response.previous_response_id ?? null,
    output_types: response.output.map((item) => item.type),
    output_ids: response.output.map((item) => item.id),
    // The SDK's computed property (create and the stream helper add it; raw events do not).
    output_text: response.output_text ?? null,
    calls: calls.map((call) => ({
      id: call.id,
      status: call.status,
      action: call.action ?? null,
      revised_prompt: call.revised_prompt ?? null,
      png: pngFacts(call.result),
      result: call.result,
    })),
    message_text: response.output
      .filter((item) => item.type === "message")
      .flatMap((item) => item.content.map((part) => part.text ?? null)),
    usage: response.usage ?? null,
  };
}

// Runs `main`, prints its result as one JSON line; a thrown error is printed as
// {"error": ...} with exit status 1, so the Python side can show what the SDK raised.
export async function run(main) {
  try {
    process.stdout.write(JSON.stringify(await main()) + "\n");
  } catch (error) {
    process.stdout.write(
      JSON.stringify({
        error: {
          name: error?.constructor?.name ?? typeof error,
          message: String(error?.message ?? error),
          status: error?.status ?? null,
          body: error?.error ?? null,
          stack: error?.stack ?? null,
        },
      }) + "\n",
    );
    process.exitCode = 1;
  }
}
