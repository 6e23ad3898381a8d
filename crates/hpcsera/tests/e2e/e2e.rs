//! End to end: a real server, the real `hpcsera agent` binary as a child process, and a real
//! batch system — Slurm when `HPCSERA_TEST_ADAPTER=slurm` (the test script sets it in CI;
//! without `sbatch` these tests then fail, never skip), else the local adapter.

use crate::common;

use common::{slurm, squeue, Env};
use hpcsera_api_types::{JobStatus, Operation};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

const SITE: &str = "e2e";

fn job_types() -> String {
    [
        include_str!("../../fixtures/job_types/e2e.toml"),
        &common::sleep_and_later_job_types(),
    ]
    .join("\n")
}

async fn submit(env: &Env, job_type: &str, params: Value) -> String {
    env.submit_job(job_type, params).await.id
}

async fn wait_end(env: &Env, id: &str) -> hpcsera_api_types::Job {
    env.wait_for(id, JobStatus::is_terminal, "terminal").await
}

async fn output(env: &Env, id: &str, stream: hpcsera_api_types::OutputStream) -> String {
    let c = env
        .client
        .read_output(id, stream, 0, 1 << 20)
        .await
        .unwrap();
    String::from_utf8_lossy(&c.data).into_owned()
}

#[tokio::test]
async fn job_runs_to_completion_with_output_and_results() {
    let env = Env::with_limits(SITE, &job_types(), 10).await;
    let id = submit(&env, "echo", json!({"v": "hello world"})).await;
    let job = wait_end(&env, &id).await;
    env.assert_completed(&job);
    assert_eq!(job.exit_code, Some(0));
    assert!(job.batch_job_id.is_some());
    if slurm() {
        assert!(
            job.batch_job_id.as_deref().unwrap().parse::<u64>().is_ok(),
            "a Slurm job id"
        );
    }
    assert_eq!(job.sub_jobs[0].status, "completed");
    assert_eq!(
        output(&env, &id, hpcsera_api_types::OutputStream::Stdout).await,
        "line one\nline two\n"
    );
    assert_eq!(
        output(&env, &id, hpcsera_api_types::OutputStream::Stderr).await,
        "to stderr\n"
    );
    assert_eq!(
        env.client.get_result(&id, "v.txt").await.unwrap(),
        b"hello world"
    );
    let events = env.client.events(&id, 0).await.unwrap();
    let path: Vec<String> = events
        .iter()
        .filter_map(|e| e.to_status.map(|s| s.to_string()))
        .collect();
    assert_eq!(path.first().map(String::as_str), Some("queued"));
    assert_eq!(path.last().map(String::as_str), Some("completed"));
    assert!(path.contains(&"submitted".to_string()));
}

#[tokio::test]
async fn failing_script_fails_with_its_exit_code() {
    let env = Env::with_limits(SITE, &job_types(), 10).await;
    let id = submit(&env, "sleep", json!({"seconds": 0, "code": 7})).await;
    let job = wait_end(&env, &id).await;
    assert_eq!(job.status, JobStatus::Failed, "{:?}", job.message);
    assert_eq!(job.exit_code, Some(7));
    assert!(job.message.unwrap().contains("code 7"));
    assert_eq!(
        output(&env, &id, hpcsera_api_types::OutputStream::Stdout).await,
        "start\nend\n"
    );
}

#[tokio::test]
async fn cancel_reaches_the_running_batch_job() {
    let env = Env::with_limits(SITE, &job_types(), 10).await;
    let id = submit(&env, "sleep", json!({"seconds": 300})).await;
    env.wait_for(&id, |s| s == JobStatus::Running, "running")
        .await;
    env.client.operation(&id, Operation::Cancel).await.unwrap();
    let job = wait_end(&env, &id).await;
    assert_eq!(job.status, JobStatus::Cancelled, "{:?}", job.message);
    if slurm() {
        let batch = job.batch_job_id.unwrap();
        let state = squeue(&["--states=all", "-o", "%T", "-j", &batch]);
        assert!(
            state.is_empty() || state == "CANCELLED" || state == "COMPLETING",
            "Slurm says {state}"
        );
    }
}

