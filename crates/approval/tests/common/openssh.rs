//! OpenSSH's own tools for tests: make keys (`ssh-keygen -t`), sign (`ssh-keygen -Y sign`),
//! verify (`ssh-keygen -Y verify`), fingerprints, and a real `ssh-agent`. Shared by the
//! approval crate's, the server's and the end-to-end tests (included with `#[path]`; the
//! server's metrics test runs promtool with its `run_with_input`). The tests that use it fail
//! when OpenSSH is missing.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The `hpcsera-code` namespace, spelled out so that these helpers do not depend on the code
/// under test.
pub const NS: &str = "hpcsera-code";

/// Runs a command; whether it succeeded and its stdout and stderr.
pub fn run(cmd: &mut Command) -> (bool, String) {
    said(
        cmd.output()
            .expect("OpenSSH (ssh-keygen) must be installed"),
    )
}

/// Runs a command with `input` on its stdin; whether it succeeded and its stdout and stderr.
/// `needs` says what must be installed for it.
pub fn run_with_input(cmd: &mut Command, input: &[u8], needs: &str) -> (bool, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{needs} must be installed: {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    said(child.wait_with_output().unwrap())
}

/// Whether a command succeeded, and its stdout and stderr.
fn said(out: std::process::Output) -> (bool, String) {
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `ssh-keygen -t …` without a passphrase, comment `name`; the private key's path.
pub fn keygen(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let (ok, out) = run(Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .args(args));
    assert!(ok, "ssh-keygen: {out}");
    path
}

/// An Ed25519 key.
pub fn ed25519(dir: &Path, name: &str) -> PathBuf {
    keygen(dir, name, &["-t", "ed25519"])
}

/// The `.pub` line of a key made by [`keygen`].
pub fn public_line(key: &Path) -> String {
    std::fs::read_to_string(key.with_extension("pub")).unwrap()
}

/// `ssh-keygen -Y sign -n NAMESPACE -f KEY` over `msg`; the armored signature.
pub fn sign(key: &Path, namespace: &str, msg: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("msg");
    std::fs::write(&file, msg).unwrap();
    let (ok, out) = run(Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", namespace, "-f"])
        .arg(key)
        .arg(&file));
    assert!(ok, "ssh-keygen -Y sign: {out}");
    std::fs::read_to_string(dir.path().join("msg.sig")).unwrap()
}

/// `ssh-keygen -Y verify -n hpcsera-code -I PRINCIPAL -f ALLOWED -s SIG < msg`; whether it
/// verified, and what it said.
pub fn verify(allowed: &str, principal: &str, msg: &str, sig: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let (a, s) = (dir.path().join("allowed"), dir.path().join("msg.sig"));
    std::fs::write(&a, allowed).unwrap();
    std::fs::write(&s, sig).unwrap();
    run_with_input(
        Command::new("ssh-keygen")
            .args(["-Y", "verify", "-n", NS, "-I", principal, "-f"])
            .arg(&a)
            .arg("-s")
            .arg(&s),
        msg.as_bytes(),
        "OpenSSH (ssh-keygen)",
    )
}

/// `SHA256:…` of a key made by [`keygen`], as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &Path) -> String {
    let (ok, out) = run(Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key.with_extension("pub")));
    assert!(ok, "{out}");
    out.split_whitespace().nth(1).unwrap().to_string()
}

/// A real `ssh-agent` in the foreground on its own socket, killed when dropped.
pub struct Agent {
    child: std::process::Child,
    pub sock: PathBuf,
}

impl Agent {
    pub fn start(dir: &Path) -> Agent {
        let sock = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("OpenSSH's ssh-agent must be installed");
        let started = Instant::now();
        while !sock.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "ssh-agent did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Agent { child, sock }
    }

    /// `ssh-add KEY`.
    pub fn add(&self, key: &Path) {
        let (ok, out) = run(Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.sock));
        assert!(ok, "ssh-add: {out}");
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
