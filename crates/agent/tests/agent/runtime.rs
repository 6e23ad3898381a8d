//! The agent's runtime against a real server, with a fake Slurm (scripts that log their
//! calls): one batch-status query per cycle for 1, 10 and 100 active jobs; the work-dir lock.

use hpcsera_agent::{Agent, AgentConfig, AgentError, Journal};
use hpcsera_api_types::{AgentPoll, JobStatus, JobUpdate, NewJob, PublishJobTypes};
use hpcsera_client::{Client, JobQuery};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

struct World {
    dir: tempfile::TempDir,
    client: Client,
    agent_token: String,
    config: std::path::PathBuf,
}

fn script(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A fake site's server on a database in a new temporary directory, and the agent's
/// configuration `agent.toml` there: the site's ([`crate::common::fake_site_config`]), then
/// `rest(d)` for the directory `d`.
async fn world_with(rest: impl FnOnce(&str) -> String) -> World {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let (url, agent_token, client_token) = crate::common::fake_site_server(dir.path()).await;
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        crate::common::fake_site_config(&d, &url, &rest(&d)),
    )
    .unwrap();
    World {
        client: Client::new(&url, &client_token).unwrap(),
        dir,
        agent_token,
        config,
    }
}

/// The slurm preset with stand-ins for sbatch (hands out ids 1, 2, …) and squeue (RUNNING for
/// every id), each logging its calls to `sbatch.log` / `squeue.log`.
async fn world() -> World {
    let w = world_with(|d| {
        format!(
            r#"[batch]
preset = "slurm"
submit = ["{d}/sbatch", "--parsable", "--job-name={{job_name}}", "{{script}}"]
status = ["{d}/squeue", "--noheader", "--format=%i|%T|%r", "--jobs={{ids}}"]
accounting = []
[[job_types]]
name = "t"
[[job_types.sub_jobs]]
name = "run"
kind = "batch"
script = "true"
"#
        )
    })
    .await;
    let d = w.dir.path().display().to_string();
    script(
        &w.dir.path().join("sbatch"),
        &format!("#!/bin/sh\nn=$(cat {d}/counter 2>/dev/null || echo 0)\nn=$((n+1))\necho $n > {d}/counter\necho \"$*\" >> {d}/sbatch.log\necho $n\n"),
    );
    script(
        &w.dir.path().join("squeue"),
        &format!(
            "#!/bin/sh\necho \"$*\" >> {d}/squeue.log\nfor a in \"$@\"; do case \"$a\" in --jobs=*) ids=\"${{a#--jobs=}}\";; esac; done\n\
             echo \"$ids\" | tr ',' '\\n' | while read -r id; do [ -n \"$id\" ] && echo \"$id|RUNNING|None\"; done\nexit 0\n"
        ),
    );
    w
}

