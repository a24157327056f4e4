// Shiki operator page: plain JS, no build step. Signs in either through the company's
// identity provider (single sign-on: the server holds the tokens, the browser an HttpOnly
// session cookie) or with an API token the operator enters (kept in this page's memory
// only, never in storage). Every value from the API is inserted as text (never as HTML).
"use strict";

const API = "/api/v1";
const $ = (id) => document.getElementById(id);
let token = "";      // an API token typed in; empty when signed in through the provider
let viaSso = false;  // signed in through the identity provider (cookie session)
let current = null;  // the device view shown

// Every API call: the bearer token, or the session cookie plus the header that proves
// the request comes from this page (the server refuses cookie changes without it).
function authHeaders() {
  return viaSso ? { "X-Shiki-Csrf": "1" } : { "Authorization": "Bearer " + token };
}

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || "HTTP " + status);
    this.status = status;
    this.code = e.code;
    this.details = e;
  }
}

async function api(method, path, body) {
  const headers = { ...authHeaders(), "Accept": "application/json" };
  const init = { method, headers, credentials: "same-origin" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(API + path, init);
  if (res.status === 401) endSignIn(viaSso ? "Your sign-in has ended; sign in again." : "Token refused; sign in again.");
  const type = res.headers.get("Content-Type") || "";
  const data = type.includes("application/json") ? await res.json() : await res.text();
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

function say(text, isError) {
  const m = $("message");
  m.textContent = text;
  m.className = isError ? "error" : "";
  m.hidden = !text;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) tr.appendChild(c instanceof Node ? c : el("td", c));
  return tr;
}

function fmt(v) {
  if (v === undefined || v === null) return "";
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

function when(ts) {
  return ts ? new Date(ts).toLocaleString() : "never";
}

// Back to the sign-in form (nothing sent to the server).
function endSignIn(text) {
  token = "";
  viaSso = false;
  $("main").hidden = true;
  $("login").hidden = false;
  $("whoami").hidden = true;
  say(text || "", Boolean(text));
}

// Sign out: a provider session ends on the server too, then at the provider.
async function signOut() {
  if (viaSso) {
    try {
      const res = await fetch("/auth/logout", { method: "POST", headers: { "X-Shiki-Csrf": "1" }, credentials: "same-origin" });
      const out = await res.json();
      if (out.end_session_url) {
        window.location.assign(out.end_session_url);
        return;
      }
    } catch (e) {
      say("Sign-out failed: " + e.message, true);
      return;
    }
  }
  endSignIn("");
}

async function showSignedIn(who) {
  try {
    await loadDevices();
    $("login").hidden = true;
    $("whoami").hidden = false;
    $("signed-in").textContent = who;
    $("main").hidden = false;
    say("");
  } catch (e) {
    if (e.status !== 401) say(e.message, true);
  }
}

async function signIn(t) {
  token = t.trim();
  viaSso = false;
  await showSignedIn("Signed in with an API token");
}

// On load: a provider sign-in that failed comes back with ?login_error=…; a live
// session signs straight in; otherwise the form, with the provider's button if offered.
async function start() {
  const params = new URLSearchParams(window.location.search);
  const failed = params.get("login_error");
  if (failed !== null) window.history.replaceState(null, "", "/");
  let session = {};
  try {
    session = await (await fetch("/auth/session", { credentials: "same-origin" })).json();
  } catch (e) {
    session = {};
  }
  $("sso").hidden = !session.sso;
  if (session.signed_in) {
    viaSso = true;
    const tenant = session.tenant ? ", " + session.tenant : "";
    await showSignedIn("Signed in as " + session.name + " (" + session.role + tenant + ")");
  } else if (failed !== null) {
    say("Sign-in failed: " + failed, true);
  }
}

async function loadDevices() {
  const data = await api("GET", "/devices");
  const body = $("devices").tBodies[0];
  body.replaceChildren();
  for (const d of data.devices) {
    const tr = row([
      d.id,
      el("td", d.online ? "online" : "offline", d.online ? "online" : "offline"),
      when(d.last_seen),
      d.shadow_version,
      d.pending_verifications,
    ]);
    tr.dataset.id = d.id;
    if (current && current.id === d.id) tr.classList.add("selected");
    tr.addEventListener("click", () => showDevice(d.id).catch((e) => say(e.message, true)));
    body.appendChild(tr);
  }
}

async function showDevice(id) {
  const path = "/devices/" + encodeURIComponent(id);
  const [view, history] = await Promise.all([
    api("GET", path),
    api("GET", path + "/history?limit=200"),
  ]);
  current = view;
  for (const tr of $("devices").tBodies[0].rows) tr.classList.toggle("selected", tr.dataset.id === id);
  $("device").hidden = false;
  $("device-title").textContent = view.id;
  const status = view.status || {};
  $("device-status").textContent =
    (view.online ? "online" : "offline") + " · last seen " + when(view.last_seen) +
    " · desired version " + view.version +
    (view.applied_version !== null && view.applied_version !== undefined ? " (applied " + view.applied_version + ")" : "") +
    (status.software_version ? " · edge " + status.software_version : "");

  const keys = new Set([...Object.keys(view.desired), ...Object.keys(view.reported)]);
  const meta = (view.metadata && view.metadata.desired) || {};
  const settings = view.settings || {};
  const shadow = $("shadow").tBodies[0];
  shadow.replaceChildren();
  for (const k of [...keys].sort()) {
    const inDelta = Object.prototype.hasOwnProperty.call(view.delta, k);
    shadow.appendChild(row([
      k,
      fmt(view.desired[k]),
      fmt(view.reported[k]),
      el("td", inDelta ? fmt(view.delta[k]) : "", inDelta ? "delta" : ""),
      settings[k] ? settings[k].source + (settings[k].detail ? " (" + settings[k].detail + ")" : "") : "",
      meta[k] && meta[k].until ? when(meta[k].until) : "",
    ]));
  }

  const select = $("change-key");
  select.replaceChildren();
  const points = (view.catalog && view.catalog.points) || [];
  for (const p of points.filter((p) => p.writable)) {
    const o = el("option", p.name + (p.unit ? " [" + p.unit + "]" : ""));
    o.value = p.name;
    select.appendChild(o);
  }
  $("change").hidden = points.length === 0;
  updateHint();

  const hist = $("history").tBodies[0];
  hist.replaceChildren();
  for (const h of history.history) {
    const v = h.verification;
    hist.appendChild(row([
      when(h.ts),
      h.side,
      h.key,
      fmt(h.old),
      fmt(h.new),
      h.version,
      h.actor.name + (h.actor.role ? " (" + h.actor.role + ")" : " (" + h.actor.kind + ")"),
      h.comment || "",
      el("td", v ? v.outcome + (v.reason ? ": " + v.reason : "") : "", v ? v.outcome : ""),
    ]));
  }
}

function currentPoint() {
  const points = (current && current.catalog && current.catalog.points) || [];
  return points.find((p) => p.name === $("change-key").value);
}

function updateHint() {
  const p = currentPoint();
  let hint = "";
  if (p && p.kind === "number") {
    hint = [p.min !== undefined ? "min " + p.min : "", p.max !== undefined ? "max " + p.max : "", p.resolution ? "step " + p.resolution : ""].filter(Boolean).join(", ");
  } else if (p && p.kind === "enum") {
    hint = "one of " + p.options.join(", ");
  } else if (p && p.kind === "bool") {
    hint = "true or false";
  }
  $("change-hint").textContent = hint;
}

function parseValue(p, raw) {
  if (!p) return raw;
  if (p.kind === "number") {
    const n = Number(raw);
    if (raw.trim() === "" || Number.isNaN(n)) throw new Error(p.name + " needs a number");
    return n;
  }
  if (p.kind === "bool") {
    if (raw === "true" || raw === "false") return raw === "true";
    throw new Error(p.name + " needs true or false");
  }
  return raw;
}

async function sendChange(value) {
  const p = currentPoint();
  if (!current || !p) return;
  const body = { settings: { [p.name]: value }, expected_version: current.version };
  const until = $("change-until").value;
  if (until) body.until = new Date(until).toISOString();
  const comment = $("change-comment").value.trim();
  if (comment) body.comment = comment;
  try {
    const out = await api("PATCH", "/devices/" + encodeURIComponent(current.id) + "/desired", body);
    say("Applied: " + p.name + " → " + fmt(value) + " (version " + out.version + "); verification pending.");
    $("change-comment").value = "";
  } catch (e) {
    if (e.code === "version_conflict") {
      say("Someone changed this device meanwhile (now version " + e.details.current_version + "). Reloaded; check and try again.", true);
    } else if (e.code === "forbidden") {
      say("You may only read; changing settings needs the operator role.", true);
    } else {
      say(e.message, true);
    }
  }
  await Promise.all([showDevice(current.id), loadDevices()]).catch((e) => say(e.message, true));
}

async function exportCsv() {
  if (!current) return;
  const res = await fetch(API + "/devices/" + encodeURIComponent(current.id) + "/history?format=csv", {
    headers: authHeaders(),
    credentials: "same-origin",
  });
  if (!res.ok) {
    say("Export failed: HTTP " + res.status, true);
    return;
  }
  const url = URL.createObjectURL(await res.blob());
  const a = el("a");
  a.href = url;
  a.download = current.id + "-history.csv";
  document.body.appendChild(a);
  a.click();
  a.remove();
  URL.revokeObjectURL(url);
}

$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  signIn($("token").value);
  $("token").value = "";
});
$("logout").addEventListener("click", () => signOut());
$("sso").addEventListener("click", () => {
  window.location.assign("/auth/login");
});
$("refresh").addEventListener("click", () => loadDevices().catch((e) => say(e.message, true)));
$("change-key").addEventListener("change", updateHint);
$("change").addEventListener("submit", (ev) => {
  ev.preventDefault();
  let value;
  try {
    value = parseValue(currentPoint(), $("change-value").value);
  } catch (e) {
    say(e.message, true);
    return;
  }
  sendChange(value);
});
$("change-clear").addEventListener("click", () => sendChange(null));
$("csv").addEventListener("click", () => exportCsv().catch((e) => say(e.message, true)));

start();
