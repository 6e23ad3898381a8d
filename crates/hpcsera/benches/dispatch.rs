//! Dispatch latency: how fast a submitted job reaches an agent.
//!
//! - `claim`: POST /job → the job arrives in an agent's waiting long-poll (target p50 ≤ 50 ms);
//! - `submit`: POST /job → the real agent (local adapter) has submitted the batch job.
//!
//! Run with `cargo bench -p hpcsera --bench dispatch`. Besides criterion's report it prints
//! p50/p99 of its own samples.

use criterion::{criterion_group, criterion_main, Criterion};
use hpcsera_api_types::{JobStatus, NewJob, Role, RoleSet};
use hpcsera_server::ServerConfig;
use hpcsera_store::Store;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};
use test_server::{serve, token};

/// The agent's tests' server set-up (tokens, a server on port 0), shared with them.
#[path = "../../agent/tests/agent/test_server.rs"]
mod test_server;

struct Setup {
    _dir: tempfile::TempDir,
    url: String,
    client_token: String,
    agent_token: String,
}

async fn setup(job_types: serde_json::Value) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("b.db").display()))
        .await
        .expect("store");
    store.create_user("u", None, false).await.expect("user");
    store.create_project("p", "").await.expect("project");
    store.add_member("u", "p").await.expect("member");
    let agent_roles: RoleSet = [Role::GetJob, Role::UpdateJobStatus].into_iter().collect();
    let agent_token = token(&store, "u", "p", "a", agent_roles, Some("bench")).await;
    let client_token = token(&store, "u", "p", "c", RoleSet::all(), None).await;
    let url = serve(ServerConfig::default().without_rate_limit(), store).await;
    let http = reqwest::Client::new();
    let r = http
        .put(format!("{url}/api/v1/sites/bench/jobTypes"))
        .bearer_auth(&agent_token)
        .json(&json!({ "jobTypes": job_types }))
        .send()
        .await
        .expect("publish");
    assert!(r.status().is_success());
    Setup {
        _dir: dir,
        url,
        client_token,
        agent_token,
    }
}

fn percentiles(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{name}: n={} p50={:.2} ms p99={:.2} ms max={:.2} ms",
        samples.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3
    );
}

/// One claim round trip: an agent waits in a long poll; the timer runs from the POST until
/// the poll returns the job.
async fn claim_once(http: &reqwest::Client, s: &Setup) -> Duration {
    let poll = {
        let http = http.clone();
        let url = format!("{}/api/v1/agent/poll", s.url);
        let token = s.agent_token.clone();
        tokio::spawn(async move {
            let r: serde_json::Value = http
                .post(url)
                .bearer_auth(token)
                .json(&json!({"maxJobs": 1, "waitSeconds": 30}))
                .send()
                .await
                .expect("poll")
                .json()
                .await
                .expect("json");
            (Instant::now(), r)
        })
    };
    tokio::time::sleep(Duration::from_millis(5)).await; // let the poll start waiting
    let started = Instant::now();
    let r = http
        .post(format!("{}/api/v1/job", s.url))
        .bearer_auth(&s.client_token)
        .json(&json!({"site": "bench", "jobType": "noop"}))
        .send()
        .await
        .expect("submit");
    assert_eq!(r.status(), 201);
    let (arrived, reply) = poll.await.expect("poll task");
    assert_eq!(reply["jobs"].as_array().map(Vec::len), Some(1));
    arrived.duration_since(started)
}

fn claim(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let s = rt.block_on(setup(
        json!([{"name": "noop", "subJobs": [{"name": "run", "kind": "batch"}]}]),
    ));
    let http = reqwest::Client::new();
    let mut samples = Vec::new();
    c.bench_function("POST /job → claimed by a waiting agent", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let d = claim_once(&http, &s).await;
                    samples.push(d);
                    total += d;
                }
                total
            })
        })
    });
    percentiles("POST → claimed", samples);
}

fn submitted(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let jt = json!([{"name": "noop", "subJobs": [{"name": "run", "kind": "batch"}]}]);
    let s = rt.block_on(setup(jt));
    let token_file = dir.path().join("agent.token");
    std::fs::write(&token_file, &s.agent_token).expect("token file");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "server_url = {:?}\ntoken_file = {:?}\nsite = \"bench\"\nwork_dir = {:?}\n\
             [poll]\nlong_poll_seconds = 30\nstatus_interval_seconds = 30\n[batch]\npreset = \"local\"\n\
             [[job_types]]\nname = \"noop\"\n[[job_types.sub_jobs]]\nname = \"run\"\nkind = \"batch\"\nscript = \"true\"\n",
            s.url,
            token_file.display().to_string(),
            dir.path().join("work").display().to_string()
        ),
    )
    .expect("config");
    let cfg = hpcsera_agent::AgentConfig::load(&config).expect("agent config");
    let mut agent = hpcsera_agent::Agent::new(cfg, &s.agent_token).expect("agent");
    rt.block_on(agent.start()).expect("agent start");
    rt.spawn(async move { agent.run(std::future::pending()).await });
    let client = hpcsera_client::Client::new(&s.url, &s.client_token).expect("client");
    let mut samples = Vec::new();
    let mut group = c.benchmark_group("dispatch");
    group.sample_size(20);
    group.bench_function("POST /job → batch job submitted (local adapter)", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    let job = NewJob {
                        site: "bench".into(),
                        job_type: "noop".into(),
                        parameters: Default::default(),
                        resources: Default::default(),
                        metadata: None,
                        callback_url: None,
                    };
                    let id = client.submit(&job, None).await.expect("submit").id;
                    let mut after = 0;
                    'wait: loop {
                        for e in client.events(&id, after).await.expect("events") {
                            after = e.seq;
                            if e.to_status == Some(JobStatus::Submitted) {
                                break 'wait;
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    let d = started.elapsed();
                    samples.push(d);
                    total += d;
                }
                total
            })
        })
    });
    group.finish();
    percentiles("POST → batch job submitted", samples);
}

criterion_group!(benches, claim, submitted);
criterion_main!(benches);
