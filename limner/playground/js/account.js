// Account: the keys (kept in this browser), the rate-limit line, and with an admin key the
// organization's verification and tier and its usage and cost per day.

import { call, keys, onHeaders } from "./api.js";
import { usageChart } from "./chart.js";
import { el, failed, status } from "./ui.js";

const DAY = 86400;

export function setUpAccount(onKeys) {
  const form = document.getElementById("key-form");
  form.elements["api-key"].value = keys.api();
  form.elements["admin-key"].value = keys.admin();
  form.addEventListener("submit", (submitted) => {
    submitted.preventDefault();
    keys.save(form.elements["api-key"].value.trim(), form.elements["admin-key"].value.trim());
    status("Keys saved in this browser.", "ok");
    onKeys();
  });
  document.getElementById("forget-keys").addEventListener("click", () => {
    keys.save("", "");
    form.reset();
    status("Keys forgotten.", "ok");
  });
  onHeaders(showLimits);
}

function showLimits(headers) {
  const parts = [];
  for (const [measure, noun] of [["requests", "requests"], ["images", "images"], ["tokens", "tokens"]]) {
    const left = headers.get(`x-ratelimit-remaining-${measure}`);
    const limit = headers.get(`x-ratelimit-limit-${measure}`);
    if (left !== null && limit !== null) parts.push(`${noun} left: ${left} of ${limit}`);
  }
  if (parts.length) document.getElementById("limits").textContent = parts.join(" · ");
}

export async function loadAccount() {
  if (!keys.admin()) return;
  try {
    const { data: organization } = await call("/v1/limner/organization", { admin: true });
    document.getElementById("organization").replaceChildren(
      el("h2", { text: organization.name }),
      el("p", { text: `${organization.verified ? "Verified" : "Not verified"} · usage tier ${organization.tier}` }),
    );
    const start = Math.floor(Date.now() / 1000 / DAY) * DAY - 29 * DAY;
    const [usage, costs] = await Promise.all([
      call(`/v1/organization/usage/images?start_time=${start}&bucket_width=1d&limit=30`, { admin: true }),
      call(`/v1/organization/costs?start_time=${start}&bucket_width=1d&limit=30`, { admin: true }),
    ]);
    const days = new Map();
    for (const bucket of usage.data.data) {
      const label = new Date(bucket.start_time * 1000).toISOString().slice(0, 10);
      days.set(label, { label, images: bucket.results.reduce((sum, result) => sum + result.images, 0), cost: 0 });
    }
    for (const bucket of costs.data.data) {
      const label = new Date(bucket.start_time * 1000).toISOString().slice(0, 10);
      const day = days.get(label) || { label, images: 0, cost: 0 };
      day.cost += bucket.results.reduce((sum, result) => sum + Number(result.amount.value), 0);
      days.set(label, day);
    }
    const ordered = [...days.values()].sort((a, b) => a.label.localeCompare(b.label));
    document.getElementById("usage-chart").replaceChildren(usageChart(ordered));
    document.getElementById("usage-figure").hidden = false;
  } catch (error) {
    failed(error);
  }
}
