//! Sweeps at scale (a harness, not criterion: each measurement is one long run).
//!
//! 1. `accept`: a 10,000-member sweep (`grid` 100 × 100) accepted in ONE `POST /sweeps`, on
//!    SQLite and, with `HPCSERA_BENCH_DATABASE_URL=postgres://…/db` (a database this bench may
//!    fill), on PostgreSQL: the request's time, 5 runs each.
//! 2. `slurm` (with `HPCSERA_BENCH_SLURM=1`, on a real Slurm): the end-to-end time of a
//!    1,000-member sweep run by the in-process agent as job arrays (`[batch] array_size =
//!    1000`), then of the same 1,000 members with `[batch] arrays = false` (1,000 serial
//!    `sbatch` calls of single jobs), in one run. The queue must be empty before; the bench
//!    cancels what it started at the end.
//!
//! Run in release: `cargo bench -p hpcsera --bench sweeps` (figures in BENCHMARKS.md).

use hpcsera_api_types::{NewSweep, Role, RoleSet};
use hpcsera_server::ServerConfig;
use hpcsera_store::Store;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};
use test_server::{serve, token};

#[path = "../../agent/tests/agent/test_server.rs"]
mod test_server;

struct Setup {
    _dir: tempfile::TempDir,
    url: String,
    client: String,
    agent: String,
}

async fn setup(db_url: Option<String>, site: &str, job_types: Value) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = db_url.unwrap_or_else(|| format!("sqlite://{}", dir.path().join("b.db").display()));
    let store = Store::connect(&url).await.expect("store");
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (user, project) = (format!("u{suffix}"), format!("p{suffix}"));
    store.create_user(&user, None, false).await.expect("user");
    store.create_project(&project, "").await.expect("project");
    store.add_member(&user, &project).await.expect("member");
    let roles: RoleSet = [Role::GetJob, Role::UpdateJobStatus].into_iter().collect();
    let agent = token(&store, &user, &project, "a", roles, Some(site)).await;
    let client = token(&store, &user, &project, "c", RoleSet::all(), None).await;
    let url = serve(ServerConfig::default().without_rate_limit(), store).await;
    let r = reqwest::Client::new()
        .put(format!("{url}/api/v1/sites/{site}/jobTypes"))
        .bearer_auth(&agent)
        .json(&json!({ "jobTypes": job_types }))
        .send()
        .await
        .expect("publish");
    assert!(r.status().is_success(), "publish: {}", r.status());
    Setup {
        _dir: dir,
        url,
        client,
        agent,
    }
}

fn grid_body(site: &str, a: usize, b: usize) -> Value {
    json!({"site": site, "jobType": "noop", "grid": {
        "a": (0..a).collect::<Vec<_>>(), "b": (0..b).collect::<Vec<_>>()}})
}

async fn accept(name: &str, db_url: Option<String>) {
    let jt = json!([{"name": "noop", "parameters": [
        {"name": "a", "type": "integer"}, {"name": "b", "type": "integer"}],
        "subJobs": [{"name": "run", "kind": "batch"}]}]);
    let http = reqwest::Client::new();
    let mut times = Vec::new();
    for _ in 0..5 {
        let s = setup(db_url.clone(), "bench", jt.clone()).await;
        let started = Instant::now();
        let r = http
            .post(format!("{}/api/v1/sweeps", s.url))
            .bearer_auth(&s.client)
            .json(&grid_body("bench", 100, 100))
            .send()
            .await
            .expect("post");
        let took = started.elapsed();
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["members"], 10_000);
        times.push(took);
    }
    times.sort();
    println!(
        "accept 10,000 members ({name}): median {:.2} s, min {:.2} s, max {:.2} s (5 runs)",
        times[2].as_secs_f64(),
        times[0].as_secs_f64(),
        times[4].as_secs_f64()
    );
}

/// What one Slurm run measured.
struct SlurmRun {
    /// From `POST /sweeps` until every member has ended.
    ended: Duration,
    /// From `POST /sweeps` until every member is in the batch system (none is `queued`,
    /// `awaiting_approval`, `dispatched` or `staging` any more): what submitting costs, apart
    /// from how fast the cluster runs the tasks.
    in_batch: Duration,
    /// The batch commands the agent ran (`sbatch`, `squeue`, …).
    commands: u64,
}

