//! Checks of a downloaded artifact and of the disk before a download: free space, size and
//! SHA-256, and that the file is an ELF executable for the machine this agent runs on.

use std::io::Read as _;
use std::path::Path;

use sha2::{Digest, Sha256};

/// ELF class, byte order and `e_machine` of an executable: what must match for a binary
/// to run here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    /// 1: 32-bit, 2: 64-bit.
    pub class: u8,
    /// 1: little endian, 2: big endian.
    pub endian: u8,
    pub e_machine: u16,
}

impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.e_machine {
            3 => "x86",
            8 => "mips",
            20 => "powerpc",
            21 => "powerpc64",
            40 => "arm",
            62 => "x86-64",
            183 => "aarch64",
            243 => "riscv",
            _ => "other",
        };
        let bits = if self.class == 2 { 64 } else { 32 };
        write!(f, "ELF machine {} ({name}, {bits}-bit)", self.e_machine)
    }
}

impl Machine {
    /// The machine of the ELF header at the start of `bytes`.
    pub fn of_header(bytes: &[u8]) -> Result<Self, String> {
        if bytes.starts_with(b"#!") {
            return Err("it is a script (#!), not a shiki-edge executable".into());
        }
        if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
            return Err("it is not an ELF executable (no ELF magic)".into());
        }
        let (class, endian) = (bytes[4], bytes[5]);
        let raw = [bytes[18], bytes[19]];
        let e_machine = match endian {
            1 => u16::from_le_bytes(raw),
            2 => u16::from_be_bytes(raw),
            other => return Err(format!("its ELF header has an unknown byte order {other}")),
        };
        Ok(Self {
            class,
            endian,
            e_machine,
        })
    }

    /// The machine of the executable at `path`.
    pub fn of_file(path: &Path) -> Result<Self, String> {
        let mut head = [0u8; 20];
        let mut file = std::fs::File::open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let n = read_up_to(&mut file, &mut head)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::of_header(&head[..n])
    }

    /// The machine of the running agent's binary.
    pub fn running() -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find own binary: {e}"))?;
        Self::of_file(&exe)
    }
}

fn read_up_to(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Checks that the downloaded `path` has the signed `size` and `sha256` and is an
/// executable for `machine`; the error says what differs (for the job's `rejected`).
pub fn check_artifact(
    path: &Path,
    size: u64,
    sha256: &str,
    machine: Machine,
) -> Result<(), String> {
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("cannot open the download: {e}"))?;
    let mut hasher = Sha256::new();
    let mut head = Vec::with_capacity(20);
    let mut total = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| format!("cannot read the download: {e}"))?;
        if n == 0 {
            break;
        }
        if head.len() < 20 {
            head.extend_from_slice(&buf[..n.min(20 - head.len())]);
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    if total != size {
        return Err(format!(
            "the download has {total} bytes, the signed manifest says {size}"
        ));
    }
    let got = hex::encode(hasher.finalize());
    if !got.eq_ignore_ascii_case(sha256) {
        return Err(format!(
            "the download's sha256 is {got}, the signed manifest says {sha256}"
        ));
    }
    let theirs = Machine::of_header(&head).map_err(|e| format!("the artifact is refused: {e}"))?;
    if theirs != machine {
        return Err(format!(
            "the artifact is built for {theirs}; this gateway runs {machine}"
        ));
    }
    Ok(())
}

/// Bytes free for this (unprivileged) process in the file system of `dir`.
pub fn free_bytes(dir: &Path) -> Result<u64, String> {
    let stat = nix::sys::statvfs::statvfs(dir)
        .map_err(|e| format!("cannot read the free space of {}: {e}", dir.display()))?;
    #[allow(clippy::useless_conversion)] // the field types differ between platforms
    let (blocks, fragment) = (
        u64::from(stat.blocks_available()),
        u64::from(stat.fragment_size()),
    );
    Ok(blocks.saturating_mul(fragment))
}

/// Checks that `dir` has room for `need` more bytes.
pub fn check_disk(dir: &Path, need: u64) -> Result<(), String> {
    let free = free_bytes(dir)?;
    if free < need {
        return Err(format!(
            "not enough free disk space in {}: {free} bytes free, {need} needed (the rest of \
             the download and a copy of the running binary)",
            dir.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_and_non_elf_files_are_refused_and_the_running_binary_is_elf() {
        assert!(
            Machine::of_header(b"#!/bin/sh\necho hi\n")
                .expect_err("refused")
                .contains("script")
        );
        assert!(
            Machine::of_header(b"MZ\x90\0 not elf at all....")
                .expect_err("refused")
                .contains("ELF")
        );
        let me = Machine::running().expect("the test binary is ELF");
        let bin_false = Machine::of_file(Path::new("/bin/false")).expect("/bin/false is ELF");
        assert_eq!(
            me, bin_false,
            "the OTA tests use /bin/false as a foreign build"
        );
    }

    #[test]
    fn an_artifact_is_checked_for_size_hash_and_machine() {
        let dir = tempfile::tempdir().expect("tmp");
        let bytes = std::fs::read("/bin/false").expect("read /bin/false");
        let path = dir.path().join("a.part");
        std::fs::write(&path, &bytes).expect("write");
        let m = shiki_shared::ota::Manifest::for_bytes("1", &bytes);
        let me = Machine::running().expect("ELF");
        check_artifact(&path, m.size, &m.sha256, me).expect("matches");
        let err = check_artifact(&path, m.size, &"0".repeat(64), me).expect_err("refused");
        assert!(err.contains("sha256"), "{err}");
        let err = check_artifact(&path, m.size + 1, &m.sha256, me).expect_err("refused");
        assert!(err.contains("bytes"), "{err}");
        let other = Machine {
            e_machine: me.e_machine ^ 1,
            ..me
        };
        let err = check_artifact(&path, m.size, &m.sha256, other).expect_err("refused");
        assert!(err.contains("built for"), "{err}");
        check_disk(dir.path(), 1).expect("one byte is free");
        assert!(
            check_disk(dir.path(), u64::MAX)
                .expect_err("refused")
                .contains("free disk space")
        );
    }
}
