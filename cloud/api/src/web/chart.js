// A device's telemetry as an SVG chart: several points on one time axis, the server's
// min/avg/max per bucket (GET …/telemetry/series, no more buckets than pixels), settings
// changes marked. SVG: sharp at any size and when printed.

import { api, el, when, every } from "./lib.js";
import { labelled } from "./fleet.js";

const SVG = "http://www.w3.org/2000/svg";
const COLOURS = ["#1f5fbf", "#c0392b", "#17803a", "#8e44ad", "#b36200", "#2c3e50"];
const RANGES = [["Last hour", 3600], ["Last 24 hours", 86400], ["Last 7 days", 7 * 86400]];
const W = 960;
const H = 320;
const PAD = { left: 56, right: 16, top: 12, bottom: 36 };

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

export async function showChart(box, device) {
  const numeric = ((device.catalog && device.catalog.points) || []).filter((p) => p.kind === "number");
  const preferred = numeric.filter((p) => /supply|return|setpoint/.test(p.name)).map((p) => p.name);
  const chosen = new Set(preferred.length ? preferred : numeric.slice(0, 3).map((p) => p.name));
  let range = { seconds: 3600, from: null, to: null };

  const controls = el("div", undefined, "tools");
  for (const [text, seconds] of RANGES) {
    const b = el("button", text);
    b.type = "button";
    b.addEventListener("click", () => { range = { seconds, from: null, to: null }; draw(); });
    controls.appendChild(b);
  }
  const from = el("input");
  from.type = "datetime-local";
  from.id = "chart-from";
  const to = el("input");
  to.type = "datetime-local";
  to.id = "chart-to";
  const custom = el("button", "Show range");
  custom.type = "button";
  custom.addEventListener("click", () => {
    if (from.value && to.value) {
      range = { seconds: null, from: new Date(from.value), to: new Date(to.value) };
      draw();
    }
  });
  controls.append(labelled("From", from), labelled("To", to), custom);
  // A list, not checkboxes: the point ids label the settings form's inputs alone.
  const picks = el("select");
  picks.id = "chart-points";
  picks.multiple = true;
  picks.size = Math.min(6, Math.max(2, numeric.length));
  for (const p of numeric) {
    const o = el("option", p.name + (p.unit ? " (" + p.unit + ")" : ""));
    o.value = p.name;
    o.selected = chosen.has(p.name);
    picks.appendChild(o);
  }
  picks.addEventListener("change", () => {
    chosen.clear();
    for (const o of picks.selectedOptions) chosen.add(o.value);
    draw();
  });
  controls.appendChild(labelled("Chart points", picks));
  const figure = el("figure");
  const caption = el("figcaption");
  figure.id = "chart-figure";
  box.append(controls, figure, caption);

  async function draw() {
    const end = range.to || new Date();
    const start = range.from || new Date(end.getTime() - range.seconds * 1000);
    const names = [...chosen];
    if (!names.length) {
      figure.replaceChildren(el("p", "Choose a point to chart."));
      return;
    }
    const buckets = Math.max(10, Math.floor((W - PAD.left - PAD.right) / 3));
    const q = new URLSearchParams({ from: start.toISOString(), to: end.toISOString(), buckets: String(buckets), points: names.join(",") });
    const base = "/devices/" + encodeURIComponent(device.id);
    const [data, hist] = await Promise.all([
      api("GET", base + "/telemetry/series?" + q.toString()),
      api("GET", base + "/history?limit=1000&from=" + encodeURIComponent(start.toISOString()) + "&to=" + encodeURIComponent(end.toISOString())),
    ]);
    figure.replaceChildren(render(data, start, end, names, hist.history.filter((h) => h.side === "desired")));
    caption.textContent = when(start) + " – " + when(end) + " · " + data.samples + " samples, " +
      (data.bucket_seconds >= 1 ? Math.round(data.bucket_seconds) + " s" : data.bucket_seconds + " s") + " per point (min–max band, average line)" +
      (data.truncated ? " · range truncated: choose a shorter one" : "");
  }
  await draw();
  // A range ending now moves on by itself.
  every("chart", 15000, () => (range.seconds ? draw() : Promise.resolve()));
}

function render(data, start, end, names, changes) {
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Telemetry chart", class: "chart" });
  const t0 = start.getTime();
  const t1 = end.getTime();
  let lo = Infinity;
  let hi = -Infinity;
  for (const n of names) {
    for (const b of data.series[n] || []) {
      lo = Math.min(lo, b.min);
      hi = Math.max(hi, b.max);
    }
  }
  if (!Number.isFinite(lo)) {
    root.appendChild(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "No samples in this range"));
    return root;
  }
  if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
  const margin = (hi - lo) * 0.05;
  lo -= margin;
  hi += margin;
  const x = (t) => PAD.left + ((t - t0) / (t1 - t0)) * (W - PAD.left - PAD.right);
  const y = (v) => PAD.top + (1 - (v - lo) / (hi - lo)) * (H - PAD.top - PAD.bottom);

  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    root.appendChild(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: "grid" }));
    root.appendChild(svg("text", { x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" }, v.toFixed(1)));
  }
  for (let i = 0; i <= 4; i++) {
    const t = t0 + ((t1 - t0) * i) / 4;
    const label = (t1 - t0) > 2 * 86400 * 1000 ? new Date(t).toLocaleDateString() : new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    root.appendChild(svg("text", { x: x(t), y: H - 12, "text-anchor": "middle", class: "axis" }, label));
  }
  names.forEach((n, i) => {
    const colour = COLOURS[i % COLOURS.length];
    const buckets = data.series[n] || [];
    const mid = (b) => new Date(b.t).getTime() + (data.bucket_seconds * 1000) / 2;
    if (buckets.length > 1) {
      const band = buckets.map((b) => `${x(mid(b))},${y(b.max)}`).concat([...buckets].reverse().map((b) => `${x(mid(b))},${y(b.min)}`));
      root.appendChild(svg("polygon", { points: band.join(" "), fill: colour, "fill-opacity": 0.15, stroke: "none" }));
    }
    const line = svg("polyline", { points: buckets.map((b) => `${x(mid(b))},${y(b.avg)}`).join(" "), fill: "none", stroke: colour, "stroke-width": 2, "data-point": n });
    line.appendChild(svg("title", {}, n));
    root.appendChild(line);
    // Few buckets (a new device, a gap): dots, so a lone sample is seen too.
    if (buckets.length < 60) {
      for (const b of buckets) {
        const dot = svg("circle", { cx: x(mid(b)), cy: y(b.avg), r: 3, fill: colour });
        dot.appendChild(svg("title", {}, `${n}: ${b.avg.toFixed(2)} (${b.n} samples, ${when(b.t)})`));
        root.appendChild(dot);
      }
    }
    root.appendChild(svg("rect", { x: PAD.left + 8 + i * 180, y: PAD.top + 2, width: 12, height: 12, fill: colour }));
    root.appendChild(svg("text", { x: PAD.left + 24 + i * 180, y: PAD.top + 12, class: "legend" }, n));
  });
  for (const c of changes) {
    const t = new Date(c.ts).getTime();
    if (t < t0 || t > t1) continue;
    const mark = svg("line", { x1: x(t), x2: x(t), y1: PAD.top, y2: H - PAD.bottom, class: "change" });
    mark.appendChild(svg("title", {}, `${c.key} → ${JSON.stringify(c.new)} by ${c.actor.name} (${when(c.ts)})`));
    root.appendChild(mark);
  }
  return root;
}
