//! A real OpenID Connect provider for the tests: node-oidc-provider (`tests/idp/idp.mjs`),
//! started on a free loopback port, and a browserless walk through its sign-in pages.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use crate::{Child, wait_for};

/// How long the provider may take to listen.
const IDP_START_TIMEOUT: Duration = Duration::from_secs(90);

/// The folder of the provider's script and its `node_modules`.
pub fn idp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("idp")
}

/// A running provider.
#[derive(Debug)]
pub struct Idp {
    pub child: Child,
    /// `http://127.0.0.1:PORT`, as its tokens' `iss`.
    pub issuer: String,
    http: reqwest::Client,
}

impl Idp {
    /// Starts the provider with `config` (see `tests/idp/idp.mjs`: clients, accounts,
    /// machines, audience, resource).
    pub async fn start(
        name: &str,
        dir: &Path,
        log_dir: &Path,
        config: &Value,
    ) -> anyhow::Result<Self> {
        let idp = idp_dir();
        if !idp.join("node_modules/oidc-provider").is_dir() {
            bail!(
                "node-oidc-provider is not installed: run `npm ci --prefix {}` (.ci/run does)",
                idp.display()
            );
        }
        let config_file = dir.join(format!("{name}.json"));
        std::fs::write(&config_file, serde_json::to_vec_pretty(config)?)?;
        let script = idp.join("idp.mjs");
        let mut child = Child::spawn(
            name,
            Path::new("node"),
            &[
                &script.display().to_string(),
                &config_file.display().to_string(),
            ],
            &[],
            log_dir,
        )?;
        // Node loads oidc-provider and makes an RSA key before it listens: on a loaded
        // 2-core CI machine that has taken longer than a Rust binary's start.
        let started = wait_for("the identity provider to listen", IDP_START_TIMEOUT, || {
            let running = child.is_running();
            let out = child.output();
            async move {
                if !running {
                    return Some(Err(anyhow::anyhow!("the identity provider exited:\n{out}")));
                }
                out.lines()
                    .find_map(|l| l.strip_prefix("listening "))
                    .map(|i| Ok(i.trim().to_owned()))
            }
        })
        .await;
        let issuer = match started {
            Ok(found) => found?,
            Err(e) => bail!("{e}; its output so far:\n{}", child.output()),
        };
        crate::install_crypto();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            child,
            issuer,
            http,
        })
    }

    async fn post_test(&self, route: &str, body: &Value) -> anyhow::Result<Value> {
        let res = self
            .http
            .post(format!("{}/__test/{route}", self.issuer))
            .json(body)
            .send()
            .await?;
        let status = res.status();
        let text = res.text().await?;
        if !status.is_success() {
            bail!("/__test/{route}: HTTP {status}: {text}");
        }
        Ok(serde_json::from_str(&text)?)
    }

    /// A new signing key becomes current (the old one stays published); its `kid`.
    pub async fn rotate_key(&self) -> anyhow::Result<String> {
        let v = self.post_test("rotate", &json!({})).await?;
        v["kid"]
            .as_str()
            .map(str::to_owned)
            .context("rotate answered no kid")
    }

    /// Replaces the registered clients (e.g. once the cloud's callback URL is known).
    pub async fn set_clients(&self, clients: Value) -> anyhow::Result<()> {
        self.post_test("clients", &clients).await.map(drop)
    }

    /// A JWT with `claims` and extra `header` fields, signed with the provider's current
    /// key, or with a stranger's key under the current kid when `forged`.
    pub async fn mint(&self, claims: Value, header: Value, forged: bool) -> anyhow::Result<String> {
        let v = self
            .post_test(
                "mint",
                &json!({"claims": claims, "header": header, "forged": forged}),
            )
            .await?;
        v["token"]
            .as_str()
            .map(str::to_owned)
            .context("mint answered no token")
    }

    /// An access token by the client-credentials grant (a script's token).
    pub async fn client_token(
        &self,
        client: &str,
        secret: &str,
        resource: &str,
    ) -> anyhow::Result<String> {
        let res = self
            .http
            .post(format!("{}/token", self.issuer))
            .basic_auth(client, Some(secret))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", "api"),
                ("resource", resource),
            ])
            .send()
            .await?;
        let status = res.status();
        let body: Value = res.json().await?;
        body["access_token"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("token endpoint: HTTP {status}: {body}"))
    }
}

