//! The SDK reads server answers with a size limit: a server that answers without end (or with
//! a huge body) gets an error, not the client's memory.

use hpcsera_client::{Client, ClientError, OutputStream, Retry};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A tiny HTTP server on a TCP socket: for every request it answers `status` with a chunked
/// body of `total` bytes of `fill` (JSON-ish, never complete), written as fast as the client
/// reads. Returns the base URL.
async fn endless(status: &'static str, total: u64, fill: u8) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                // Read the request head.
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let start = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\
                     x-next-offset: 0\r\ntransfer-encoding: chunked\r\n\r\n"
                );
                if sock.write_all(start.as_bytes()).await.is_err() {
                    return;
                }
                let mut chunk = format!("{:x}\r\n", 64 * 1024).into_bytes();
                chunk.push(b'[');
                chunk.extend(std::iter::repeat_n(fill, 64 * 1024 - 1));
                chunk.extend_from_slice(b"\r\n");
                let mut sent = 0u64;
                while sent < total {
                    if sock.write_all(&chunk).await.is_err() {
                        return; // the client gave up
                    }
                    sent += 64 * 1024;
                }
                let _ = sock.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    format!("http://{addr}")
}

fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

fn client(url: &str) -> Client {
    Client::with_timeouts(
        url,
        "hpcs_t",
        Duration::from_secs(5),
        Duration::from_secs(60),
    )
    .unwrap()
    .with_retry(Retry {
        attempts: 1,
        ..Retry::default()
    })
}

const HUGE: u64 = 400 * 1024 * 1024;

#[tokio::test]
async fn an_endless_json_answer_is_an_error_without_memory_growth() {
    let url = endless("200 OK", HUGE, b' ').await;
    let c = client(&url).with_max_body_bytes(1024 * 1024);
    let err = tokio::time::timeout(Duration::from_secs(30), c.get_job("x"))
        .await
        .expect("the client gives up in time")
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Decode(m) if m.contains("larger than")),
        "{err}"
    );
    // The default limit holds too (64 MiB), far below the 400 MiB the server sends.
    let c = client(&url);
    let err = c.whoami().await.unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");
    let err = c
        .read_output("x", OutputStream::Stdout, 0, 1024)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");
    let err = c.get_result("x", "r.txt").await.unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");
    let peak = peak_rss_bytes();
    assert!(peak < 200 * 1024 * 1024, "peak RSS {} MB", peak >> 20);
}

#[tokio::test]
async fn an_endless_error_answer_is_read_only_in_part() {
    let url = endless("500 Internal Server Error", HUGE, b'x').await;
    let c = client(&url);
    let err = tokio::time::timeout(Duration::from_secs(30), c.get_job("x"))
        .await
        .expect("the client gives up in time")
        .unwrap_err();
    assert_eq!(err.status(), Some(500));
    assert!(err.to_string().len() < 1000);
    let peak = peak_rss_bytes();
    assert!(peak < 100 * 1024 * 1024, "peak RSS {} MB", peak >> 20);
}
