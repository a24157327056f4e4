// A device's yearly schedule: the current and next slot with their sync status, and an
// upload whose 422 lists every problem with its location in the document.

import { api, can, el, row, when, say } from "./lib.js";
import { labelled, select } from "./fleet.js";

const PALETTE = ["#cfe3f7", "#f7d9c4", "#d5ecd4", "#e8d5f0", "#f3ecc2", "#d4e9ec", "#f2d0d8", "#e0e0e0"];

export async function showSchedule(box, id) {
  const path = "/devices/" + encodeURIComponent(id) + "/schedule";
  const status = el("table");
  status.id = "schedule-status";
  const now = el("div");
  now.id = "schedule-now";
  const cal = el("div");
  cal.id = "schedule-calendar";
  const problems = el("div");
  problems.id = "schedule-problems";
  problems.setAttribute("role", "status");
  box.append(status, now, cal, problems);
  let calendarOf = null; // the hash of the schedule the calendar shows

  async function load() {
    let view;
    try {
      view = await api("GET", path);
    } catch (e) {
      if (e.status === 404) view = { current: null, next: null };
      else throw e;
    }
    status.replaceChildren();
    const head = el("thead");
    head.appendChild(row(["Slot", "Schedule", "Valid", "Time zone", "Set by", "Sync"].map((t) => el("th", t))));
    const body = el("tbody");
    for (const slot of ["current", "next"]) {
      const s = view[slot];
      if (!s) {
        body.appendChild(row([slot, "none", "", "", "", ""]));
        continue;
      }
      const st = s.status || {};
      const sync = st.state === "acked" ? "acked (hash " + String(st.hash || s.hash).slice(0, 12) + "…, " + when(st.at) + ")"
        : st.state === "failed" ? "failed: " + (st.reason || "")
          : "pending" + (st.attempts ? " (attempt " + st.attempts + ")" : "");
      body.appendChild(row([slot, s.id, s.valid_from + " – " + s.valid_to, s.timezone, s.set_by + ", " + when(s.set_at), el("td", sync, st.state || "")]));
    }
    status.append(head, body);
    renderNow(now, view);
    // The calendar changes only with the current schedule: fetched again only then.
    const hash = view.current ? view.current.hash : null;
    if (hash !== calendarOf) {
      calendarOf = hash;
      if (hash) await renderCalendar(cal, path, view.in_force);
      else cal.replaceChildren();
    }
  }
  await load();

  if (!can("operator")) return load;
  const form = el("form", undefined, "tools");
  form.id = "schedule-upload";
  const file = el("input");
  file.type = "file";
  file.id = "schedule-file";
  file.accept = "application/json,.json";
  const slot = select("schedule-slot", [["current", "current"], ["next", "next"]], "current");
  const upload = el("button", "Upload schedule");
  upload.type = "submit";
  form.append(labelled("Schedule file", file), labelled("Slot", slot), upload);
  box.insertBefore(form, problems);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    problems.replaceChildren();
    const f = file.files && file.files[0];
    if (!f) {
      problems.appendChild(el("p", "Choose a schedule file (JSON) first.", "failed"));
      return;
    }
    const text = await f.text();
    try {
      const res = await api("PUT", path + "?slot=" + slot.value, text, { "Content-Type": "application/json" });
      problems.appendChild(el("p", "Schedule uploaded to the " + res.slot + " slot" + (res.pushed ? " and sent to the device." : "; the device gets it when it is back online."), "verified"));
      for (const w of res.warnings || []) problems.appendChild(el("p", "warning: " + w.path + ": " + w.message, "pending"));
      await load();
    } catch (e) {
      problems.appendChild(el("p", e.message, "failed"));
      const list = el("ul");
      for (const p of (e.details && e.details.problems) || []) {
        list.appendChild(el("li", (p.path || "(document)") + ": " + p.message));
      }
      if (list.childNodes.length) problems.appendChild(list);
      say("", false);
    }
  });
  return load;
}

