//! The web UI's jobs list with 1,000 jobs on one page: `GET /ui/projects/p/jobs?limit=1000`
//! with a session cookie, over HTTP to a real server on SQLite — the store's listing, the
//! page's rows and the askama template, end to end. The target is under 100 ms.
//!
//! Run with `cargo bench -p hpcsera-server --bench ui_jobs_page`. Besides criterion's report
//! it prints the median and the slowest of its own samples, and the page's size.

use criterion::{criterion_group, criterion_main, Criterion};
use hpcsera_api_types::{Role, RoleSet};
use hpcsera_server::ServerConfig;
use hpcsera_store::Store;
use serde_json::json;
use std::time::{Duration, Instant};
use test_server::{serve, token};

/// The agent's tests' server set-up (tokens, a server on port 0), shared with them.
#[path = "../../agent/tests/agent/test_server.rs"]
mod test_server;

const JOBS: usize = 1000;

/// A server with `JOBS` jobs in project p and the cookie of a session of their owner.
async fn setup(dir: &std::path::Path) -> (String, String) {
    let store = Store::connect(&format!("sqlite://{}", dir.join("b.db").display()))
        .await
        .expect("store");
    let user = store.create_user("u", None, false).await.expect("user");
    store.create_project("p", "").await.expect("project");
    store.add_member("u", "p").await.expect("member");
    let agent_roles: RoleSet = [Role::GetJob, Role::UpdateJobStatus].into_iter().collect();
    let agent = token(&store, "u", "p", "a", agent_roles, Some("bench")).await;
    let client = token(&store, "u", "p", "c", RoleSet::all(), None).await;
    let session = store
        .create_session(user.id, 3_600_000, 3_600_000)
        .await
        .expect("session");
    let url = serve(ServerConfig::default().without_rate_limit(), store).await;
    let http = reqwest::Client::new();
    let spec = json!([{"name": "sim", "parameters": [
        {"name": "label", "type": "string"}, {"name": "steps", "type": "integer", "default": 10}],
        "subJobs": [{"name": "run", "kind": "batch"}]}]);
    let r = http
        .put(format!("{url}/api/v1/sites/bench/jobTypes"))
        .bearer_auth(&agent)
        .json(&json!({ "jobTypes": spec }))
        .send()
        .await
        .expect("publish");
    assert!(r.status().is_success());
    for i in 0..JOBS {
        let r = http
            .post(format!("{url}/api/v1/job"))
            .bearer_auth(&client)
            .json(&json!({"site": "bench", "jobType": "sim",
                "parameters": {"label": format!("run {i} of the parameter sweep")}}))
            .send()
            .await
            .expect("submit");
        assert_eq!(r.status(), 201);
    }
    (url, format!("hpcsera_session={}", session.secret))
}

fn page_of_1000_jobs(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (url, cookie) = rt.block_on(setup(dir.path()));
    let http = reqwest::Client::new();
    let page = format!("{url}/ui/projects/p/jobs?limit={JOBS}");
    let fetch = || async {
        let started = Instant::now();
        let r = http
            .get(&page)
            .header("cookie", &cookie)
            .send()
            .await
            .expect("page");
        assert_eq!(r.status(), 200);
        let body = r.text().await.expect("body");
        (started.elapsed(), body)
    };
    let (_, body) = rt.block_on(fetch());
    let rows = body.matches("<tr id=\"job-").count();
    assert_eq!(rows, JOBS, "one page holds every job");
    println!("the page: {rows} jobs, {} KiB of HTML", body.len() / 1024);
    let mut samples = Vec::new();
    c.bench_function("GET /ui/projects/p/jobs?limit=1000 (1,000 jobs)", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (d, _) = fetch().await;
                    samples.push(d);
                    total += d;
                }
                total
            })
        })
    });
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "a page of 1,000 jobs: {} requests, median {:.1} ms, slowest {:.1} ms",
        samples.len(),
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() - 1])
    );
}

criterion_group!(benches, page_of_1000_jobs);
criterion_main!(benches);
