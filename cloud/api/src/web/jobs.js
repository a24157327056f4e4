// OTA update jobs: the list (newest first), a form to start one (operators), and one job
// with each device's progress, refreshing by itself.

import { $, api, can, el, row, when, every, say } from "./lib.js";
import { labelled, input, select } from "./fleet.js";

export async function showJobs() {
  const view = $("view");
  view.replaceChildren(el("h2", "Update jobs"));
  if (can("operator")) view.appendChild(await createForm());
  const table = el("table");
  table.id = "jobs";
  const head = el("thead");
  head.appendChild(row(["Job", "Version", "Created", "By", "Devices", "Succeeded", "Failed", "In progress"].map((t) => el("th", t))));
  table.append(head, el("tbody"));
  view.appendChild(table);
  const load = async () => {
    const data = await api("GET", "/jobs");
    const body = table.tBodies[0];
    body.replaceChildren();
    for (const j of data.jobs) {
      const link = el("a", j.id);
      link.href = "#/jobs/" + encodeURIComponent(j.id);
      const cell = el("td");
      cell.appendChild(link);
      const count = (s) => j.devices.filter((d) => s.includes(d.status)).length;
      body.appendChild(row([cell, j.artifact_version, when(j.created_at), j.created_by.name, j.devices.length,
        count(["succeeded"]), count(["failed", "rolled_back", "timed_out", "canceled"]), count(["queued", "in_progress"])]));
    }
    if (!data.jobs.length) body.appendChild(row(["No jobs yet", "", "", "", "", "", "", ""]));
  };
  await load();
  every("jobs", 5000, load);
}

async function createForm() {
  const form = el("form", undefined, "tools");
  form.id = "new-job";
  const { artifacts } = await api("GET", "/artifacts");
  const version = select("job-version", artifacts.map((a) => [a.version, a.version + " (" + Math.round(a.size / 1024) + " KiB)"]), artifacts.length ? artifacts[0].version : "");
  const devices = input("job-devices", "text", "", "plant-01, plant-02");
  devices.size = 40;
  const limit = input("job-max", "text", "", "default");
  limit.size = 6;
  const start = el("button", "Start update");
  start.type = "submit";
  const out = el("output", "", "outcome");
  form.append(labelled("Version", version), labelled("Devices (comma-separated ids)", devices), labelled("Most at once", limit), start, out);
  if (!artifacts.length) {
    start.disabled = true;
    out.textContent = "No artifact uploaded yet (shiki-cloud ota sign, then PUT /api/v1/artifacts/{version}).";
  }
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = {
      artifact_version: version.value,
      devices: devices.value.split(",").map((d) => d.trim()).filter(Boolean),
    };
    if (limit.value.trim()) body.max_in_progress = Number(limit.value);
    try {
      const created = await api("POST", "/jobs", body);
      window.location.hash = "#/jobs/" + encodeURIComponent(created.id);
    } catch (e) {
      out.textContent = e.message;
      out.className = "outcome failed";
    }
  });
  return form;
}

export async function showJob(id) {
  const view = $("view");
  const back = el("a", "← Update jobs");
  back.href = "#/jobs";
  const title = el("h2", "Job " + id);
  const summary = el("p");
  const table = el("table");
  table.id = "job-devices";
  const head = el("thead");
  head.appendChild(row(["Device", "Status", "Step", "Progress", "Started", "Finished", "Reason"].map((t) => el("th", t))));
  table.append(head, el("tbody"));
  const cancel = el("button", "Cancel job");
  cancel.type = "button";
  cancel.hidden = !can("operator");
  cancel.addEventListener("click", async () => {
    try {
      await api("POST", "/jobs/" + encodeURIComponent(id) + "/cancel");
      await load();
    } catch (e) {
      say(e.message, true);
    }
  });
  view.replaceChildren(back, title, summary, cancel, table);
  const load = async () => {
    const j = await api("GET", "/jobs/" + encodeURIComponent(id));
    summary.textContent = "Version " + j.artifact_version + " · created " + when(j.created_at) + " by " + j.created_by.name +
      " · at most " + j.max_in_progress + " at once · stops at " + Math.round(j.abort_failure_ratio * 100) + " % failures" +
      (j.canceled_by ? " · canceled by " + j.canceled_by.name : "");
    const body = table.tBodies[0];
    body.replaceChildren();
    for (const d of j.devices) {
      const bar = el("progress");
      bar.max = 100;
      bar.value = d.progress;
      bar.textContent = d.progress + " %";
      const cell = el("td");
      cell.append(bar, document.createTextNode(" " + d.progress + " %"));
      const link = el("a", d.device);
      link.href = "#/devices/" + encodeURIComponent(d.device);
      const devCell = el("td");
      devCell.appendChild(link);
      body.appendChild(row([devCell, el("td", d.status, d.status), d.step || "", cell, d.started_at ? when(d.started_at) : "", d.finished_at ? when(d.finished_at) : "", d.reason || ""]));
    }
    cancel.disabled = j.devices.every((d) => !["queued", "in_progress"].includes(d.status));
  };
  await load();
  every("job", 3000, load);
}
