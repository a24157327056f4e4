//! The slice through Mosquitto over TLS with client certificates (generated here), the CN as
//! user name and the per-device ACL that deploy/ ships (`deploy/mosquitto/shiki.acl`):
//! device B's edge works end to end (its telemetry is stored, a setpoint change reaches its
//! PLC and is verified, a shadow document, a schedule and an OTA job reach it), while device A, with its
//! own certificate, can neither publish on B's topics (nothing stored for B) nor read B's
//! commands (see [`TwoDevices`]).

use std::path::Path;

use shiki_e2e::mosquitto::{Mosquitto, TwoDevices};
use shiki_e2e::ota::ReleaseKeys;
use shiki_e2e::pki::Pki;
use shiki_e2e::probe::MqttProbe;
use shiki_e2e::{Cloud, Edge, EdgeOptions, PlcSim, temp_dir};

const DEVICE_A: &str = "plant-a";
const DEVICE_B: &str = "plant-b";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slice_works_through_mosquitto_with_client_certificates_and_no_device_speaks_for_another()
-> anyhow::Result<()> {
    let dir = temp_dir("mosquitto-tls")?;
    let pki = Pki::new(&dir.path().join("pki"))?;
    let acl = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/mosquitto/shiki.acl");
    let broker = Mosquitto::start_tls(dir.path(), &pki.ca, &pki.server()?, &acl).await?;

    let cloud_cert = pki.client("shiki-cloud")?;
    let release_keys = ReleaseKeys::generate(&dir.path().join("release-keys"))?;
    let cloud_toml = dir.path().join("cloud.toml");
    std::fs::write(
        &cloud_toml,
        format!(
            "[mqtt]\nurl = {:?}\nclient_id = \"shiki-cloud\"\nca_file = {:?}\n\
             cert_file = {:?}\nkey_file = {:?}\n[ota]\npublic_keys = [{:?}]\n",
            broker.url(),
            pki.ca,
            cloud_cert.cert,
            cloud_cert.key,
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
    let b = pki.client(DEVICE_B)?;
    let mut opts = EdgeOptions::new(DEVICE_B, broker.url(), Some(sim.addr));
    opts.extra_toml = format!(
        "[mqtt]\nreconnect_min = \"200ms\"\nreconnect_max = \"1s\"\nca_file = {:?}\n\
         cert_file = {:?}\nkey_file = {:?}\n",
        pki.ca, b.cert, b.key
    );
    let _edge = Edge::start("edge-b", dir.path(), &opts).await?;

    let a = pki.client(DEVICE_A)?;
    let intruder = MqttProbe::connect_tls(DEVICE_A, broker.port, &pki.ca, &a).await?;
    let b_watch = MqttProbe::connect_tls("plant-b-watch", broker.port, &pki.ca, &b).await?;
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
