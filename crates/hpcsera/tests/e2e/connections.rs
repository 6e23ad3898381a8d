//! The real `hpcsera server` under a small file limit: idle connections cannot starve it.

use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn healthz_answers_with_1100_idle_connections_under_ulimit_1024() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hpcsera"));
    cmd.args([
        "--log-format",
        "json",
        "server",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
    ])
    .arg(dir.path().join("data"))
    .env("HPCSERA_LOG", "info")
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
    unsafe {
        cmd.pre_exec(|| {
            let rl = libc::rlimit {
                rlim_cur: 1024,
                rlim_max: 1024,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &rl) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (mut child, addr) = crate::common::spawn_listening(cmd.into()).await;
    let pid = child.id().unwrap();
    let http = reqwest::Client::new();
    let health = format!("http://{addr}/healthz");
    assert_eq!(http.get(&health).send().await.unwrap().status(), 200);

    // This process needs more than 1,100 descriptors for its side.
    let before = rss_kib(pid);
    let started = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..1100 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    // Let the server accept them all.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(pid);
    let r = tokio::time::timeout(
        Duration::from_secs(3),
        reqwest::Client::new().get(&health).send(),
    )
    .await
    .expect("/healthz did not answer within 3 s with 1,100 idle connections open")
    .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "before the idle timeout"
    );
    eprintln!(
        "server RSS {before} KiB before, {after} KiB with the idle connections (at most 768 kept): {} bytes per connection",
        (after.saturating_sub(before) * 1024) / 768
    );
    drop(idle);
    let _ = child.kill().await;
}