#[tokio::test]
async fn hold_and_release_reach_the_batch_system() {
    let env = Env::with_limits(SITE, &job_types(), 10).await;
    let id = submit(&env, "later", json!({})).await;
    env.wait_submitted(&id).await;
    let job = env.client.operation(&id, Operation::Hold).await.unwrap();
    assert_eq!(
        job.pending_operation.map(|p| p.operation),
        Some(Operation::Hold)
    );
    let done = env.operation_ack(&id, 0, "hold").await;
    if slurm() {
        assert_eq!(done.kind, "operation_done", "{:?}", done.message);
        let batch = env.client.get_job(&id).await.unwrap().batch_job_id.unwrap();
        let reason = || squeue(&["-o", "%r", "-j", &batch]);
        assert!(reason().starts_with("JobHeld"), "Slurm reason {}", reason());
        assert!(env.client.get_job(&id).await.unwrap().held);
        env.client.operation(&id, Operation::Release).await.unwrap();
        let started = Instant::now();
        while env.client.get_job(&id).await.unwrap().held {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "release never acknowledged"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            !reason().starts_with("JobHeld"),
            "Slurm reason {}",
            reason()
        );
    } else {
        // The local adapter cannot hold a running process: refused, and said so.
        assert_eq!(done.kind, "operation_failed");
    }
    env.client.operation(&id, Operation::Cancel).await.unwrap();
    assert_eq!(wait_end(&env, &id).await.status, JobStatus::Cancelled);
}

#[tokio::test]
async fn failing_or_timed_out_login_steps_fail_the_job_with_a_reason() {
    let env = Env::with_limits(SITE, &job_types(), 10).await;
    let bad = submit(&env, "badlogin", json!({})).await;
    let slow = submit(&env, "slowlogin", json!({})).await;
    let job = wait_end(&env, &bad).await;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.exit_code, Some(4));
    assert!(
        job.message.as_deref().unwrap().contains("stage"),
        "{:?}",
        job.message
    );
    assert!(job.batch_job_id.is_none(), "the batch step never ran");
    assert_eq!(
        output(&env, &bad, hpcsera_api_types::OutputStream::Stdout).await,
        "staging\n"
    );
    let job = wait_end(&env, &slow).await;
    assert_eq!(job.status, JobStatus::Failed);
    assert!(
        job.message.as_deref().unwrap().contains("timed out"),
        "{:?}",
        job.message
    );
}

#[tokio::test]
async fn parameters_with_shell_metacharacters_arrive_verbatim() {
    let env = Env::with_limits(SITE, &job_types(), 50).await;
    let canary = format!("/tmp/hpcsera-pwned-{}", std::process::id());
    let corpus = [
        format!("$(touch {canary})"),
        format!("`touch {canary}`"),
        format!("a; touch {canary}"),
        format!("a && touch {canary} || true"),
        format!("a | tee {canary}"),
        format!("> {canary}"),
        "'single' \"double\" \\backslash\\".to_string(),
        "line1\nline2\n\ttab".to_string(),
        "$HOME ${PATH} $1 $@ %s %n %j %u".to_string(),
        "-rf --help * ~ ?".to_string(),
        "ünïcødé — 日本語 — 🚀".to_string(),
        "#SBATCH --mem=999G".to_string(),
    ];
    let mut ids = Vec::new();
    for v in &corpus {
        ids.push((submit(&env, "echo", json!({ "v": v })).await, v.clone()));
    }
    for (id, v) in ids {
        let job = wait_end(&env, &id).await;
        assert_eq!(job.status, JobStatus::Completed, "{v:?}: {:?}", job.message);
        let got = env.client.get_result(&id, "v.txt").await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&got),
            v,
            "the value arrives verbatim"
        );
    }
    assert!(!Path::new(&canary).exists(), "a parameter was executed");
}