// What the schedule puts in force now, and today's transitions.
function renderNow(box, view) {
  box.replaceChildren();
  const f = view.in_force;
  if (!f) {
    box.appendChild(el("p", "No schedule covers today.", "hint"));
    return;
  }
  box.appendChild(el("h4", "In force now (" + f.slot + " schedule " + f.schedule_id + ")"));
  const t = el("table");
  t.appendChild(row(["Setting", "Value", "From", "Until"].map((x) => el("th", x))));
  for (const [k, s] of Object.entries(f.settings || {})) {
    const src = s.source || {};
    const from = src.profile ? "profile " + src.profile + (src.time ? " at " + src.time : "") : src.rule ? "rule " + src.rule : src.kind || "defaults";
    t.appendChild(row([k, JSON.stringify(s.value), from, s.next_transition ? when(s.next_transition) : "end of validity"]));
  }
  box.appendChild(t);
  const today = view.today || [];
  box.appendChild(el("h4", "Today's transitions"));
  if (!today.length) {
    box.appendChild(el("p", "None today.", "hint"));
  } else {
    const list = el("ul");
    for (const tr of today) {
      const past = new Date(tr.at) <= new Date(view.now);
      list.appendChild(el("li", tr.local.slice(11, 16) + " " + Object.entries(tr.settings).map(([k, v]) => k + " = " + JSON.stringify(v)).join(", ") + (past ? " (done)" : ""), past ? "hint" : ""));
    }
    box.appendChild(list);
  }
}

// The year at a glance: a month per block, each day coloured by its profile; holidays and
// exceptions marked; today outlined.
async function renderCalendar(box, path, inForce) {
  const data = await api("GET", path + "/calendar?slot=current");
  box.replaceChildren(el("h4", "The year at a glance (" + data.id + ", " + data.timezone + ")"));
  const colours = new Map();
  for (const d of data.days) {
    if (d.profile && !colours.has(d.profile)) colours.set(d.profile, PALETTE[colours.size % PALETTE.length]);
  }
  const legend = el("p", undefined, "legend");
  for (const [profile, colour] of colours) {
    const sw = el("span", profile, "swatch");
    sw.style.background = colour;
    legend.appendChild(sw);
  }
  legend.appendChild(el("span", "holiday", "swatch holiday"));
  legend.appendChild(el("span", "exception", "swatch exception"));
  const grid = el("div", undefined, "months");
  const today = inForce && inForce.at ? new Date(inForce.at).toISOString().slice(0, 10) : "";
  let month = null;
  let body = null;
  for (const d of data.days) {
    const m = d.date.slice(0, 7);
    if (m !== month) {
      month = m;
      const table = el("table", undefined, "month");
      table.appendChild(el("caption", new Date(d.date + "T00:00:00").toLocaleDateString([], { year: "numeric", month: "long" })));
      table.appendChild(row(["Mo", "Tu", "We", "Th", "Fr", "Sa", "Su"].map((x) => el("th", x))));
      body = el("tbody");
      table.appendChild(body);
      grid.appendChild(table);
      const first = (new Date(d.date + "T00:00:00").getDay() + 6) % 7;
      body.appendChild(el("tr"));
      for (let i = 0; i < first; i++) body.lastChild.appendChild(el("td"));
    }
    if (body.lastChild.childNodes.length === 7) body.appendChild(el("tr"));
    const cell = el("td", String(Number(d.date.slice(8))), d.kind === "holiday" || d.kind === "exception" ? d.kind : "");
    cell.style.background = colours.get(d.profile) || "";
    cell.title = d.date + " · " + d.kind + (d.name ? " " + d.name : "") + (d.season ? " · season " + d.season : "") + " · profile " + d.profile;
    if (d.date === today) cell.classList.add("today");
    body.lastChild.appendChild(cell);
  }
  box.append(legend, grid);
}

