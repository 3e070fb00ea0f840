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

  // Every stroke onto `context`, composited as `paint` (brush) or `unpaint` (eraser).
  trace(context, color, paint, unpaint) {
    context.lineCap = context.lineJoin = "round";
    context.strokeStyle = color;
    for (const stroke of this.strokes) {
      context.globalCompositeOperation = stroke.tool === "brush" ? paint : unpaint;
      context.lineWidth = stroke.size;
      context.beginPath();
      const [first, ...rest] = stroke.points;
      context.moveTo(...first);
      // A click without a move is a dot.
      if (rest.length === 0) context.lineTo(first[0] + 0.01, first[1]);
      for (const point of rest) context.lineTo(...point);
      context.stroke();
    }
    context.globalCompositeOperation = "source-over";
  }

  // On screen: a tint over the image where painted (the eraser takes tint away).
  draw() {
    const context = this.canvas.getContext("2d");
    context.clearRect(0, 0, this.canvas.width, this.canvas.height);
    this.trace(context, "rgba(220, 30, 60, 0.55)", "source-over", "destination-out");
  }

  // The mask as a PNG Blob, or null when nothing is painted.
  async toBlob() {
    if (!this.painted) return null;
    const mask = new OffscreenCanvas(this.canvas.width, this.canvas.height);
    const context = mask.getContext("2d");
    context.fillStyle = "#000";
    context.fillRect(0, 0, mask.width, mask.height);
    // Brush: cut to transparent; eraser: opaque again.
    this.trace(context, "#000", "destination-out", "source-over");
    return mask.convertToBlob({ type: "image/png" });
  }
}
