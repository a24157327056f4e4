// One device: live state, settings with a form per writable point (the server's 422 shown
// beside the field, the change's verification followed until it ends), a chart, history,
// the yearly schedule and the newest events.

import { $, api, auth, can, el, row, fmt, when, ago, every, say, download } from "./lib.js";
import { showChart } from "./chart.js";
import { showSchedule } from "./schedule.js";
import { labelled } from "./fleet.js";

let device = null; // the device view shown

export async function showDevice(id) {
  const view = $("view");
  view.replaceChildren();
  const path = "/devices/" + encodeURIComponent(id);
  device = await api("GET", path);

  const back = el("a", "← Fleet");
  back.href = "#/";
  const title = el("h2", device.id);
  title.id = "device-title";
  const status = el("p");
  status.id = "device-status";
  const live = section("Live", "live");
  const liveTable = el("table");
  liveTable.id = "readings";
  live.appendChild(liveTable);
  const settings = section("Settings", "settings");
  const shadow = el("table");
  shadow.id = "shadow";
  const head = el("thead");
  head.appendChild(row(["Point", "Desired", "Reported", "Unit", "Limits", "Source", "Verification"].map((t) => el("th", t))));
  shadow.append(head, el("tbody"));
  settings.appendChild(shadow);
  const forms = el("div");
  forms.id = "change-forms";
  settings.appendChild(forms);
  const chart = section("Chart", "chart");
  const history = section("History", "history-section");
  const schedule = section("Schedule", "schedule");
  const events = section("Events", "events");
  view.append(back, title, status, live, settings, chart, history, schedule, events);

  renderState();
  renderForms(forms);
  const [, , , reloadSchedule] = await Promise.all([
    loadHistory(history),
    loadEvents(events),
    showChart(chart, device),
    showSchedule(schedule, device.id),
  ]);
  every("device", 3000, async () => {
    device = await api("GET", path);
    renderState();
  });
  // History, events and the schedule's sync status (pending → acked) every 10 s.
  every("device-slow", 10000, () => Promise.all([loadHistory(history), loadEvents(events), reloadSchedule()]));
}

function section(text, id) {
  const s = el("section");
  s.id = id;
  s.appendChild(el("h3", text));
  return s;
}

function points() {
  return (device.catalog && device.catalog.points) || [];
}

// A number shown with the decimals its point's resolution has (0.1 → one decimal).
function atResolution(p, v) {
  if (typeof v !== "number" || !p.resolution) return fmt(v);
  const decimals = Math.max(0, Math.min(6, Math.ceil(-Math.log10(p.resolution) - 1e-9)));
  return v.toFixed(decimals);
}

function limits(p) {
  if (p.kind === "number") {
    return [p.min !== undefined ? "min " + p.min : "", p.max !== undefined ? "max " + p.max : "", p.resolution ? "step " + p.resolution : ""].filter(Boolean).join(", ");
  }
  if (p.kind === "enum") return "one of " + (p.options || []).join(", ");
  if (p.kind === "bool") return "true or false";
  return "";
}

function source(key) {
  const s = (device.settings || {})[key];
  const meta = ((device.metadata && device.metadata.desired) || {})[key];
  if (!s) return "";
  let text = s.source;
  if (s.source === "override" && meta && meta.until) text += " until " + when(meta.until);
  if (s.detail) text += " (" + s.detail + ")";
  return text;
}

function verificationOf(key) {
  const pending = (device.pending_verifications || []).find((v) => v.key === key);
  if (pending) return ["pending (attempt " + (pending.attempts || 0) + ")", "pending"];
  const last = device.last_verification;
  if (last && last.key === key) {
    return [last.outcome + (last.reason ? ": " + last.reason : ""), last.outcome];
  }
  return ["", ""];
}

// The parts that change by themselves: status line, readings, the settings table.
function renderState() {
  const s = device.status || {};
  $("device-status").replaceChildren(
    el("span", device.online ? "online" : "offline", device.online ? "online" : "offline"),
    document.createTextNode(
      " · last seen " + ago(device.last_seen) +
      " · desired version " + device.version +
      (device.applied_version !== null && device.applied_version !== undefined ? " (applied " + device.applied_version + ")" : "") +
      (s.software_version ? " · edge " + s.software_version : "")),
  );

  const sample = device.last_telemetry;
  const readings = $("readings");
  readings.replaceChildren();
  const rhead = el("thead");
  rhead.appendChild(row(["Reading", "Value", "Unit"].map((t) => el("th", t))));
  const rbody = el("tbody");
  for (const p of points().filter((p) => p.role !== "setting")) {
    const v = sample && sample.values ? sample.values[p.name] : undefined;
    const tr = row([p.name, atResolution(p, v), p.unit || ""]);
    if (p.name === "alarm" || p.name.startsWith("alarm_")) tr.className = v ? "alarm" : "";
    rbody.appendChild(tr);
  }
  readings.append(rhead, rbody);
  const cap = el("caption", sample ? "Sample " + sample.seq + ", " + ago(sample.ts) : "No sample yet");
  readings.prepend(cap);

  const body = $("shadow").tBodies[0];
  body.replaceChildren();
  const settingPoints = points().filter((p) => p.role === "setting" || p.writable);
  const keys = new Set([...settingPoints.map((p) => p.name), ...Object.keys(device.desired), ...Object.keys(device.reported)]);
  for (const k of [...keys].sort()) {
    const p = settingPoints.find((p) => p.name === k) || {};
    const inDelta = Object.prototype.hasOwnProperty.call(device.delta, k);
    const [vtext, vclass] = verificationOf(k);
    const tr = row([
      k,
      el("td", atResolution(p, device.desired[k]), inDelta ? "delta" : ""),
      atResolution(p, device.reported[k]),
      p.unit || "",
      limits(p),
      source(k),
      el("td", vtext, vclass),
    ]);
    tr.dataset.key = k;
    body.appendChild(tr);
  }
}

