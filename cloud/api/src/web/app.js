// Shiki operator console: plain ES modules, no build step, served by shiki-cloud itself.
// Signs in with an API token (kept in this page's memory only) or, when [auth.oidc] is
// configured, through the company's identity provider (the server holds the tokens behind
// an HttpOnly session cookie). Pages: #/ (fleet), #/devices/{id} (one device), #/jobs and
// #/jobs/{id} (update jobs).

import { $, api, auth, say, stopAll } from "./lib.js";
import { showFleet } from "./fleet.js";
import { showDevice } from "./device.js";
import { showJobs, showJob } from "./jobs.js";

function endSignIn(text) {
  stopAll();
  auth.token = "";
  auth.viaSso = false;
  $("main").hidden = true;
  $("login").hidden = false;
  $("whoami").hidden = true;
  say(text || "", Boolean(text));
}
auth.onSignedOut = endSignIn;

// Sign out: a provider session ends on the server too, then at the provider.
async function signOut() {
  if (auth.viaSso) {
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

// Who the API says we are; shows the console.
async function enter() {
  const me = await api("GET", "/whoami");
  auth.name = me.name;
  auth.role = me.role;
  auth.tenant = me.tenant;
  $("login").hidden = true;
  $("whoami").hidden = false;
  $("signed-in").textContent = "Signed in as " + me.name + " (" + me.role + (me.tenant ? ", " + me.tenant : "") + ")";
  $("main").hidden = false;
  say("");
  await route();
}

async function signInWithToken(t) {
  auth.token = t.trim();
  auth.viaSso = false;
  try {
    await enter();
  } catch (e) {
    if (e.status !== 401) say(e.message, true);
  }
}

async function route() {
  stopAll();
  const hash = window.location.hash || "#/";
  const device = hash.match(/^#\/devices\/([^/]+)$/);
  const job = hash.match(/^#\/jobs\/([^/]+)$/);
  try {
    if (device) await showDevice(decodeURIComponent(device[1]));
    else if (job) await showJob(decodeURIComponent(job[1]));
    else if (hash === "#/jobs") await showJobs();
    else await showFleet();
  } catch (e) {
    if (e.status !== 401) say(e.message, true);
  }
}

// On load: a provider sign-in that failed comes back with ?login_error=…; a live session
// signs straight in; otherwise the form, with the provider's button if offered.
async function start() {
  const params = new URLSearchParams(window.location.search);
  const failed = params.get("login_error");
  if (failed !== null) window.history.replaceState(null, "", "/" + window.location.hash);
  let session = {};
  try {
    session = await (await fetch("/auth/session", { credentials: "same-origin" })).json();
  } catch (e) {
    session = {};
  }
  $("sso").hidden = !session.sso;
  if (session.signed_in) {
    auth.viaSso = true;
    try {
      await enter();
    } catch (e) {
      if (e.status !== 401) say(e.message, true);
    }
  } else if (failed !== null) {
    say("Sign-in failed: " + failed, true);
  }
}

$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  signInWithToken($("token").value);
  $("token").value = "";
});
$("logout").addEventListener("click", () => signOut());
$("sso").addEventListener("click", () => {
  window.location.assign("/auth/login?return_to=" + encodeURIComponent("/" + window.location.hash));
});
window.addEventListener("hashchange", () => {
  if (!$("main").hidden) route();
});

start();