/// Cookies by name, as a browser would hold them for 127.0.0.1 (cookies do not tell ports
/// apart).
#[derive(Debug, Default, Clone)]
pub struct Jar {
    cookies: BTreeMap<String, String>,
    /// Every `Set-Cookie` line seen, newest last (to check attributes).
    pub seen: Vec<String>,
}

impl Jar {
    pub fn take(&mut self, res: &reqwest::Response) {
        for line in res.headers().get_all(SET_COOKIE) {
            let Ok(line) = line.to_str() else { continue };
            self.seen.push(line.to_owned());
            let Some((name, rest)) = line.split_once('=') else {
                continue;
            };
            let value = rest.split(';').next().unwrap_or_default();
            let lower = line.to_ascii_lowercase();
            if lower.contains("max-age=0") || value.is_empty() {
                self.cookies.remove(name.trim());
            } else {
                self.cookies
                    .insert(name.trim().to_owned(), value.to_owned());
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }

    pub fn set(&mut self, name: &str, value: &str) {
        self.cookies.insert(name.to_owned(), value.to_owned());
    }

    pub fn header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The last `Set-Cookie` line for `name`.
    pub fn set_cookie_line(&self, name: &str) -> Option<&str> {
        self.seen
            .iter()
            .rev()
            .find(|l| l.starts_with(&format!("{name}=")))
            .map(String::as_str)
    }
}

/// What a browserless sign-in ended with.
#[derive(Debug)]
pub struct SignIn {
    /// Where the cloud's callback sent the browser (`/` or `/?login_error=…`).
    pub landed: String,
    pub jar: Jar,
}

/// A browser without a browser: follows redirects, carries cookies, and fills the
/// provider's development login and consent forms for `user`. Starts at the cloud's
/// `/auth/login` and stops after the cloud's `/auth/callback`. `tamper` may change the
/// callback URL before it is followed.
pub async fn sign_in(
    api: std::net::SocketAddr,
    user: &str,
    tamper: impl Fn(String) -> String,
) -> anyhow::Result<SignIn> {
    crate::install_crypto();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut jar = Jar::default();
    let mut url = format!("http://{api}/auth/login");
    let callback = format!("http://{api}/auth/callback");
    for _ in 0..20 {
        if url.starts_with(&callback) {
            url = tamper(url);
        }
        let res = http.get(&url).header(COOKIE, jar.header()).send().await?;
        jar.take(&res);
        let status = res.status();
        let base = res.url().clone();
        if status.is_redirection() {
            let to = res
                .headers()
                .get(LOCATION)
                .context("redirect without Location")?
                .to_str()?
                .to_owned();
            if url.starts_with(&callback) {
                return Ok(SignIn { landed: to, jar });
            }
            url = base.join(&to)?.to_string();
            continue;
        }
        let page = res.text().await?;
        if !status.is_success() {
            bail!("GET {url}: HTTP {status}: {page}");
        }
        // The provider's development interaction page: a login or a consent form.
        let prompt = if page.contains(r#"name="login""#) {
            "login"
        } else if page.contains(r#"value="consent""#) || page.contains("consent") {
            "consent"
        } else {
            bail!("GET {url}: an unexpected page:\n{page}");
        };
        let form: Vec<(&str, &str)> = match prompt {
            "login" => vec![("prompt", "login"), ("login", user), ("password", "any")],
            _ => vec![("prompt", "consent")],
        };
        let res = http
            .post(base.as_str())
            .header(COOKIE, jar.header())
            .form(&form)
            .send()
            .await?;
        jar.take(&res);
        let to = res
            .headers()
            .get(LOCATION)
            .with_context(|| {
                format!(
                    "POST {base} ({prompt}): HTTP {} without a redirect",
                    res.status()
                )
            })?
            .to_str()?
            .to_owned();
        url = base.join(&to)?.to_string();
    }
    bail!("the sign-in did not reach {callback} in 20 steps (last: {url})")
}