#[tokio::test]
async fn agent_killed_and_restarted_loses_nothing_and_submits_nothing_twice() {
    let mut env = Env::with_limits(SITE, &job_types(), 2).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(submit(&env, "sleep", json!({"seconds": 4})).await);
    }
    // Two are with the agent (max_active_jobs = 2), two wait in the queue.
    env.wait_submitted(&ids[0]).await;
    env.kill_agent().await;
    let before: Vec<_> = {
        let mut v = Vec::new();
        for id in &ids {
            v.push(env.client.get_job(id).await.unwrap().status);
        }
        v
    };
    assert!(before.contains(&JobStatus::Queued), "{before:?}");
    env.start_agent();
    for id in &ids {
        let job = wait_end(&env, id).await;
        env.assert_completed(&job);
        let events = env.client.events(id, 0).await.unwrap();
        let submitted = events
            .iter()
            .filter(|e| e.to_status == Some(JobStatus::Submitted))
            .count();
        assert_eq!(submitted, 1, "job {id} was submitted once");
        let out = output(&env, id, hpcsera_api_types::OutputStream::Stdout).await;
        assert_eq!(out, "start\nend\n", "output without gaps or repeats");
        if slurm() {
            let name = format!("hpcsera-{id}-run");
            let n = squeue(&["--states=all", "-o", "%i", "-n", &name])
                .lines()
                .count();
            assert_eq!(n, 1, "job {id} has {n} Slurm jobs");
        } else {
            let states = std::fs::read_dir(env.dir.path().join("work/.local-batch")).unwrap();
            let mine = states
                .flatten()
                .filter(|e| {
                    std::fs::read_to_string(e.path().join("name"))
                        .map(|n| n.contains(id.as_str()))
                        .unwrap_or(false)
                })
                .count();
            assert_eq!(mine, 1, "job {id} has {mine} local batch jobs");
        }
    }
}

#[tokio::test]
async fn sigterm_stops_the_agent_cleanly_and_a_restart_finishes_the_job() {
    let mut env = Env::with_limits(SITE, &job_types(), 10).await;
    let id = submit(&env, "sleep", json!({"seconds": 4})).await;
    env.wait_submitted(&id).await;
    let status = env.terminate_agent().await;
    assert!(
        status.success(),
        "the agent exits 0 on SIGTERM: {status:?}\n{}",
        env.agent_log()
    );
    assert!(env.agent_log().contains("stopping"), "{}", env.agent_log());
    // The batch job went on without the agent; the restarted agent picks it up.
    env.start_agent();
    let job = wait_end(&env, &id).await;
    env.assert_completed(&job);
    let events = env.client.events(&id, 0).await.unwrap();
    let submitted = events
        .iter()
        .filter(|e| e.to_status == Some(JobStatus::Submitted))
        .count();
    assert_eq!(submitted, 1);
    assert_eq!(
        output(&env, &id, hpcsera_api_types::OutputStream::Stdout).await,
        "start\nend\n"
    );
}

/// Every file and directory below `dir` (not following links) whose mode gives group or
/// others any access, with its mode.
fn open_to_others(dir: &Path) -> Vec<(std::path::PathBuf, u32)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let m = std::fs::symlink_metadata(&d).unwrap();
        if m.mode() & 0o077 != 0 {
            out.push((d.clone(), m.mode() & 0o7777));
        }
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else if !m.file_type().is_symlink() && m.mode() & 0o077 != 0 {
                out.push((e.path(), m.mode() & 0o7777));
            }
        }
    }
    out
}

#[tokio::test]
async fn everything_the_agent_creates_is_private_to_its_user() {
    let env = Env::with_limits(SITE, &job_types(), 10).await;
    let id = submit(&env, "echo", json!({"v": "private"})).await;
    let job = wait_end(&env, &id).await;
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.message);
    let open = open_to_others(&env.work);
    assert!(
        open.is_empty(),
        "group or others can reach: {:?}",
        open.iter()
            .map(|(p, m)| format!("{} {m:o}", p.display()))
            .collect::<Vec<_>>()
    );
    // The job's own directory, output and results were checked (they exist).
    assert!(env.work.join(&id).join("run.out").is_file());
    assert!(env.work.join(&id).join("results/v.txt").is_file());
}