/// A job of the config's one type `t` on the fake site.
fn job() -> NewJob {
    NewJob {
        site: "fake".into(),
        job_type: "t".into(),
        parameters: Default::default(),
        resources: Default::default(),
        metadata: None,
        callback_url: None,
    }
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

async fn count(client: &Client, status: JobStatus) -> usize {
    client
        .list_jobs(&JobQuery {
            statuses: vec![status],
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap()
        .jobs
        .len()
}

#[tokio::test]
async fn one_status_query_per_cycle_for_1_10_and_100_jobs() {
    for n in [1usize, 10, 100] {
        let w = world().await;
        let mut agent = Agent::new(AgentConfig::load(&w.config).unwrap(), &w.agent_token).unwrap();
        agent.start().await.unwrap();
        for _ in 0..n {
            w.client.submit(&job(), None).await.unwrap();
        }
        // The first cycle claims and submits them all.
        agent.cycle(0, false).await.unwrap();
        assert_eq!(
            lines(&w.dir.path().join("sbatch.log")),
            n,
            "one sbatch per job"
        );
        assert_eq!(count(&w.client, JobStatus::Submitted).await, n);
        let squeue = w.dir.path().join("squeue.log");
        for cycle in 1..=3 {
            let before = lines(&squeue);
            let spawned = agent.adapter().commands_spawned();
            agent.cycle(0, false).await.unwrap();
            assert_eq!(
                lines(&squeue) - before,
                1,
                "{n} jobs, cycle {cycle}: one squeue"
            );
            assert_eq!(
                agent.adapter().commands_spawned() - spawned,
                1,
                "{n} jobs, cycle {cycle}: one command in all"
            );
        }
        let last = std::fs::read_to_string(&squeue).unwrap();
        let ids = last
            .lines()
            .last()
            .unwrap()
            .split("--jobs=")
            .nth(1)
            .unwrap()
            .split(',')
            .count();
        assert_eq!(ids, n, "the one query names every job");
        assert_eq!(count(&w.client, JobStatus::Running).await, n);
    }
}

#[tokio::test]
async fn a_second_agent_on_the_same_work_dir_is_refused() {
    let w = world().await;
    let _first = Agent::new(AgentConfig::load(&w.config).unwrap(), &w.agent_token).unwrap();
    match Agent::new(AgentConfig::load(&w.config).unwrap(), &w.agent_token) {
        Err(AgentError::Locked(dir)) => assert!(dir.ends_with("work")),
        other => panic!("expected the lock to refuse, got {other:?}"),
    }
}

#[tokio::test]
async fn a_batch_job_submitted_but_not_reported_before_a_crash_is_reported_at_restart_and_not_submitted_again(
) {
    let w = world().await;
    let cfg = AgentConfig::load(&w.config).unwrap();
    let first = Client::new(&cfg.server_url, &w.agent_token).unwrap();
    let publish = PublishJobTypes {
        agent_version: None,
        agent_host: None,
        agent_key: None,
        job_types: cfg.specs(),
    };
    first.publish_job_types("fake", &publish).await.unwrap();
    let id = w.client.submit(&job(), None).await.unwrap().id;
    // A first agent's life up to a crash: the claim confirmed, the intent journaled, the
    // batch job submitted and its id journaled, but the `submitted` report never sent.
    let reply = first
        .agent_poll(&AgentPoll {
            active_job_ids: vec![],
            max_jobs: 1,
            wait_seconds: 0,
            agent_version: None,
        })
        .await
        .unwrap();
    assert_eq!(reply.jobs.len(), 1);
    let confirm = JobUpdate {
        status: Some(JobStatus::Dispatched),
        ..Default::default()
    };
    first.update_job(&id, &confirm).await.unwrap();
    {
        let journal = Journal::open(cfg.work_dir.join(".journal")).unwrap();
        journal.record_accepted(&id).unwrap();
        journal
            .record_intent(&id, "run", &format!("hpcsera-{id}-run"), None)
            .unwrap();
        journal.record_submitted(&id, "run", "77").unwrap();
    }
    // The restarted agent tells the server about the batch job it finds in its journal.
    let mut agent = Agent::new(cfg, &w.agent_token).unwrap();
    agent.start().await.unwrap();
    let got = w.client.get_job(&id).await.unwrap();
    assert_eq!(got.status, JobStatus::Submitted);
    assert_eq!(got.batch_job_id.as_deref(), Some("77"));
    assert_eq!(got.sub_jobs[0].batch_job_id.as_deref(), Some("77"));
    assert_eq!(
        lines(&w.dir.path().join("sbatch.log")),
        0,
        "not submitted again"
    );
}

/// A 3-step pipeline (login, batch, login) on the local adapter, each step writing the time
/// (ns) when it starts and ends to `times`.
async fn pipeline_world(cycle_seconds: u64) -> World {
    world_with(|d| {
        let stamp = format!("date +%s%N >> {d}/times");
        format!(
            r#"[poll]
long_poll_seconds = {cycle_seconds}
status_interval_seconds = {cycle_seconds}
idle_interval_seconds = {cycle_seconds}
[batch]
preset = "local"
[[job_types]]
name = "t"
[[job_types.sub_jobs]]
name = "pre"
kind = "login"
shell = "{stamp}; {stamp}"
[[job_types.sub_jobs]]
name = "run"
kind = "batch"
script = "{stamp}; {stamp}"
[[job_types.sub_jobs]]
name = "post"
kind = "login"
shell = "{stamp}; {stamp}"
"#
        )
    })
    .await
}

/// The gaps (ms) between one step's end and the next one's start, from `times`.
fn hand_offs(times: &Path) -> Vec<f64> {
    let t: Vec<u128> = std::fs::read_to_string(times)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(t.len(), 6, "each of the 3 steps stamps its start and end");
    (1..3)
        .map(|i| (t[2 * i] - t[2 * i - 1]) as f64 / 1e6)
        .collect()
}

#[tokio::test]
async fn the_next_sub_job_starts_when_the_previous_ends_not_at_the_next_cycle() {
    // Cycles of 60 s: were the steps handed on at the next cycle, the pipeline would take
    // two minutes. The end of each step's process wakes the loop instead.
    let w = pipeline_world(60).await;
    let mut agent = Agent::new(AgentConfig::load(&w.config).unwrap(), &w.agent_token).unwrap();
    agent.start().await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        agent
            .run(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        agent
    });
    // Let the agent's first (idle) long poll start: the job reaches it by the server's
    // wake-up, and everything after by the steps' ends.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let id = w.client.submit(&job(), None).await.unwrap().id;
    let job = loop {
        let j = w.client.get_job(&id).await.unwrap();
        if j.status.is_terminal() {
            break j;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the pipeline did not end within a third of one cycle: {j:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let took = started.elapsed();
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    let _ = stop.send(());
    let agent = running.await.unwrap();
    // Each step's end woke the loop (two login processes, one local batch job), and no
    // poll reply came between (the poll in flight waits its 60 s on an idle server).
    assert!(
        agent.wakes() >= 3,
        "woken {} times by the steps' ends",
        agent.wakes()
    );
    let gaps = hand_offs(&w.dir.path().join("times"));
    eprintln!("3-step pipeline: {took:?} end to end, hand-offs {gaps:?} ms");
}
