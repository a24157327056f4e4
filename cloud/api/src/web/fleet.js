// The fleet: every device the signed-in principal may see, filtered, sorted and paged by
// the server (GET /api/v1/devices?q&state&sort&offset&limit), refreshing by itself.

import { $, api, el, row, ago, when, every } from "./lib.js";

const PAGE = 50;
const state = { q: "", online: "", sort: "id", offset: 0 };

export async function showFleet() {
  const view = $("view");
  view.replaceChildren();
  const h = el("h2", "Fleet");
  const form = el("form");
  form.className = "filters";
  form.setAttribute("role", "search");
  const q = labelled("Filter", input("fleet-q", "search", state.q, "device or tenant"));
  const st = labelled("State", select("fleet-state", [["", "all"], ["online", "online"], ["offline", "offline"]], state.online));
  const so = labelled("Sort by", select("fleet-sort", [["id", "device"], ["last_seen", "last seen"], ["pending", "pending verifications"]], state.sort));
  form.append(q, st, so);
  const table = el("table");
  table.id = "devices";
  const thead = el("thead");
  thead.appendChild(row(["Device", "State", "Last seen", "Tenant", "Version", "Last sample", "Running", "Supply", "Return", "Alarm", "Pending"].map((t) => el("th", t))));
  table.append(thead, el("tbody"));
  const pager = el("p");
  pager.className = "pager";
  const prev = el("button", "Previous page");
  prev.type = "button";
  const next = el("button", "Next page");
  next.type = "button";
  const count = el("span");
  count.id = "fleet-count";
  pager.append(prev, count, next);
  view.append(h, form, table, pager);

  const reload = () => load(table, count, prev, next);
  form.addEventListener("submit", (ev) => ev.preventDefault());
  $("fleet-q").addEventListener("input", () => { state.q = $("fleet-q").value; state.offset = 0; reload(); });
  $("fleet-state").addEventListener("change", () => { state.online = $("fleet-state").value; state.offset = 0; reload(); });
  $("fleet-sort").addEventListener("change", () => { state.sort = $("fleet-sort").value; state.offset = 0; reload(); });
  prev.addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); reload(); });
  next.addEventListener("click", () => { state.offset += PAGE; reload(); });
  await reload();
  every("fleet", 5000, reload);
}

let inFlight = 0;
async function load(table, count, prev, next) {
  const ticket = ++inFlight;
  const params = new URLSearchParams({ sort: state.sort, offset: String(state.offset), limit: String(PAGE) });
  if (state.q.trim()) params.set("q", state.q.trim());
  if (state.online) params.set("state", state.online);
  const data = await api("GET", "/devices?" + params.toString());
  if (ticket !== inFlight) return; // a newer query answered first
  const body = table.tBodies[0];
  body.replaceChildren();
  for (const d of data.devices) {
    const v = d.last_values || {};
    const link = el("a", d.id);
    link.href = "#/devices/" + encodeURIComponent(d.id);
    const cells = [
      el("td"),
      el("td", (d.online ? "online" : "offline") + (d.state_since ? " since " + since(d.state_since) : ""), d.online ? "online" : "offline"),
      el("td", ago(d.last_seen)),
      d.tenant || "",
      d.software_version || "",
      el("td", d.last_sample_at ? ago(d.last_sample_at) : "none"),
      live(v.running === undefined ? "" : v.running ? "running" : "stopped"),
      live(temperature(v.supply_c)),
      live(temperature(v.return_c)),
      v.alarm_code ? el("td", "alarm " + v.alarm_code, "alarm") : el("td", v.alarm_code === 0 ? "none" : ""),
      d.pending_verifications ? String(d.pending_verifications) : "",
    ];
    cells[0].appendChild(link);
    cells[2].title = when(d.last_seen);
    const tr = row(cells);
    tr.dataset.id = d.id;
    body.appendChild(tr);
  }
  const first = data.total === 0 ? 0 : data.offset + 1;
  const last = data.offset + data.devices.length;
  count.textContent = ` ${first}–${last} of ${data.total} devices `;
  prev.disabled = data.offset === 0;
  next.disabled = last >= data.total;
}

// A time of today as its clock time, an older one as its date.
function since(ts) {
  const t = new Date(ts);
  return t.toDateString() === new Date().toDateString()
    ? t.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : t.toLocaleDateString();
}

function live(text) {
  return el("td", text);
}

function temperature(v) {
  return typeof v === "number" ? v.toFixed(1) + " °C" : "";
}

export function input(id, type, value, placeholder) {
  const i = el("input");
  i.id = id;
  i.type = type;
  if (value !== undefined && value !== null) i.value = value;
  if (placeholder) i.placeholder = placeholder;
  return i;
}

export function select(id, options, value) {
  const s = el("select");
  s.id = id;
  for (const [v, text] of options) {
    const o = el("option", text);
    o.value = v;
    s.appendChild(o);
  }
  s.value = value;
  return s;
}

// A control with its label beside it (not around it: a label's name would otherwise take
// in the control's own text, such as a list's options). The control needs an id.
export function labelled(text, control) {
  const box = el("div", undefined, "field");
  const l = el("label", text);
  l.htmlFor = control.id;
  box.append(l, control);
  return box;
}
