//! The README's command blocks, run as written (with the built binary in place of
//! `cargo run --release -p hpcsera --`, and a free port in place of 8080): the quick start with
//! `hpcsera dev`, its CLI variant, and the curl walkthrough against `hpcsera server`.

use crate::common;

use common::bin;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The ```sh blocks of the README section whose heading starts with `heading`.
pub(crate) fn blocks(heading: &str) -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let start = readme
        .find(&format!("\n## {heading}"))
        .unwrap_or_else(|| panic!("no README section {heading}"));
    let rest = &readme[start + 4..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    let mut out = Vec::new();
    let mut lines = section.lines();
    while let Some(l) = lines.next() {
        if l.trim() == "```sh" {
            let block: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            out.push(block.join("\n"));
        }
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Turns a README block into a script for this test: the binary instead of `cargo run`, the
/// port instead of 8080, and no background `cargo run … &` line (the test starts it).
fn script(block: &str, port: u16) -> String {
    let hpcsera = format!("hpcsera() {{ {:?} \"$@\"; }}", bin().display().to_string());
    let mut out = vec!["set -eo pipefail".to_string(), hpcsera];
    for line in block.lines() {
        if line.starts_with("alias hpcsera=") || line.starts_with("cargo run") {
            continue;
        }
        out.push(line.replace("127.0.0.1:8080", &format!("127.0.0.1:{port}")));
    }
    out.join("\n")
}

fn run(script: &str, home: &Path) -> (bool, String, String) {
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("HOME", home)
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("HPCSERA_URL")
        .env_remove("HPCSERA_TOKEN")
        .env_remove("HPCSERA_DATA_DIR")
        .env_remove("HPCSERA_DATABASE_URL")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(args: &[&str], home: &Path, port: u16, ready: impl Fn() -> bool) -> Server {
    let log = std::fs::File::create(home.join("server.log")).unwrap();
    let child = Command::new(bin())
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_DATA_HOME")
        .env_remove("HPCSERA_DATA_DIR")
        .env_remove("HPCSERA_DATABASE_URL")
        .env_remove("HPCSERA_LISTEN")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let server = Server(child);
    let started = Instant::now();
    loop {
        let up = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        if up && ready() {
            return server;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the server did not come up: {}",
            std::fs::read_to_string(home.join("server.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn quick_start_with_hpcsera_dev_works_as_written() {
    let home = tempfile::tempdir().unwrap();
    let port = free_port();
    let token = home.path().join(".local/share/hpcsera/dev/client.token");
    let listen = format!("127.0.0.1:{port}");
    let _dev = start(
        &["dev", "--listen", &listen, "--adapter", "local"],
        home.path(),
        port,
        || token.exists(),
    );
    // The agent publishes its job types right after the server is up.
    std::thread::sleep(Duration::from_millis(500));
    let b = blocks("Quick start");
    assert_eq!(
        b.len(),
        2,
        "the quick start has a curl block and a CLI block"
    );
    let (ok, out, err) = run(&script(&b[0], port), home.path());
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("\"jobType\":\"pipeline\""), "{out}");
    assert!(out.contains("\"status\":\"completed\""), "{out}");
    assert!(out.contains("sum of 1..100 = 5050"), "{out}");
    assert!(out.trim_end().ends_with("5050"), "the result file: {out}");
    let cli = format!(
        "export HPCSERA_URL=http://127.0.0.1:{port} HPCSERA_TOKEN=$(cat {})\n{}",
        token.display(),
        script(&b[1], port)
    );
    let (ok, out, err) = run(&cli, home.path());
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("sum of 1..100 = 5050"), "{out}");
}

#[test]
fn curl_walkthrough_works_as_written() {
    let home = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _server = start(&["server", "--listen", &listen], home.path(), port, || true);
    let b = blocks("Walkthrough with curl");
    assert_eq!(b.len(), 2, "the walkthrough and the bad-input example");
    let (ok, out, err) = run(
        &format!(
            "{}\n{}",
            script(&b[0], port),
            b[1].replace("127.0.0.1:8080", &listen)
        ),
        home.path(),
    );
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("\"user\":\"alice\""), "who am I: {out}");
    assert!(out.contains("\"status\":\"cancelled\""), "cancelled: {out}");
    assert!(out.contains("\"toStatus\":\"cancelled\""), "history: {out}");
    assert!(
        out.contains("\"code\":\"validation_failed\""),
        "bad input: {out}"
    );
    assert!(
        out.contains("parameters.times: is 99; the maximum is 10"),
        "{out}"
    );
}
