//! Stamps the build's version: `SHIKI_BUILD_VERSION` (set by release pipelines, and by tests
//! that need a "new version" of the same code) or the package version. The crate reads it
//! with `env!("SHIKI_EDGE_VERSION")` (`shiki_edge::VERSION`).

#![allow(clippy::print_stdout)] // cargo reads build-script instructions from stdout

fn main() {
    println!("cargo:rerun-if-env-changed=SHIKI_BUILD_VERSION");
    let version = std::env::var("SHIKI_BUILD_VERSION")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| {
            std::env::var("CARGO_PKG_VERSION").expect("cargo sets CARGO_PKG_VERSION")
        });
    println!("cargo:rustc-env=SHIKI_EDGE_VERSION={}", version.trim());
}