#[tokio::test]
async fn links_out_of_the_job_directory_are_never_followed() {
    let env = Env::with_limits(SITE, &job_types(), 10).await;
    let outside = env.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let secret = format!("TOP-SECRET-{}", std::process::id());
    std::fs::write(outside.join("secret.txt"), &secret).unwrap();
    let dir = outside.display().to_string();
    let file = outside.join("secret.txt").display().to_string();
    let by_dir = submit(&env, "links", json!({"how": "dir", "target": dir})).await;
    let by_file = submit(&env, "links", json!({"how": "file", "target": file})).await;
    let by_out = submit(&env, "links", json!({"how": "output", "target": file})).await;
    for id in [&by_dir, &by_file, &by_out] {
        let job = wait_end(&env, id).await;
        assert_eq!(job.status, JobStatus::Completed, "{:?}", job.message);
        for r in env.client.list_results(id).await.unwrap() {
            let data = env.client.get_result(id, &r.name).await.unwrap();
            assert!(
                !String::from_utf8_lossy(&data).contains(&secret),
                "{} leaked the secret",
                r.name
            );
        }
        let out = output(&env, id, hpcsera_api_types::OutputStream::Stdout).await;
        assert!(!out.contains(&secret), "the output leaked the secret");
    }
    // Nothing at all came from the linked directory; the plain file next to the link did.
    assert!(env.client.list_results(&by_dir).await.unwrap().is_empty());
    let names: Vec<String> = env
        .client
        .list_results(&by_file)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["ok.txt"]);
    // What was skipped is on record, in the job's message.
    let msg = |id: &str| {
        let env = &env;
        let id = id.to_string();
        async move {
            env.client
                .get_job(&id)
                .await
                .unwrap()
                .message
                .unwrap_or_default()
        }
    };
    assert!(
        msg(&by_dir).await.contains("results"),
        "{}",
        msg(&by_dir).await
    );
    assert!(
        msg(&by_dir).await.contains("symlink"),
        "{}",
        msg(&by_dir).await
    );
    assert!(
        msg(&by_file).await.contains("leak.txt"),
        "{}",
        msg(&by_file).await
    );
    assert!(
        msg(&by_out).await.contains("run.out"),
        "{}",
        msg(&by_out).await
    );
}

#[tokio::test]
async fn a_huge_failure_message_is_cut_and_the_job_fails_rather_than_ends_lost() {
    // A login step whose program name is 70 KB: starting it fails with an error naming it,
    // beyond every message limit of the server.
    let program = format!("/nonexistent/{}", "x".repeat(70_000));
    let job_types = format!(
        r#"
[[job_types]]
name = "hugeerror"
description = "a login step that cannot start"
[[job_types.sub_jobs]]
name = "stage"
kind = "login"
command = [{program:?}]
"#
    );
    let env = Env::with_opts(
        SITE,
        &job_types,
        common::Opts {
            lease_seconds: 3,
            ..Default::default()
        },
    )
    .await;
    let id = submit(&env, "hugeerror", json!({})).await;
    let job = wait_end(&env, &id).await;
    assert_eq!(
        job.status,
        JobStatus::Failed,
        "{:?}\n{}",
        job.message
            .as_deref()
            .map(|m| m.chars().take(300).collect::<String>()),
        env.agent_log().chars().rev().take(3000).collect::<String>()
    );
    let msg = job.message.unwrap_or_default();
    assert!(msg.len() <= 4096, "{} bytes", msg.len());
    assert!(
        msg.starts_with("login sub-job stage: cannot start"),
        "{msg}"
    );
    assert!(job.sub_jobs[0].message.as_deref().unwrap_or_default().len() <= 4096);
}

/// All of a stream as the server has it.
async fn all_output(env: &Env, id: &str, stream: hpcsera_api_types::OutputStream) -> Vec<u8> {
    let mut data = Vec::new();
    loop {
        let c = env
            .client
            .read_output(id, stream, data.len() as u64, 8 << 20)
            .await
            .unwrap();
        if c.data.is_empty() {
            return data;
        }
        data.extend_from_slice(&c.data);
    }
}