// One form with an input per writable point (labelled with the point id), one "Until" and
// one "Comment" for the change, and one "Apply": the points whose value was edited go in
// one desired change. Built once per visit, so the live refresh never clears what someone
// is typing. Each point's outcome (the server's 422 verbatim, then pending → verified /
// failed) is shown beside its field.
function renderForms(box) {
  box.replaceChildren();
  if (!can("operator")) {
    box.appendChild(el("p", "Signed in as " + auth.role + ": changing settings needs the operator role.", "hint"));
    return;
  }
  const writable = points().filter((p) => p.writable);
  if (!writable.length) return;
  const form = el("form", undefined, "change");
  form.id = "change";
  form.noValidate = true; // the server checks limits and answers with the reason
  form.appendChild(el("h4", "Change settings"));
  const table = el("table");
  const head = el("thead");
  head.appendChild(row(["Point", "New value", "Limits", "Outcome", ""].map((t) => el("th", t))));
  const body = el("tbody");
  const fields = [];
  for (const p of writable) {
    const id = "set-" + p.name;
    let control;
    if (p.kind === "bool" || p.kind === "enum") {
      control = el("select");
      const options = p.kind === "bool" ? ["true", "false"] : (p.options || []);
      for (const v of options) {
        const o = el("option", v);
        o.value = v;
        control.appendChild(o);
      }
    } else {
      control = el("input");
      control.type = "text";
      control.inputMode = p.kind === "number" ? "decimal" : "text";
      control.autocomplete = "off";
      control.size = 8;
    }
    control.id = id;
    const current = device.desired[p.name] ?? device.reported[p.name];
    control.value = current === undefined || current === null ? "" : String(current);
    control.dataset.initial = control.value;
    const label = el("label", p.name + (p.unit ? " (" + p.unit + ")" : ""));
    label.htmlFor = id;
    const outcome = el("output", "", "outcome");
    outcome.id = id + "-outcome";
    outcome.htmlFor = id;
    label.id = id + "-label";
    const clear = el("button", "Clear override");
    clear.type = "button";
    clear.setAttribute("aria-describedby", label.id);
    clear.addEventListener("click", () => send([[p, null, control, outcome]], "", "", ""));
    const labelCell = el("td");
    labelCell.appendChild(label);
    const inputCell = el("td");
    inputCell.appendChild(control);
    const outcomeCell = el("td");
    outcomeCell.appendChild(outcome);
    const clearCell = el("td");
    clearCell.appendChild(clear);
    const tr = row([labelCell, inputCell, el("td", limits(p), "hint"), outcomeCell, clearCell]);
    tr.dataset.key = p.name;
    body.appendChild(tr);
    fields.push([p, control, outcome]);
  }
  table.append(head, body);
  const until = el("input");
  until.type = "datetime-local";
  until.id = "change-until";
  const comment = el("input");
  comment.id = "change-comment";
  comment.maxLength = 1000;
  const apply = el("button", "Apply");
  apply.type = "submit";
  const general = el("output", "", "outcome");
  general.id = "change-outcome";
  const tools = el("div", undefined, "tools");
  tools.append(labelled("Until (optional)", until), labelled("Comment", comment), apply, general);
  form.append(table, tools);
  box.appendChild(form);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    general.textContent = "";
    const changes = [];
    for (const [p, control, outcome] of fields) {
      if (control.value === control.dataset.initial) continue;
      try {
        changes.push([p, parseValue(p, control.value), control, outcome]);
      } catch (e) {
        outcome.textContent = e.message;
        outcome.className = "outcome failed";
        return;
      }
    }
    if (!changes.length) {
      general.textContent = "Nothing to apply: change a value first.";
      return;
    }
    send(changes, until.value, comment.value, general);
  });
}

function parseValue(p, raw) {
  if (p.kind === "number") {
    const n = Number(raw.trim().replace(",", "."));
    if (raw.trim() === "" || Number.isNaN(n)) throw new Error(p.name + " needs a number");
    return n;
  }
  if (p.kind === "bool") return raw === "true";
  return raw;
}

