// A device's yearly schedule: the current and next slot with their sync status, and an
// upload whose 422 lists every problem with its location in the document.

import { api, can, el, row, when, say } from "./lib.js";
import { labelled, select } from "./fleet.js";

export async function showSchedule(box, id) {
  const path = "/devices/" + encodeURIComponent(id) + "/schedule";
  const status = el("table");
  status.id = "schedule-status";
  const problems = el("div");
  problems.id = "schedule-problems";
  problems.setAttribute("role", "status");
  box.append(status, problems);

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
  }
  await load();

  if (!can("operator")) return;
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
}
