//! The server's own TLS with a private CA made here (rcgen): `hpcsera server --tls-cert
//! --tls-key` as a real process; the CLI and the agent refuse it with a message that says what
//! to set, and trust it with `--ca-file`, `HPCSERA_CA_FILE` or the agent's `ca_file`; SIGHUP
//! reloads the certificate without dropping open connections (and a broken file keeps the
//! old one); `HTTPS_PROXY` and `NO_PROXY` are honoured.

use crate::common::{bin, fresh};
use hpcsera_store::Store;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A CA and a way to issue server certificates for `localhost` and 127.0.0.1.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// (certificate PEM, key PEM, certificate DER) of a server certificate.
    fn issue(&self, cn: &str) -> (String, String, Vec<u8>) {
        let mut p =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }
}

/// Writes `text` to `path` with mode 0600 (replacing it atomically, as a certificate renewal
/// tool does).
fn write_private(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// `hpcsera server` over TLS as a child process, its address and log.
struct TlsServer {
    child: tokio::process::Child,
    port: u16,
    log: PathBuf,
}

impl TlsServer {
    async fn start(dir: &Path, db_url: &str, cert: &Path, key: &Path) -> TlsServer {
        let log = dir.join("server.log");
        let child = tokio::process::Command::new(bin())
            .args(["--log-format", "json", "server", "--listen", "127.0.0.1:0"])
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .env("HPCSERA_DATABASE_URL", db_url)
            .env("HPCSERA_CODE_DIR", dir.join("code"))
            .env("HPCSERA_LOG", "info")
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let port = text.lines().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                let addr = v["fields"]["addr"].as_str()?;
                addr.rsplit(':').next()?.parse::<u16>().ok()
            });
            if let Some(port) = port {
                return TlsServer { child, port, log };
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the TLS server did not start: {text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    fn hangup(&self) {
        let pid = self.child.id().unwrap().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success());
    }

    /// Waits until the log has `n` lines containing `what`.
    async fn wait_log(&self, what: &str, n: usize) {
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if text.matches(what).count() >= n {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no {what:?} in the log: {text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The CLI with `env` and no proxy settings of the test's environment; (exit code, stdout,
/// stderr).
async fn cli(args: &[&str], env: &[(&str, String)]) -> (i32, String, String) {
    let out = tokio::process::Command::new(bin())
        .args(args)
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env_remove("HPCSERA_CA_FILE")
        .env_remove("SSL_CERT_FILE")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .unwrap();
    crate::common::outcome(out)
}

/// A reqwest client trusting `ca` that reports the peer's certificate.
fn https_client(ca: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .tls_info(true)
        .no_proxy()
        .build()
        .unwrap()
}

/// The DER of the certificate the server presented for `GET /healthz`.
async fn presented(client: &reqwest::Client, url: &str) -> Vec<u8> {
    let resp = client.get(format!("{url}/healthz")).send().await.unwrap();
    assert!(resp.status().is_success());
    let info = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .expect("TLS info")
        .clone();
    info.peer_certificate()
        .expect("a peer certificate")
        .to_vec()
}

#[tokio::test]
async fn tls_with_a_private_ca_for_the_cli_and_the_agent_and_reload_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("hpcsera test CA");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert.pem()).unwrap();
    let (cert1, key1, der1) = ca.issue("first");
    let (cert_file, key_file) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    write_private(&cert_file, &cert1);
    write_private(&key_file, &key1);

    let db_url = fresh::fresh_database(dir.path()).await;
    let store = Store::connect(&db_url).await.unwrap();
    let (client_token, agent_token) = crate::common::alice_in_p(&store, "tls-site", "client").await;
    store.close().await;

    let server = TlsServer::start(dir.path(), &db_url, &cert_file, &key_file).await;
    let url = server.url();
    let env = vec![
        ("HPCSERA_URL", url.clone()),
        ("HPCSERA_TOKEN", client_token.clone()),
    ];

    // Without the CA: refused, and the message says what to set.
    let (code, _, err) = cli(&["whoami"], &env).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not trusted"), "{err}");
    assert!(
        err.contains("--ca-file") && err.contains("HPCSERA_CA_FILE"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    // With it: before or after the subcommand, or from the environment.
    let ca_arg = ca_file.to_str().unwrap();
    let (code, out, err) = cli(&["--ca-file", ca_arg, "whoami", "--output", "json"], &env).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["user"],
        "alice"
    );
    let (code, _, err) = cli(&["whoami", "--ca-file", ca_arg], &env).await;
    assert_eq!(code, 0, "{err}");
    let mut with_env = env.clone();
    with_env.push(("HPCSERA_CA_FILE", ca_arg.to_string()));
    let (code, _, err) = cli(&["sites"], &with_env).await;
    assert_eq!(code, 0, "{err}");
    // A file that is not a CA bundle is a usage error naming the file.
    let (code, _, err) = cli(&["--ca-file", key_file.to_str().unwrap(), "whoami"], &env).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("server.key"), "{err}");
    // Plain HTTP to the TLS port gets nothing useful (the server speaks only TLS).
    let plain = format!("http://127.0.0.1:{}", server.port);
    let mut plain_env = env.clone();
    plain_env[0].1 = plain;
    let (code, _, _) = cli(&["whoami"], &plain_env).await;
    assert_eq!(code, 1);

    agent_with_and_without_the_ca(dir.path(), &url, &agent_token, &ca_file, &env).await;
    proxies_from_the_environment(&url, &with_env).await;

    // SIGHUP: a kept-alive connection goes on with the old certificate, new connections get
    // the new one.
    let ca_pem = ca.cert.pem();
    let kept = https_client(&ca_pem);
    assert_eq!(presented(&kept, &url).await, der1);
    let (cert2, key2, der2) = ca.issue("second");
    write_private(&cert_file, &cert2);
    write_private(&key_file, &key2);
    server.hangup();
    server.wait_log("TLS certificate reloaded", 1).await;
    assert_eq!(
        presented(&kept, &url).await,
        der1,
        "the open connection was kept"
    );
    assert_eq!(presented(&https_client(&ca_pem), &url).await, der2);
    // A broken file is refused at reload; the server keeps serving the last good certificate.
    write_private(&key_file, "not a key\n");
    server.hangup();
    server.wait_log("TLS certificate not reloaded", 1).await;
    assert_eq!(presented(&https_client(&ca_pem), &url).await, der2);
    let (code, _, err) = cli(&["whoami"], &with_env).await;
    assert_eq!(code, 0, "{err}");
}

async fn agent_with_and_without_the_ca(
    dir: &Path,
    url: &str,
    agent_token: &str,
    ca_file: &Path,
    env: &[(&str, String)],
) {
    let token_file = dir.join("agent.token");
    write_private(&token_file, agent_token);
    let config = |ca: Option<&Path>| {
        format!(
            "server_url = {url:?}\ntoken_file = {:?}\n{}site = \"tls-site\"\nwork_dir = {:?}\n\
             [poll]\nlong_poll_seconds = 1\n[batch]\npreset = \"local\"\n\
             [[job_types]]\nname = \"hello\"\n[[job_types.sub_jobs]]\nname = \"run\"\n\
             kind = \"login\"\ncommand = [\"true\"]\n",
            token_file.display().to_string(),
            ca.map(|c| format!("ca_file = {:?}\n", c.display().to_string()))
                .unwrap_or_default(),
            dir.join("work").display().to_string(),
        )
    };
    let plain = dir.join("agent-plain.toml");
    std::fs::write(&plain, config(None)).unwrap();
    let (code, _, err) = cli(
        &["agent", "--once", "--config", plain.to_str().unwrap()],
        &[],
    )
    .await;
    assert_ne!(code, 0);
    assert!(
        err.contains("not trusted") && err.contains("ca_file"),
        "{err}"
    );

    let trusting = dir.join("agent-ca.toml");
    std::fs::write(&trusting, config(Some(ca_file))).unwrap();
    let (code, _, err) = cli(
        &["agent", "--once", "--config", trusting.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    // Its job types arrived.
    let mut env = env.to_vec();
    env.push(("HPCSERA_CA_FILE", ca_file.display().to_string()));
    let (code, out, err) = cli(&["job-types", "tls-site", "--output", "json"], &env).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"hello\""), "{out}");
    // `--ca-file` works for the agent too when its config names none.
    let ca = ca_file.to_str().unwrap();
    let (code, _, err) = cli(
        &[
            "agent",
            "--once",
            "--ca-file",
            ca,
            "--config",
            plain.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    // A job runs over TLS; the agent's JSON log has its exit code as a number.
    let (code, out, err) = cli(&["job", "submit", "tls-site", "hello"], &env).await;
    assert_eq!(code, 0, "{err}");
    let id = out.trim().to_string();
    let log_file = dir.join("agent.json.log");
    let mut agent = tokio::process::Command::new(bin())
        .args(["--log-format", "json", "agent", "--config"])
        .arg(&trusting)
        .stderr(std::fs::File::create(&log_file).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut job = serde_json::Value::Null;
    while started.elapsed() < Duration::from_secs(60) {
        let (_, out, _) = cli(&["job", "get", &id, "--output", "json"], &env).await;
        job = serde_json::from_str(&out).unwrap_or_default();
        if job["status"] == "completed" || job["status"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pid = agent.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(30), agent.wait()).await;
    let log = std::fs::read_to_string(&log_file).unwrap();
    assert_eq!(job["status"], "completed", "{job}\n{log}");
    let finished: serde_json::Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["fields"]["message"] == "finished")
        .unwrap_or_else(|| panic!("no finished line: {log}"));
    assert_eq!(finished["fields"]["exit_code"], 0, "a number: {finished}");
}

/// A CONNECT proxy on 127.0.0.1 that counts the tunnels it made.
async fn connect_proxy() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let tunnels = Arc::new(AtomicUsize::new(0));
    let count = tunnels.clone();
    tokio::spawn(async move {
        while let Ok((mut down, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                    if down.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head);
                let Some(target) = text
                    .strip_prefix("CONNECT ")
                    .and_then(|r| r.split_whitespace().next())
                else {
                    return;
                };
                let target = target.replace("localhost", "127.0.0.1");
                let Ok(mut up) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                if down
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
            });
        }
    });
    (port, tunnels)
}

async fn proxies_from_the_environment(url: &str, env: &[(&str, String)]) {
    let (port, tunnels) = connect_proxy().await;
    let mut proxied = env.to_vec();
    proxied.push(("HTTPS_PROXY", format!("http://127.0.0.1:{port}")));
    let (code, _, err) = cli(&["whoami"], &proxied).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        tunnels.load(Ordering::SeqCst),
        1,
        "through the proxy: {url}"
    );
    proxied.push(("NO_PROXY", "localhost".to_string()));
    let (code, _, err) = cli(&["whoami"], &proxied).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(tunnels.load(Ordering::SeqCst), 1, "NO_PROXY goes direct");
}
