// (c) the client.responses.stream(...) helper: its events, then finalResponse().
import { client, MODEL, responseFacts, run } from "./common.mjs";

await run(async () => {
  const stream = client().responses.stream({
    model: MODEL,
    input: "Draw a yellow kite",
    tools: [{ type: "image_generation", quality: "medium", partial_images: 1 }],
  });
  const types = [];
  let textDeltas = "";
  stream.on("event", (event) => types.push(event.type));
  stream.on("response.output_text.delta", (event) => {
    textDeltas += event.delta;
  });
  const final = await stream.finalResponse();
  return { types, text_deltas: textDeltas, final: responseFacts(final) };
});
