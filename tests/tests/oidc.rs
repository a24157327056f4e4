//! Single sign-on against a real OpenID Connect provider (issue #18): node-oidc-provider,
//! started by the test, issues access tokens to scripts and signs people in through the
//! web page's Authorization Code + PKCE flow, driven here without a browser. The cloud is
//! the real `shiki-cloud serve` with `[auth.oidc]` pointing at it.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, COOKIE};
use serde_json::{Value, json};
use shiki_e2e::idp::{Idp, sign_in};
use shiki_e2e::probe::{Credentials, MqttProbe};
use shiki_e2e::stack::ADMIN_TOKEN;
use shiki_e2e::{Cloud, temp_dir, wait_for};

const AUDIENCE: &str = "shiki-api";
const RESOURCE: &str = "https://shiki.test/api";
const CATALOG_EXAMPLE: &str = include_str!("../../proto/examples/catalog.json");
const STATUS_EXAMPLE: &str = include_str!("../../proto/examples/status-online.json");

fn idp_config() -> Value {
    json!({
        "port": 0,
        "audience": AUDIENCE,
        "resource": RESOURCE,
        "clients": script_clients(),
        "accounts": {
            "alice": { "groups": ["shiki-operators"], "tenant": "acme" },
            "olga":  { "groups": ["shiki-viewers", "shiki-admins"] },
            "bob":   { "groups": ["marketing"] }
        },
        "machines": {
            "ops-script":    { "groups": ["shiki-operators"] },
            "acme-script":   { "groups": ["shiki-viewers"], "tenant": "acme" },
            "nobody-script": { "groups": ["marketing"] }
        }
    })
}

fn script_clients() -> Value {
    let client = |id: &str| {
        json!({ "client_id": id, "client_secret": format!("{id}-secret"),
                "grant_types": ["client_credentials"], "response_types": [], "redirect_uris": [] })
    };
    json!([
        client("ops-script"),
        client("acme-script"),
        client("nobody-script")
    ])
}

/// `[auth.oidc]` for `issuer`; the web client `shiki-web` with a secret.
fn cloud_config(issuer: &str) -> String {
    format!(
        r#"
[auth]
# These tests present a dozen refused tokens from one address on purpose; the lockout
# after repeated bad tokens has its own test (hostile_api.rs).
max_failed_attempts = 100

[auth.oidc]
issuer = "{issuer}"
audience = "{AUDIENCE}"
roles_claim = "groups"
tenant_claim = "tenant"
leeway = "5s"
# Every unknown kid refetches at once (the rotation below); the rate limit has its own test.
jwks_min_refetch = "0s"
client_id = "shiki-web"
client_secret = "shiki-web-secret"
scopes = ["openid", "profile", "email", "groups", "tenant"]

[auth.oidc.role_map]
shiki-viewers = "viewer"
shiki-operators = "operator"
shiki-admins = "admin"
"#
    )
}

struct Setup {
    _dir: tempfile::TempDir,
    idp: Idp,
    cloud: Cloud,
    http: reqwest::Client,
    /// The devices' MQTT connections (kept open: the devices are online).
    _devices: Vec<MqttProbe>,
}