#[tokio::test]
async fn output_after_a_restart_is_exact_with_the_documented_agent_roles() {
    // The agent's token has GET_Job, UPDATE_JobStatus and GET_Code only (see common).
    let mut env = Env::with_limits(SITE, &job_types(), 10).await;
    let id = submit(&env, "bigout", json!({})).await;
    let started = Instant::now();
    let sent = loop {
        let j = env.client.get_job(&id).await.unwrap();
        if j.output_bytes.stdout >= 2 << 20 {
            break j.output_bytes.stdout;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no output: {}",
            env.agent_log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let status = env.terminate_agent().await;
    assert!(status.success());
    let file = env.work.join(&id).join("run.out");
    let stored = env.client.get_job(&id).await.unwrap().output_bytes.stdout;
    env.start_agent();
    let job = wait_end(&env, &id).await;
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.message);
    let got = all_output(&env, &id, hpcsera_api_types::OutputStream::Stdout).await;
    let want = std::fs::read(&file).unwrap();
    assert!(
        want.len() >= 3_000_000,
        "the script wrote {} bytes",
        want.len()
    );
    assert!(
        stored < want.len() as u64,
        "stopped mid-stream ({sent} then {stored} of {})",
        want.len()
    );
    assert_eq!(got.len(), want.len(), "stored bytes vs file");
    assert!(got == want, "stored bytes equal the file, byte for byte");
    assert_eq!(job.output_bytes.stdout, want.len() as u64);
}

/// Waits until the job has an event of `kind`; returns its message.
async fn wait_event(env: &Env, id: &str, kind: &str) -> String {
    let started = Instant::now();
    loop {
        let events = env.client.events(id, 0).await.unwrap();
        if let Some(e) = events.iter().find(|e| e.kind == kind) {
            return e.message.clone().unwrap_or_default();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no {kind} event: {events:?}\n{}",
            env.agent_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A returning agent cancels the batch job of a job the server made `lost` and records it.
async fn returning_agent_cleans_up(kill: bool) {
    let mut env = Env::with_opts(
        SITE,
        &job_types(),
        common::Opts {
            lease_seconds: 3,
            ..Default::default()
        },
    )
    .await;
    let id = submit(&env, "sleep", json!({"seconds": 300})).await;
    let job = env
        .wait_for(&id, |s| s == JobStatus::Running, "running")
        .await;
    let batch = job.batch_job_id.unwrap();
    if kill {
        env.kill_agent().await;
    } else {
        env.signal_agent("STOP");
    }
    let lost = env.wait_for(&id, |s| s == JobStatus::Lost, "lost").await;
    assert!(
        env.batch_job_active(&batch),
        "the batch job runs on meanwhile"
    );
    if kill {
        env.start_agent();
    } else {
        env.signal_agent("CONT");
    }
    let msg = wait_event(&env, &id, "agent_cleanup").await;
    assert!(
        msg.contains(&format!("cancelled batch job {batch}")),
        "{msg}"
    );
    let started = Instant::now();
    while env.batch_job_active(&batch) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "batch job {batch} still runs: {}",
            env.agent_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        env.agent_log().contains("cleaned up a job"),
        "{}",
        env.agent_log()
    );
    // The job itself stays as the server left it.
    let after = env.client.get_job(&id).await.unwrap();
    assert_eq!(after.status, JobStatus::Lost);
    assert_eq!(after.message, lost.message);
}

#[tokio::test]
async fn an_agent_stopped_past_its_lease_cancels_the_lost_jobs_batch_job_when_it_continues() {
    returning_agent_cleans_up(false).await;
}

#[tokio::test]
async fn an_agent_restarted_after_its_jobs_were_lost_cancels_their_batch_jobs() {
    returning_agent_cleans_up(true).await;
}

#[tokio::test]
async fn a_test_that_ends_early_leaves_no_batch_job_behind() {
    let mut env = Env::with_limits(SITE, &job_types(), 10).await;
    env.expect_leftover_batch_jobs();
    let id = submit(&env, "later", json!({})).await;
    let job = env.wait_submitted(&id).await;
    let batch = job.batch_job_id.unwrap();
    assert!(env.batch_job_active(&batch));
    assert_eq!(env.leftover_batch_jobs().len(), 1);
    let local_pid = std::fs::read_to_string(env.work.join(".local-batch").join(&batch).join("pid"))
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string));
    // What a failing assertion would do: the test's set-up is dropped with the job queued.
    drop(env);
    if slurm() {
        let state = squeue(&["-o", "%T", "-j", &batch]);
        assert!(
            state.is_empty() || state == "CANCELLED" || state == "COMPLETING",
            "batch job {batch} of the dropped test is {state}"
        );
    } else {
        let pid = local_pid.expect("the local batch job has a pid");
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|st| !st.contains(") Z "));
        assert!(!alive, "the local batch job {pid} runs on");
    }
}
