// A bar chart as SVG (no library): one bar per day, its label and value in text for screen
// readers and the eye alike.

const NS = "http://www.w3.org/2000/svg";

function node(tag, attributes, text) {
  const made = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attributes)) made.setAttribute(name, value);
  if (text !== undefined) made.textContent = text;
  return made;
}

// days: [{label, images, cost}]
export function usageChart(days) {
  const width = 720, height = 240, left = 48, bottom = 36, top = 12;
  const most = Math.max(...days.map((day) => day.cost), 0.000001);
  const step = (width - left) / Math.max(days.length, 1);
  const svg = node("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "Cost per day" });
  svg.append(node("title", {}, "Cost per day"));
  svg.append(node("text", { x: 0, y: top + 8 }, `$${most.toFixed(4)}`));
  svg.append(node("line", { x1: left, y1: height - bottom, x2: width, y2: height - bottom, stroke: "#4a505a" }));
  days.forEach((day, index) => {
    const barHeight = ((height - bottom - top) * day.cost) / most;
    const x = left + index * step + step * 0.15;
    const bar = node("rect", { class: "bar", x, y: height - bottom - barHeight, width: step * 0.7, height: barHeight, "data-day": day.label });
    bar.append(node("title", {}, `${day.label}: ${day.images} images, $${day.cost.toFixed(4)}`));
    svg.append(bar);
    if (days.length <= 10 || index % Math.ceil(days.length / 10) === 0) {
      svg.append(node("text", { x: x, y: height - bottom + 14 }, day.label.slice(5)));
    }
  });
  return svg;
}