impl Setup {
    async fn start(test: &str) -> anyhow::Result<Self> {
        let dir = temp_dir(test)?;
        let idp = Idp::start("idp", dir.path(), dir.path(), &idp_config()).await?;
        let config = dir.path().join("cloud.toml");
        std::fs::write(&config, cloud_config(&idp.issuer))?;
        let cloud = Cloud::start(
            "cloud",
            &dir.path().join("data"),
            dir.path(),
            Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
            Some(&config),
        )
        .await?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?;
        let mut s = Setup {
            _dir: dir,
            idp,
            cloud,
            http,
            _devices: Vec::new(),
        };
        // Two customers' devices, registered and online.
        for (id, tenant) in [("acme-1", "acme"), ("zenith-1", "zenith")] {
            let password = s.register(id, Some(tenant)).await?;
            let port = s.cloud.mqtt.map(|a| a.port()).unwrap_or_default();
            let device = MqttProbe::connect_plain(
                id,
                port,
                Credentials::Password {
                    user: id,
                    password: &password,
                },
            )
            .await?;
            device
                .publish(&format!("shiki/v1/{id}/catalog"), CATALOG_EXAMPLE.into())
                .await?;
            device
                .publish(&format!("shiki/v1/{id}/status"), STATUS_EXAMPLE.into())
                .await?;
            s._devices.push(device);
            let api = s.cloud.api.clone();
            wait_for(&format!("{id} known"), Duration::from_secs(20), || {
                let api = api.clone();
                async move { api.device(id).await.map(|_| ()) }
            })
            .await?;
        }
        Ok(s)
    }

    /// Registers the web page's client at the provider, now that the cloud's callback URL
    /// is known.
    async fn register_web_client(&self) -> anyhow::Result<()> {
        let api = self.cloud.api.addr;
        let mut clients = script_clients();
        clients.as_array_mut().expect("array").push(json!({
            "client_id": "shiki-web", "client_secret": "shiki-web-secret",
            "redirect_uris": [format!("http://{api}/auth/callback")],
            "post_logout_redirect_uris": [format!("http://{api}/")],
            "grant_types": ["authorization_code"], "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic"
        }));
        self.idp.set_clients(clients).await
    }