// changes: [point, value (null clears), control, outcome]; one desired change for all.
async function send(changes, until, comment, general) {
  const body = { settings: {} };
  for (const [p, value] of changes) body.settings[p.name] = value;
  if (until) body.until = new Date(until).toISOString();
  if (comment) body.comment = comment;
  for (const [, , , outcome] of changes) {
    outcome.textContent = "sending…";
    outcome.className = "outcome pending";
  }
  let version;
  try {
    version = (await api("PATCH", "/devices/" + encodeURIComponent(device.id) + "/desired", body)).version;
  } catch (e) {
    // The server's reason, verbatim, beside the field it names (else beside each).
    for (const [p, , , outcome] of changes) {
      const mine = !e.details || !e.details.key || e.details.key === p.name;
      outcome.textContent = mine ? e.message : "not sent";
      outcome.className = "outcome " + (mine ? "failed" : "");
    }
    return;
  }
  for (const [p, value, control, outcome] of changes) {
    if (value === null) {
      outcome.textContent = "override cleared (version " + version + ")";
      outcome.className = "outcome";
      continue;
    }
    control.dataset.initial = control.value;
    outcome.textContent = "pending: waiting for the PLC (version " + version + ")";
    follow(p.name, version, outcome);
  }
}

// Follows a change's verification through history until it ends (pending → verified /
// failed with the reason), without reloading the page.
async function follow(key, version, outcome) {
  const id = device.id;
  const deadline = Date.now() + 10 * 60 * 1000;
  while (Date.now() < deadline && device && device.id === id) {
    try {
      const h = await api("GET", "/devices/" + encodeURIComponent(id) + "/history?limit=200");
      const entry = h.history.find((e) => e.side === "desired" && e.key === key && e.version === version);
      const v = entry && entry.verification;
      if (v && v.outcome !== "pending") {
        outcome.textContent = v.outcome === "verified" ? "verified" : v.outcome + (v.reason ? ": " + v.reason : "");
        outcome.className = "outcome " + v.outcome;
        const hist = $("history-section");
        if (hist) await loadHistory(hist);
        return;
      }
      if (v) outcome.textContent = "pending: attempt " + (v.attempts || 0) + " (version " + version + ")";
    } catch (e) {
      outcome.textContent = e.message;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

let historyFilter = "";
async function loadHistory(box) {
  const data = await api("GET", "/devices/" + encodeURIComponent(device.id) + "/history?limit=500");
  let table = box.querySelector("table");
  if (!table) {
    const tools = el("div", undefined, "tools");
    const filter = el("input");
    filter.id = "history-filter";
    filter.type = "search";
    filter.value = historyFilter;
    filter.addEventListener("input", () => { historyFilter = filter.value; loadHistory(box); });
    const csv = el("button", "Export CSV");
    csv.type = "button";
    csv.addEventListener("click", () => download("/devices/" + encodeURIComponent(device.id) + "/history?format=csv", device.id + "-history.csv").catch((e) => say(e.message, true)));
    tools.append(labelled("Filter history", filter), csv);
    table = el("table");
    table.id = "history";
    const head = el("thead");
    head.appendChild(row(["Time", "Side", "Setting", "Old", "New", "Version", "Who", "Comment", "Verification"].map((t) => el("th", t))));
    table.append(head, el("tbody"));
    box.append(tools, table);
  }
  const body = table.tBodies[0];
  body.replaceChildren();
  const needle = historyFilter.trim().toLowerCase();
  const entries = [...data.history].sort((a, b) => (a.ts < b.ts ? 1 : a.ts > b.ts ? -1 : b.version - a.version)); // newest first
  for (const h of entries) {
    const who = h.actor.name + (h.actor.role ? " (" + h.actor.role + ")" : " (" + h.actor.kind + ")");
    const v = h.verification;
    const cells = [when(h.ts), h.side, h.key, fmt(h.old), fmt(h.new), h.version, who, h.comment || ""];
    if (needle && !cells.join(" ").toLowerCase().includes(needle)) continue;
    cells.push(el("td", v ? v.outcome + (v.reason ? ": " + v.reason : "") : "", v ? v.outcome : ""));
    body.appendChild(row(cells));
  }
}

async function loadEvents(box) {
  const data = await api("GET", "/devices/" + encodeURIComponent(device.id) + "/events?order=newest_first&limit=20");
  let table = box.querySelector("table");
  if (!table) {
    table = el("table");
    table.id = "events-table";
    const head = el("thead");
    head.appendChild(row(["Time", "Kind", "Severity", "Message"].map((t) => el("th", t))));
    table.append(head, el("tbody"));
    box.appendChild(table);
  }
  const body = table.tBodies[0];
  body.replaceChildren();
  for (const e of data.events) {
    body.appendChild(row([when(e.ts), e.kind, el("td", e.severity, e.severity), e.message]));
  }
  if (!data.events.length) body.appendChild(row(["No events yet", "", "", ""]));
}
