// The mask painter on the first input image: brush and eraser strokes in image pixels, undo
// and clear; the mask it makes is what the API expects: the image's size, transparent where
// painted (to be edited), opaque elsewhere.

export class MaskPainter {
  constructor(canvas, sizeInput, toolInputs) {
    this.canvas = canvas;
    this.sizeInput = sizeInput;
    this.toolInputs = toolInputs;
    this.strokes = [];
    this.current = null;
    canvas.addEventListener("pointerdown", (event) => this.start(event));
    canvas.addEventListener("pointermove", (event) => this.extend(event));
    for (const name of ["pointerup", "pointercancel", "pointerleave"]) canvas.addEventListener(name, () => this.end());
  }

  // A new first image: the canvas takes its pixel size, earlier strokes go.
  async setImage(blob) {
    this.strokes = [];
    if (!blob) {
      this.canvas.width = this.canvas.height = 1;
      this.canvas.style.backgroundImage = "";
      this.draw();
      return;
    }
    const bitmap = await createImageBitmap(blob);
    this.canvas.width = bitmap.width;
    this.canvas.height = bitmap.height;
    if (this.backgroundUrl) URL.revokeObjectURL(this.backgroundUrl);
    this.backgroundUrl = URL.createObjectURL(blob);
    this.canvas.style.backgroundImage = `url(${this.backgroundUrl})`;
    this.draw();
  }

  get painted() { return this.strokes.some((stroke) => stroke.tool === "brush"); }

  tool() { return [...this.toolInputs].find((input) => input.checked)?.value || "brush"; }

  point(event) {
    const box = this.canvas.getBoundingClientRect();
    return [((event.clientX - box.left) / box.width) * this.canvas.width, ((event.clientY - box.top) / box.height) * this.canvas.height];
  }

  start(event) {
    if (this.canvas.width < 2) return;
    this.canvas.setPointerCapture?.(event.pointerId);
    const scale = this.canvas.width / this.canvas.getBoundingClientRect().width;
    this.current = { tool: this.tool(), size: Number(this.sizeInput.value) * scale, points: [this.point(event)] };
    this.strokes.push(this.current);
    this.draw();
  }

  extend(event) {
    if (!this.current) return;
    this.current.points.push(this.point(event));
    this.draw();
  }

  end() { this.current = null; }

  undo() { this.strokes.pop(); this.draw(); }

  clear() { this.strokes = []; this.draw(); }

  // Strokes onto a context: `paint` for brush strokes, `unpaint` for the eraser's.
  trace(context, paint, unpaint) {
    context.lineCap = context.lineJoin = "round";
    for (const stroke of this.strokes) {
      context.globalCompositeOperation = stroke.tool === "brush" ? paint : unpaint;
      context.strokeStyle = context.fillStyle = "rgba(220, 30, 60, 0.55)";
      context.lineWidth = stroke.size;
      context.beginPath();
      const [first, ...rest] = stroke.points;
      context.moveTo(...first);
      if (rest.length === 0) context.lineTo(first[0] + 0.01, first[1]);
      for (const point of rest) context.lineTo(...point);
      context.stroke();
    }
    context.globalCompositeOperation = "source-over";
  }

  draw() {
    const context = this.canvas.getContext("2d");
    context.clearRect(0, 0, this.canvas.width, this.canvas.height);
    // One layer: brush strokes add tint, eraser strokes remove it.
    const layer = new OffscreenCanvas(this.canvas.width, this.canvas.height);
    const layerContext = layer.getContext("2d");
    this.trace(layerContext, "source-over", "destination-out");
    context.globalAlpha = 1;
    context.drawImage(layer, 0, 0);
  }

  // The mask as a PNG Blob, or null when nothing is painted.
  async toBlob() {
    if (!this.painted) return null;
    const mask = new OffscreenCanvas(this.canvas.width, this.canvas.height);
    const context = mask.getContext("2d");
    context.fillStyle = "#000";
    context.fillRect(0, 0, mask.width, mask.height);
    context.lineCap = context.lineJoin = "round";
    for (const stroke of this.strokes) {
      // Brush: cut to transparent; eraser: opaque again.
      context.globalCompositeOperation = stroke.tool === "brush" ? "destination-out" : "source-over";
      context.strokeStyle = "#000";
      context.lineWidth = stroke.size;
      context.beginPath();
      const [first, ...rest] = stroke.points;
      context.moveTo(...first);
      if (rest.length === 0) context.lineTo(first[0] + 0.01, first[1]);
      for (const point of rest) context.lineTo(...point);
      context.stroke();
    }
    return mask.convertToBlob({ type: "image/png" });
  }
}
