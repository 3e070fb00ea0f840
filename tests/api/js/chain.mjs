// (d) two turns chained with previous_response_id: the second edits the first's image.
import { client, MODEL, responseFacts, run } from "./common.mjs";

await run(async () => {
  const sdk = client();
  const tools = [{ type: "image_generation", quality: "low" }];
  const first = await sdk.responses.create({ model: MODEL, input: "Draw a red apple", tools });
  const second = await sdk.responses.create({
    model: MODEL,
    previous_response_id: first.id,
    input: "Now make it green",
    tools,
  });
  const retrieved = await sdk.responses.retrieve(second.id);
  const inputItems = [];
  for await (const item of sdk.responses.inputItems.list(second.id, { order: "asc" })) {
    inputItems.push({ type: item.type, role: item.role ?? null, id: item.id });
  }
  return {
    first: responseFacts(first),
    second: responseFacts(second),
    retrieved: { id: retrieved.id, status: retrieved.status, output_types: retrieved.output.map((i) => i.type) },
    input_items: inputItems,
  };
});
