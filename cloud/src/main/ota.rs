//! `shiki-cloud ota keygen` and `shiki-cloud ota sign`: the release key of edge builds and
//! the signatures uploads carry. Both work offline: no config file, no running cloud.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use sha2::{Digest as _, Sha256};
use shiki_cloud::api::write_new_secret;
use shiki_shared::ota::{Manifest, ReleaseKey, check_version};

/// `shiki-cloud ota …`.
#[derive(Debug, Args)]
pub struct OtaArgs {
    #[command(subcommand)]
    command: OtaCommand,
}

#[derive(Debug, Subcommand)]
enum OtaCommand {
    /// Make a release key: DIR/ota.key (secret, mode 0600: keep it offline) and DIR/ota.pub
    /// (the public key for `[ota] public_keys` of the cloud and the edges).
    Keygen {
        /// Directory to write ota.key and ota.pub into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Sign an edge build: prints its version, sha256 and size, then the signature
    /// (base64) as the last line, for the `Shiki-Signature` header of the upload.
    Sign {
        /// The release key file (ota.key).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The build to sign.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// The version the build reports (`shiki-edge --version`).
        #[arg(long, value_name = "VERSION")]
        version: String,
    },
}

/// Runs an `ota` subcommand.
pub fn run(args: OtaArgs) -> anyhow::Result<()> {
    match args.command {
        OtaCommand::Keygen { out } => keygen(&out),
        OtaCommand::Sign { key, file, version } => sign(&key, &file, &version),
    }
}

fn keygen(out: &Path) -> anyhow::Result<()> {
    let (secret, public) = (out.join("ota.key"), out.join("ota.pub"));
    for existing in [&secret, &public] {
        if existing.exists() {
            bail!(
                "{} exists: refusing to overwrite a release key (move it away first, or pick \
                 another --out)",
                existing.display()
            );
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let key = ReleaseKey::generate();
    write_new_secret(&secret, &key.file_text())
        .with_context(|| format!("cannot write {}", secret.display()))?;
    std::fs::write(&public, format!("{}\n", key.public_base64()))
        .with_context(|| format!("cannot write {}", public.display()))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "wrote {} (secret: keep it offline) and {}",
        secret.display(),
        public.display()
    )?;
    writeln!(stdout, "public key: {}", key.public_base64())?;
    Ok(())
}

fn sign(key_file: &Path, file: &Path, version: &str) -> anyhow::Result<()> {
    check_version(version)?;
    let text = std::fs::read_to_string(key_file)
        .with_context(|| format!("cannot read the release key {}", key_file.display()))?;
    let key = ReleaseKey::from_file_text(&text)
        .with_context(|| format!("{} is not a release key", key_file.display()))?;
    let (sha256, size) =
        hash_file(file).with_context(|| format!("cannot read {}", file.display()))?;
    let manifest = Manifest {
        version: version.to_owned(),
        sha256,
        size,
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "version {}", manifest.version)?;
    writeln!(stdout, "sha256 {}", manifest.sha256)?;
    writeln!(stdout, "size {}", manifest.size)?;
    writeln!(stdout, "{}", key.sign(&manifest))?;
    Ok(())
}

/// SHA-256 (lowercase hex) and size of a file, read in blocks.
fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}