/// Runs `members` trivial members on Slurm through the in-process agent.
async fn slurm_run(members: usize, arrays: bool) -> SlurmRun {
    let site = "benchslurm";
    let jt = json!([{"name": "noop", "parameters": [
        {"name": "a", "type": "integer"}, {"name": "b", "type": "integer"}],
        "subJobs": [{"name": "run", "kind": "batch"}]}]);
    let s = setup(None, site, jt).await;
    let dir = tempfile::Builder::new()
        .prefix("hpcsera-bench")
        .tempdir_in("/tmp")
        .expect("dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let token_file = dir.path().join("agent.token");
    std::fs::write(&token_file, &s.agent).expect("token");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "server_url = {:?}\ntoken_file = {:?}\nsite = {site:?}\nwork_dir = {:?}\n\
             [poll]\nlong_poll_seconds = 5\nstatus_interval_seconds = 2\nidle_interval_seconds = 1\n\
             [limits]\nmax_active_jobs = {members}\n\
             [batch]\npreset = \"slurm\"\narrays = {arrays}\narray_size = 1000\n\
             [[job_types]]\nname = \"noop\"\n[[job_types.parameters]]\nname = \"a\"\ntype = \"integer\"\n\
             [[job_types.parameters]]\nname = \"b\"\ntype = \"integer\"\n\
             [[job_types.sub_jobs]]\nname = \"run\"\nkind = \"batch\"\nscript = \"true\"\n",
            s.url,
            token_file.display().to_string(),
            dir.path().join("work").display().to_string()
        ),
    )
    .expect("config");
    let cfg = hpcsera_agent::AgentConfig::load(&config).expect("agent config");
    let mut agent = hpcsera_agent::Agent::new(cfg, &s.agent).expect("agent");
    agent.start().await.expect("agent start");
    let adapter = agent.adapter().clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        agent
            .run(async {
                let _ = stop_rx.await;
            })
            .await
    });
    let client = hpcsera_client::Client::new(&s.url, &s.client).expect("client");
    let body: NewSweep = serde_json::from_value(grid_body(site, members / 10, 10)).expect("body");
    let started = Instant::now();
    let sweep = client.submit_sweep(&body, None).await.expect("submit");
    let mut after = 0;
    let mut in_batch = None;
    loop {
        let sw = client.get_sweep(&sweep.id).await.expect("sweep");
        let before_batch: u64 = ["queued", "awaiting_approval", "dispatched", "staging"]
            .iter()
            .filter_map(|s| sw.counts.by_status.get(*s))
            .sum();
        if before_batch == 0 && in_batch.is_none() {
            in_batch = Some(started.elapsed());
        }
        if sw.counts.ended == members as u64 {
            assert_eq!(sw.counts.unsuccessful, 0, "{:?}", sw.counts);
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(3600), "too slow");
        if let Some(e) = client
            .sweep_events(&sweep.id, after, 20)
            .await
            .expect("events")
            .last()
        {
            after = e.seq;
        }
    }
    let took = started.elapsed();
    let _ = stop_tx.send(());
    let _ = task.await;
    // Leave nothing behind in the queue.
    let work = dir.path().join("work");
    let q = std::process::Command::new("squeue")
        .args(["-h", "-o", "%i|%Z"])
        .output()
        .expect("squeue");
    for line in String::from_utf8_lossy(&q.stdout).lines() {
        if let Some((id, d)) = line.split_once('|') {
            if std::path::Path::new(d.trim()).starts_with(&work) {
                let _ = std::process::Command::new("scancel").arg(id).status();
            }
        }
    }
    SlurmRun {
        ended: took,
        in_batch: in_batch.unwrap_or(took),
        commands: adapter.commands_spawned(),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        if std::env::var("HPCSERA_BENCH_SKIP_ACCEPT").is_err() {
            accept("SQLite", None).await;
        }
        if let Ok(url) = std::env::var("HPCSERA_BENCH_DATABASE_URL") {
            accept("PostgreSQL", Some(url)).await;
        }
        if std::env::var("HPCSERA_BENCH_SLURM").as_deref() == Ok("1") {
            // HPCSERA_BENCH_MEMBERS (a multiple of 10, default 1000) makes a shorter run.
            let n: usize = std::env::var("HPCSERA_BENCH_MEMBERS")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|n| *n >= 10 && n % 10 == 0)
                .unwrap_or(1000);
            for (arrays, what) in [
                (true, "as job arrays".to_string()),
                (false, format!("with {n} serial sbatch calls")),
            ] {
                let r = slurm_run(n, arrays).await;
                println!(
                    "slurm, {n} members {what}: all in Slurm after {:.1} s, all ended after \
                     {:.1} s, {} batch commands",
                    r.in_batch.as_secs_f64(),
                    r.ended.as_secs_f64(),
                    r.commands
                );
            }
        }
    });
}