    /// `GET /auth/session` as the browser holding `cookie` asks it.
    async fn session(&self, cookie: &str) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(self.url("/auth/session"))
            .header(COOKIE, cookie)
            .send()
            .await?
            .json()
            .await?)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.cloud.api.addr)
    }

    /// Registers a device; its MQTT password.
    async fn register(&self, id: &str, tenant: Option<&str>) -> anyhow::Result<String> {
        let res = self
            .http
            .post(self.url("/api/v1/devices"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "id": id, "tenant": tenant }))
            .send()
            .await?;
        anyhow::ensure!(
            res.status().as_u16() == 201,
            "register {id}: {}",
            res.status()
        );
        let body: Value = res.json().await?;
        Ok(body["mqtt_password"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// GET with `Authorization: Bearer token`: status and JSON body.
    async fn get(&self, path: &str, token: &str) -> anyhow::Result<(u16, Value)> {
        let res = self
            .http
            .get(self.url(path))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .send()
            .await?;
        Ok((
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        ))
    }

    /// The reason a bearer token is refused (asserting 401 and the error code).
    async fn refusal(&self, token: &str) -> anyhow::Result<String> {
        let (status, body) = self.get("/api/v1/devices", token).await?;
        anyhow::ensure!(status == 401, "expected 401, got {status}: {body}");
        assert_eq!(body["error"]["code"], "invalid_token", "{body}");
        Ok(body["error"]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    async fn device_ids(&self, auth: Auth<'_>) -> anyhow::Result<Vec<String>> {
        let res = auth
            .apply(self.http.get(self.url("/api/v1/devices")))
            .send()
            .await?;
        anyhow::ensure!(res.status().is_success(), "list devices: {}", res.status());
        let body: Value = res.json().await?;
        Ok(body["devices"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }
}

#[derive(Clone, Copy)]
enum Auth<'a> {
    Bearer(&'a str),
    Cookie(&'a str),
}

impl Auth<'_> {
    fn apply(self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Auth::Bearer(t) => req.header(AUTHORIZATION, format!("Bearer {t}")),
            Auth::Cookie(c) => req.header(COOKIE, c),
        }
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_access_tokens_are_verified_and_every_bad_token_is_refused_with_its_reason()
-> anyhow::Result<()> {
    let s = Setup::start("oidc-bearer").await?;
    let idp = &s.idp;

    // A script's real access token: operator, staff (no tenant) → every device.
    let ops = idp
        .client_token("ops-script", "ops-script-secret", RESOURCE)
        .await?;
    let mut ids = s.device_ids(Auth::Bearer(&ops)).await?;
    ids.sort();
    assert_eq!(ids, ["acme-1", "zenith-1"]);
    // Operator, not admin: tokens are an admin's business.
    let (status, body) = s.get("/api/v1/tokens", &ops).await?;
    assert_eq!(status, 403, "{body}");

    // A tenant's token sees its tenant's devices only; another's device is 404.
    let acme = idp
        .client_token("acme-script", "acme-script-secret", RESOURCE)
        .await?;
    assert_eq!(s.device_ids(Auth::Bearer(&acme)).await?, ["acme-1"]);
    assert_eq!(s.get("/api/v1/devices/zenith-1", &acme).await?.0, 404);
    assert_eq!(s.get("/api/v1/devices/acme-1", &acme).await?.0, 200);

    // Verified, but in no mapped group: 403 saying what to fix.
    let nobody = idp
        .client_token("nobody-script", "nobody-script-secret", RESOURCE)
        .await?;
    let (status, body) = s.get("/api/v1/devices", &nobody).await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("no_role")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("role_map")
    );

    // Tokens signed with the provider's real key but wrong in one claim each.
    let good = |over: Value| {
        let mut c = json!({ "iss": idp.issuer, "aud": AUDIENCE, "sub": "mallory",
                            "groups": ["shiki-admins"], "iat": now(), "exp": now() + 300 });
        for (k, v) in over.as_object().expect("object") {
            c[k] = v.clone();
        }
        c
    };
    let minted = idp.mint(good(json!({})), json!({}), false).await?;
    assert_eq!(
        s.get("/api/v1/devices", &minted).await?.0,
        200,
        "the control token works"
    );
    let cases = [
        (
            good(json!({"exp": now() - 600})),
            json!({}),
            false,
            "expired",
        ),
        (
            good(json!({"nbf": now() + 600})),
            json!({}),
            false,
            "not_yet_valid",
        ),
        (
            good(json!({"aud": "someone-else"})),
            json!({}),
            false,
            "wrong_audience",
        ),
        (
            good(json!({"iss": "https://evil.example"})),
            json!({}),
            false,
            "wrong_issuer",
        ),
        (good(json!({})), json!({}), true, "bad_signature"),
        (
            good(json!({})),
            json!({"kid": "no-such-key"}),
            false,
            "unknown_kid",
        ),
    ];
    for (claims, header, forged, reason) in cases {
        let token = idp.mint(claims, header, forged).await?;
        assert_eq!(s.refusal(&token).await?, reason);
    }
    // `alg: none`, and HS256 keyed with the provider's public key (the classic confusion).
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let claims = good(json!({}));
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims)
    );
    assert_eq!(s.refusal(&none).await?, "alg_none");
    let jwks: Value = reqwest::get(format!("{}/jwks", idp.issuer))
        .await?
        .json()
        .await?;
    let public = jwks["keys"][0].to_string();
    let hs = {
        use hmac::{KeyInit, Mac};
        let input = format!(
            "{}.{}",
            b64(&json!({"alg": "HS256", "typ": "JWT", "kid": jwks["keys"][0]["kid"]})),
            b64(&claims)
        );
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(public.as_bytes())?;
        mac.update(input.as_bytes());
        let sig = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            mac.finalize().into_bytes(),
        );
        format!("{input}.{sig}")
    };
    assert_eq!(s.refusal(&hs).await?, "hmac_not_accepted");
    // A 401 says WWW-Authenticate with the reason too.
    let res = s
        .http
        .get(s.url("/api/v1/devices"))
        .bearer_auth(&none)
        .send()
        .await?;
    let www = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap_or("").to_owned());
    assert!(www.is_some_and(|w| w.contains("alg_none")));

    // Key rotation: the provider signs with a new kid; the cloud fetches it on first sight,
    // without a restart. The old key stays published, so the old token still works.
    let kid = idp.rotate_key().await?;
    let rotated = idp
        .client_token("ops-script", "ops-script-secret", RESOURCE)
        .await?;
    assert!(
        rotated.split('.').next().is_some_and(|h| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .is_some_and(|v| v["kid"] == kid.as_str())
        }),
        "the provider signs with the new key"
    );
    assert_eq!(s.device_ids(Auth::Bearer(&rotated)).await?.len(), 2);
    assert_eq!(s.device_ids(Auth::Bearer(&ops)).await?.len(), 2);
    assert!(
        s.cloud
            .child
            .output()
            .matches("identity provider keys fetched")
            .count()
            >= 2,
        "the rotation made the cloud fetch the keys again"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_page_signs_in_with_code_and_pkce_and_signs_out() -> anyhow::Result<()> {
    let s = Setup::start("oidc-web").await?;
    let api = s.cloud.api.addr;
    s.register_web_client().await?;

    // The page learns that single sign-on is offered.
    let session: Value = s
        .http
        .get(s.url("/auth/session"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        (session["sso"].as_bool(), session["signed_in"].as_bool()),
        (Some(true), Some(false))
    );

    // Alice (operator of tenant acme) signs in.
    let alice = sign_in(api, "alice", |u| u).await?;
    assert_eq!(alice.landed, "/", "{:?}", alice.jar.seen);
    let line = alice
        .jar
        .set_cookie_line("shiki_session")
        .expect("a session cookie");
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(line.contains(attribute), "{attribute} missing from {line}");
    }
    // The browser holds no token, only the session id.
    let sid = alice.jar.get("shiki_session").expect("session id");
    assert_eq!(sid.len(), 43);
    let cookie = format!("shiki_session={sid}");

    let who = s.session(&cookie).await?;
    assert_eq!(who["signed_in"], true);
    assert_eq!(who["name"], "alice");
    assert_eq!(who["role"], "operator");
    assert_eq!(who["tenant"], "acme");
    // Her session sees her tenant's devices only.
    assert_eq!(s.device_ids(Auth::Cookie(&cookie)).await?, ["acme-1"]);
    let res = s
        .http
        .get(s.url("/api/v1/devices/zenith-1"))
        .header(COOKIE, &cookie)
        .send()
        .await?;
    assert_eq!(res.status().as_u16(), 404);

    // A change by cookie needs the CSRF header; with it, history names her.
    let patch = |csrf: bool| {
        let mut req = s
            .http
            .patch(s.url("/api/v1/devices/acme-1/desired"))
            .header(COOKIE, &cookie)
            .json(&json!({ "settings": { "chw_setpoint_c": 8.5 }, "comment": "by SSO" }));
        if csrf {
            req = req.header("X-Shiki-Csrf", "1");
        }
        req.send()
    };
    let res = patch(false).await?;
    assert_eq!(res.status().as_u16(), 403);
    let body: Value = res.json().await?;
    assert_eq!(body["error"]["code"], "csrf_header_missing");
    let res = patch(true).await?;
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "{body}");
    // History is written behind the change: wait for the entry.
    let entry = wait_for("the change in history", Duration::from_secs(20), || {
        let req = s
            .http
            .get(s.url("/api/v1/devices/acme-1/history"))
            .header(COOKIE, &cookie);
        async move {
            let history: Value = req.send().await.ok()?.json().await.ok()?;
            history["history"]
                .as_array()?
                .iter()
                .find(|e| e["comment"] == "by SSO")
                .cloned()
        }
    })
    .await?;
    assert_eq!(
        (
            &entry["actor"]["kind"],
            &entry["actor"]["name"],
            &entry["actor"]["role"]
        ),
        (&json!("user"), &json!("alice"), &json!("operator")),
        "{entry}"
    );

    // Sign out: the session ends here, and the provider's end-session URL is handed over.
    let res = s
        .http
        .post(s.url("/auth/logout"))
        .header(COOKIE, &cookie)
        .header("X-Shiki-Csrf", "1")
        .send()
        .await?;
    let cleared = res.headers().get_all("set-cookie").iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.starts_with("shiki_session=;") || v.contains("Max-Age=0"))
    });
    let out: Value = res.json().await?;
    assert_eq!(out["signed_out"], true);
    assert!(cleared, "the cookie is cleared");
    let end = out["end_session_url"].as_str().unwrap_or_default();
    assert!(
        end.starts_with(&format!("{}/session/end?", s.idp.issuer)),
        "{end}"
    );
    assert!(
        end.contains("id_token_hint=") && end.contains("post_logout_redirect_uri="),
        "{end}"
    );
    let res = s
        .http
        .get(s.url("/api/v1/devices"))
        .header(COOKIE, &cookie)
        .send()
        .await?;
    assert_eq!(res.status().as_u16(), 401);
    let body: Value = res.json().await?;
    assert_eq!(body["error"]["code"], "session_ended");

    // Someone in no mapped group comes back with the reason, and no session.
    let bob = sign_in(api, "bob", |u| u).await?;
    assert!(bob.landed.starts_with("/?login_error="), "{}", bob.landed);
    assert!(bob.landed.contains("role_map"), "{}", bob.landed);
    assert!(bob.jar.get("shiki_session").is_none());

    // A callback whose state is not this browser's login is refused.
    let forged = sign_in(api, "olga", |u| u.replace("state=", "state=x")).await?;
    assert!(
        forged.landed.starts_with("/?login_error="),
        "{}",
        forged.landed
    );
    assert!(forged.jar.get("shiki_session").is_none());

    // Olga (viewer and admin: the strongest wins), staff.
    let olga = sign_in(api, "olga", |u| u).await?;
    assert_eq!(olga.landed, "/");
    let cookie = format!(
        "shiki_session={}",
        olga.jar.get("shiki_session").unwrap_or_default()
    );
    let who = s.session(&cookie).await?;
    assert_eq!(
        (who["role"].as_str(), who["tenant"].is_null()),
        (Some("admin"), true)
    );
    assert_eq!(s.device_ids(Auth::Cookie(&cookie)).await?.len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_signs_in_and_out_through_the_provider_in_a_real_browser() -> anyhow::Result<()>
{
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let browser = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    anyhow::ensure!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: apt-get install chromium (.ci/run does)"
    );
    anyhow::ensure!(
        browser.join("node_modules/playwright-core").is_dir(),
        "playwright-core is missing: npm ci --prefix tests/browser (.ci/run does)"
    );
    let s = Setup::start("oidc-browser").await?;
    let api = s.cloud.api.addr;
    s.register_web_client().await?;
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("sso");
    let _ = std::fs::remove_dir_all(&out);
    let run = tokio::task::spawn_blocking({
        let out = out.clone();
        move || {
            std::process::Command::new("node")
                .arg(browser.join("sso.mjs"))
                .env("CHROMIUM", chromium)
                .env("SHIKI_URL", format!("http://{api}/"))
                .env("SHIKI_USER", "alice")
                .env("SHIKI_EXPECT_WHO", "Signed in as alice (operator, acme)")
                .env("SHIKI_VISIBLE", "acme-1")
                .env("SHIKI_HIDDEN", "zenith-1")
                .env("SHIKI_OUT", &out)
                .output()
        }
    })
    .await??;
    let stdout = String::from_utf8_lossy(&run.stdout);
    anyhow::ensure!(
        run.status.success() && stdout.contains("all steps passed"),
        "the browser sign-in failed (screenshots in {}):\n{stdout}\n{}",
        out.display(),
        String::from_utf8_lossy(&run.stderr)
    );
    let log = s.cloud.child.output();
    assert!(
        log.contains("signed in through the identity provider"),
        "{log}"
    );
    assert!(log.contains("signed out"), "{log}");
    Ok(())
}
