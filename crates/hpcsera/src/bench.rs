//! `hpcsera bench …` (hidden): the parts of the benchmark harness (`scripts/bench.sh`) that an
//! HTTP load generator (wrk) cannot do — seeding a million jobs, timing a job from `POST /job`
//! into a waiting agent's long poll, and holding many idle long polls open while the server's
//! memory is read; and a small TCP balancer in front of server replicas. Each prints one line
//! of `key=value` figures for the script's table.
//!
//! Never part of a server or an agent: it only talks to a running server over HTTP (or, for
//! `seed`, to its database through the store). Tokens are read from files, never from argv.

use crate::DbArgs;
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

/// Where a server is and which token to use.
#[derive(Args)]
struct Target {
    /// The server's base URL, e.g. http://127.0.0.1:18081.
    #[arg(long)]
    url: String,
    /// A file holding the token (its first line).
    #[arg(long)]
    token_file: PathBuf,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Insert N completed jobs into the database (through the store), for listing benchmarks.
    Seed {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        user: String,
        #[arg(long)]
        project: String,
        #[arg(long)]
        site: String,
        #[arg(long)]
        job_type: String,
        #[arg(long)]
        jobs: i64,
    },
    /// Time POST /job → the job arrives in a waiting agent poll, N times; prints p50/p99 in ms.
    Dispatch {
        #[command(flatten)]
        target: Target,
        /// The agent's token file (site-restricted, GET_Job).
        #[arg(long)]
        agent_token_file: PathBuf,
        #[arg(long)]
        site: String,
        #[arg(long)]
        job_type: String,
        #[arg(long, default_value_t = 200)]
        n: usize,
        /// The agent polls this server instead (another replica of the same database: the
        /// job reaches it by LISTEN/NOTIFY).
        #[arg(long)]
        agent_url: Option<String>,
    },
    /// A TCP balancer for the scale-out benchmark: listens on --listen and sends each new
    /// connection to the next of --to (round robin), until killed.
    Balance {
        #[arg(long)]
        listen: String,
        /// The servers, `host:port`, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        to: Vec<String>,
    },
    /// Hold N idle agent long polls open and read the server's RSS (of --pid) before and with
    /// them; prints the RSS in KiB and the growth per connection.
    Longpolls {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        pid: u32,
        #[arg(long, default_value_t = 1000)]
        n: usize,
    },
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Seed {
            db,
            user,
            project,
            site,
            job_type,
            jobs,
        } => {
            let store = db.open().await?;
            let started = Instant::now();
            let n = store
                .seed_jobs(&user, &project, &site, &job_type, jobs)
                .await
                .context("cannot seed jobs")?;
            println!("seeded={n} seconds={:.1}", started.elapsed().as_secs_f64());
            Ok(())
        }
        BenchCommand::Dispatch {
            target,
            agent_token_file,
            site,
            job_type,
            n,
            agent_url,
        } => {
            let agent_url = agent_url.as_deref().unwrap_or(&target.url);
            dispatch(&target, agent_url, &agent_token_file, &site, &job_type, n).await
        }
        BenchCommand::Longpolls { target, pid, n } => longpolls(&target, pid, n).await,
        BenchCommand::Balance { listen, to } => balance(&listen, &to).await,
    }
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    match text.lines().next().map(str::trim) {
        Some(t) if !t.is_empty() => Ok(t.to_string()),
        _ => bail!("the token file {} is empty", path.display()),
    }
}

/// The `q` quantile of sorted samples.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

async fn dispatch(
    target: &Target,
    agent_url: &str,
    agent_token_file: &Path,
    site: &str,
    job_type: &str,
    n: usize,
) -> anyhow::Result<()> {
    let client_token = read_token(&target.token_file)?;
    let agent_token = read_token(agent_token_file)?;
    let http = reqwest::Client::new();
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let poll = {
            let http = http.clone();
            let url = format!("{agent_url}/api/v1/agent/poll");
            let token = agent_token.clone();
            tokio::spawn(async move {
                let r = http
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({"maxJobs": 1, "waitSeconds": 30}))
                    .send()
                    .await?
                    .error_for_status()?;
                let body: serde_json::Value = r.json().await?;
                Ok::<_, reqwest::Error>((Instant::now(), body))
            })
        };
        // Let the poll reach its wait, so the time is the wake-up's, not the poll's start.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let started = Instant::now();
        let r = http
            .post(format!("{}/api/v1/job", target.url))
            .bearer_auth(&client_token)
            .json(&json!({"site": site, "jobType": job_type}))
            .send()
            .await?;
        if r.status() != reqwest::StatusCode::CREATED {
            bail!("POST /job answered {}", r.status());
        }
        let (arrived, body) = poll.await??;
        if body["jobs"].as_array().map(Vec::len) != Some(1) {
            bail!("the poll returned no job: {body}");
        }
        samples.push(arrived.duration_since(started));
    }
    samples.sort();
    println!(
        "n={} p50_ms={:.2} p99_ms={:.2}",
        samples.len(),
        quantile(&samples, 0.5).as_secs_f64() * 1e3,
        quantile(&samples, 0.99).as_secs_f64() * 1e3
    );
    Ok(())
}

/// The resident set of a process, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")
}

async fn longpolls(target: &Target, pid: u32, n: usize) -> anyhow::Result<()> {
    let token = read_token(&target.token_file)?;
    let url = url::Url::parse(&target.url)?;
    let host = url.host_str().context("no host in --url")?.to_string();
    let port = url.port_or_known_default().context("no port in --url")?;
    let body = r#"{"maxJobs":0,"waitSeconds":60}"#;
    let request = format!(
        "POST /api/v1/agent/poll HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // One poll first, so that one-time allocations (pools, caches) are not counted per connection.
    let mut conns = Vec::with_capacity(n + 1);
    conns.push(open_poll(&host, port, &request).await?);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rss_kib(pid)?;
    for _ in 0..n {
        conns.push(open_poll(&host, port, &request).await?);
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let with = rss_kib(pid)?;
    println!(
        "connections={n} rss_before_kib={before} rss_kib={with} per_conn_kib={:.1}",
        with.saturating_sub(before) as f64 / n.max(1) as f64
    );
    drop(conns);
    Ok(())
}

/// A connection that has sent `request` (a long poll) and then waits.
async fn open_poll(host: &str, port: u16, request: &str) -> anyhow::Result<tokio::net::TcpStream> {
    let mut s = tokio::net::TcpStream::connect((host, port)).await?;
    s.write_all(request.as_bytes()).await?;
    Ok(s)
}

/// Round-robin TCP balancing of whole connections (the scale-out benchmark's front).
async fn balance(listen: &str, to: &[String]) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    println!("listening={}", listener.local_addr()?);
    let mut next = 0usize;
    loop {
        let mut inbound = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                eprintln!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let target = to[next % to.len()].clone();
        next = next.wrapping_add(1);
        tokio::spawn(async move {
            let _ = inbound.set_nodelay(true);
            match tokio::net::TcpStream::connect(&target).await {
                Ok(mut out) => {
                    let _ = out.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
                Err(e) => eprintln!("cannot reach {target}: {e}"),
            }
        });
    }
}
