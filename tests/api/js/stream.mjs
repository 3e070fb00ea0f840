// (b) create({stream: true}): every event in order, partial images checked here.
import { client, MODEL, pngFacts, responseFacts, run } from "./common.mjs";

await run(async () => {
  const stream = await client().responses.create({
    model: MODEL,
    input: "Draw a blue boat",
    stream: true,
    tools: [{ type: "image_generation", quality: "high", partial_images: 2 }],
  });
  const events = [];
  const partials = [];
  let completed = null;
  for await (const event of stream) {
    events.push({
      type: event.type,
      sequence_number: event.sequence_number,
      output_index: event.output_index ?? null,
      item_type: event.item?.type ?? null,
      item_id: event.item?.id ?? event.item_id ?? null,
      response_id: event.response?.id ?? null,
    });
    if (event.type === "response.image_generation_call.partial_image") {
      partials.push({ index: event.partial_image_index, png: pngFacts(event.partial_image_b64) });
    }
    if (event.type === "response.completed") completed = event.response;
  }
  return {
    events,
    partials,
    completed: completed === null ? null : responseFacts(completed),
  };
});
