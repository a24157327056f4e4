// Shared by the console's modules: the API client (bearer token or session cookie), the
// signed-in principal, and small DOM helpers. Every value from the API is inserted as text
// (never as HTML).

export const API = "/api/v1";
export const $ = (id) => document.getElementById(id);

// Who is signed in: an API token typed in (kept in this page's memory only, never in
// storage) or a session at the identity provider (the server holds its tokens; the
// browser an HttpOnly cookie).
export const auth = {
  token: "",
  viaSso: false,
  name: "",
  role: "viewer",
  tenant: null,
  onSignedOut: null,
};

const RANK = { viewer: 0, operator: 1, admin: 2 };
export function can(role) {
  return (RANK[auth.role] ?? -1) >= RANK[role];
}

export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || "HTTP " + status);
    this.status = status;
    this.code = e.code;
    this.details = e;
  }
}

// The bearer token, or the header that proves a cookie request comes from this page
// (the server refuses cookie changes without it).
export function authHeaders() {
  return auth.viaSso ? { "X-Shiki-Csrf": "1" } : { "Authorization": "Bearer " + auth.token };
}

export async function api(method, path, body, extraHeaders) {
  const headers = { ...authHeaders(), "Accept": "application/json", ...(extraHeaders || {}) };
  const init = { method, headers, credentials: "same-origin" };
  if (body !== undefined) {
    if (typeof body === "string") {
      init.body = body;
    } else {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
  }
  const res = await fetch(API + path, init);
  if (res.status === 401 && auth.onSignedOut) {
    auth.onSignedOut(auth.viaSso ? "Your sign-in has ended; sign in again." : "Token refused; sign in again.");
  }
  const type = res.headers.get("Content-Type") || "";
  const data = type.includes("application/json") ? await res.json() : await res.text();
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

// Downloads a CSV route as a file.
export async function download(path, filename) {
  const res = await fetch(API + path, { headers: authHeaders(), credentials: "same-origin" });
  if (!res.ok) throw new Error("Export failed: HTTP " + res.status);
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  URL.revokeObjectURL(url);
}

export function say(text, isError) {
  const m = $("message");
  m.textContent = text;
  m.className = isError ? "error" : "";
  m.hidden = !text;
}

export function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

export function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) tr.appendChild(c instanceof Node ? c : el("td", c));
  return tr;
}

export function fmt(v) {
  if (v === undefined || v === null) return "";
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

export function when(ts) {
  return ts ? new Date(ts).toLocaleString() : "never";
}

// "5 min ago" style, for live columns.
export function ago(ts) {
  if (!ts) return "never";
  const s = Math.max(0, Math.round((Date.now() - new Date(ts).getTime()) / 1000));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}

// A repeating refresh that stops when its page is left (at most one per name).
const timers = new Map();
export function every(name, ms, fn) {
  stop(name);
  timers.set(name, setInterval(() => fn().catch(() => {}), ms));
}
export function stop(name) {
  if (timers.has(name)) clearInterval(timers.get(name));
  timers.delete(name);
}
export function stopAll() {
  for (const name of [...timers.keys()]) stop(name);
}
