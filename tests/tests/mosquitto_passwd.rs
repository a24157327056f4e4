//! The slice through Mosquitto over TLS with a password file (written here with
//! `mosquitto_passwd`, user name = device id) and the per-device ACL that deploy/ ships
//! (`deploy/mosquitto/shiki.acl`, keyed on the user name `%u`): the broker refuses a client
//! without a user name, with a wrong password or with a user it does not know; the cloud
//! logs in as its service account `shiki-cloud` and device B's edge as `plant-b`, and the
//! slice works end to end; device A, logged in as itself, can neither publish on B's topics
//! nor read B's commands (see [`TwoDevices`]).

use std::path::Path;
use std::process::Command;

use rumqttc::ConnectReturnCode;
use shiki_e2e::mosquitto::{Mosquitto, TwoDevices};
use shiki_e2e::ota::ReleaseKeys;
use shiki_e2e::pki::Pki;
use shiki_e2e::probe::{Credentials, MqttProbe, connect_answer};
use shiki_e2e::{Cloud, Edge, EdgeOptions, PlcSim, temp_dir};

const DEVICE_A: &str = "plant-a";
const DEVICE_B: &str = "plant-b";
const CLOUD_USER: &str = "shiki-cloud";

/// Each account's password (a test's own; a fleet's are random and kept apart).
fn password(user: &str) -> String {
    format!("{user}-e2e-password")
}

/// Writes a Mosquitto password file holding `users` with `mosquitto_passwd -b`.
fn password_file(path: &Path, users: &[&str]) -> anyhow::Result<()> {
    for (i, user) in users.iter().enumerate() {
        let mut cmd = Command::new("mosquitto_passwd");
        if i == 0 {
            cmd.arg("-c");
        }
        let out = cmd
            .arg("-b")
            .arg(path)
            .arg(user)
            .arg(password(user))
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "mosquitto_passwd for {user}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slice_works_through_mosquitto_with_a_password_file_and_no_device_speaks_for_another()
-> anyhow::Result<()> {
    let dir = temp_dir("mosquitto-passwd")?;
    let pki = Pki::new(&dir.path().join("pki"))?;
    let passwords = dir.path().join("shiki.passwd");
    password_file(&passwords, &[CLOUD_USER, DEVICE_A, DEVICE_B])?;
    let acl = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/mosquitto/shiki.acl");
    let broker =
        Mosquitto::start_tls_passwords(dir.path(), &pki.server()?, &passwords, &acl).await?;
    let port = broker.port;

    // Who may connect: only a known user with its own password.
    let a_password = password(DEVICE_A);
    let refused = [
        ("no user name", Credentials::Anonymous),
        (
            "a wrong password",
            Credentials::Password {
                user: DEVICE_A,
                password: "not-the-password",
            },
        ),
        (
            "another's password",
            Credentials::Password {
                user: CLOUD_USER,
                password: &a_password,
            },
        ),
        (
            "an unknown user",
            Credentials::Password {
                user: "plant-unknown",
                password: &password("plant-unknown"),
            },
        ),
    ];
    for (what, creds) in refused {
        let code = connect_answer("e2e-refused", port, &pki.ca, creds).await?;
        assert_eq!(
            code,
            ConnectReturnCode::NotAuthorized,
            "mosquitto must refuse a client with {what}"
        );
    }
    let a_creds = Credentials::Password {
        user: DEVICE_A,
        password: &a_password,
    };
    assert_eq!(
        connect_answer("e2e-accepted", port, &pki.ca, a_creds).await?,
        ConnectReturnCode::Success,
        "the same client with its own password is let in"
    );

    let release_keys = ReleaseKeys::generate(&dir.path().join("release-keys"))?;
    let cloud_toml = dir.path().join("cloud.toml");
    std::fs::write(
        &cloud_toml,
        format!(
            "[mqtt]\nurl = {:?}\nclient_id = {CLOUD_USER:?}\nca_file = {:?}\n\
             username = {CLOUD_USER:?}\npassword = {:?}\n[ota]\npublic_keys = [{:?}]\n",
            broker.url(),
            pki.ca,
            password(CLOUD_USER),
            release_keys.public
        ),
    )?;
    let cloud = Cloud::start(
        "cloud",
        &dir.path().join("cloud"),
        dir.path(),
        None,
        Some(&cloud_toml),
    )
    .await?;

    let sim = PlcSim::start(dir.path()).await?;
    let mut opts = EdgeOptions::new(DEVICE_B, broker.url(), Some(sim.addr));
    opts.extra_toml = format!(
        "[mqtt]\nreconnect_min = \"200ms\"\nreconnect_max = \"1s\"\nca_file = {:?}\n\
         username = {DEVICE_B:?}\npassword = {:?}\n",
        pki.ca,
        password(DEVICE_B)
    );
    let _edge = Edge::start("edge-b", dir.path(), &opts).await?;

    let b_password = password(DEVICE_B);
    let b_creds = Credentials::Password {
        user: DEVICE_B,
        password: &b_password,
    };
    let intruder = MqttProbe::connect(DEVICE_A, port, &pki.ca, a_creds).await?;
    let b_watch = MqttProbe::connect("plant-b-watch", port, &pki.ca, b_creds).await?;
    let devices = TwoDevices {
        api: &cloud.api,
        a_id: DEVICE_A,
        a: &intruder,
        b_id: DEVICE_B,
        b_watch: &b_watch,
        b_plc: sim.addr,
        release_keys: &release_keys,
        dir: dir.path(),
    };
    devices.check_isolation(&broker).await
}
