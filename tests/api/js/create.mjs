// (a) client.responses.create with the image_generation tool: one JSON object of facts.
import { client, MODEL, responseFacts, run } from "./common.mjs";

await run(async () => {
  const response = await client().responses.create({
    model: MODEL,
    input: "Draw a small red fox",
    tools: [{ type: "image_generation", quality: "low" }],
  });
  return responseFacts(response);
});
