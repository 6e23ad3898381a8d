//! The `hpcsera` client commands end to end: the real binary against an in-process server and
//! the real agent (local adapter, or Slurm with `HPCSERA_TEST_ADAPTER=slurm`), and the exact
//! commands of `examples/`.

use crate::common;

use common::{bin, slurm, Env};
use hpcsera_api_types::{JobStatus, Role, RoleSet};
use hpcsera_store::NewToken;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// The examples' default site.
const SITE: &str = "local";

fn job_types() -> String {
    [
        include_str!("../../fixtures/job_types/cli.toml"),
        &common::sleep_and_later_job_types(),
        include_str!("../../fixtures/job_types/pipeline.toml"),
    ]
    .join("\n")
}

async fn env() -> Env {
    Env::new(SITE, &job_types()).await
}

#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// The binary with a clean client environment: the test server's URL and token, a private
/// config directory, no inherited output format; backtraces on, so a panic would show.
fn command(env: &Env) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(bin());
    c.env_remove("HPCSERA_OUTPUT")
        .env("HPCSERA_URL", &env.url)
        .env("HPCSERA_TOKEN", &env.token)
        .env("XDG_CONFIG_HOME", env.path().join("config"))
        .env("HOME", env.path())
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    c
}

async fn output(mut c: tokio::process::Command, stdin: Option<&str>) -> Run {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    if stdin.is_some() {
        c.stdin(Stdio::piped());
    }
    let mut child = c.spawn().unwrap();
    if let Some(text) = stdin {
        let mut s = child.stdin.take().unwrap();
        s.write_all(text.as_bytes()).await.unwrap();
        drop(s);
    }
    let out = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .expect("the command did not end in 180 s")
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn run(env: &Env, args: &[&str]) -> Run {
    let mut c = command(env);
    c.args(args);
    output(c, None).await
}

async fn run_env(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> Run {
    let mut c = command(env);
    c.args(args);
    for (k, v) in vars {
        c.env(k, v);
    }
    output(c, None).await
}

fn json(r: &Run) -> Value {
    serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}; stderr {:?}", r.stdout, r.stderr))
}

#[tokio::test]
async fn submit_follow_prints_the_output_in_order_and_exits_with_the_jobs_code() {
    let env = env().await;

    // Output that comes in bursts while the job runs arrives whole, in order, once.
    let r = run(
        &env,
        &["job", "submit", SITE, "count", "-p", "n=1000", "--follow"],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}\n{}", env.agent_log());
    let expected: String = (1..=1000).map(|i| format!("line {i}\n")).collect();
    assert_eq!(r.stdout, expected);

    // stdout to stdout, stderr to stderr.
    let r = run(
        &env,
        &[
            "job",
            "submit",
            SITE,
            "echo",
            "-p",
            "v=hello world",
            "--follow",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "line one\nv=hello world\nline three\n");
    assert!(r.stderr.contains("to stderr\n"), "{r:?}");

    // A non-zero exit code of the job is the command's exit code.
    let r = run(
        &env,
        &[
            "job",
            "submit",
            SITE,
            "sleep",
            "-p",
            "seconds=1",
            "-p",
            "code=3",
            "--wait",
            "--follow",
        ],
    )
    .await;
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(r.stdout, "start\nend\n");
    assert!(r.stderr.contains("failed, exit code 3"), "{r:?}");

    // --wait alone: nothing on stdout in table mode, the exit code is the job's.
    let r = run(
        &env,
        &[
            "job",
            "submit",
            SITE,
            "sleep",
            "-p",
            "seconds=0",
            "-p",
            "code=0",
            "--wait",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "");

    // A wait that times out: 73, and the job goes on.
    let r = run(
        &env,
        &[
            "job",
            "submit",
            SITE,
            "sleep",
            "-p",
            "seconds=30",
            "--wait",
            "--timeout",
            "1s",
        ],
    )
    .await;
    assert_eq!(r.code, 73, "{r:?}");
    assert!(r.stderr.contains("timed out after 1s"), "{r:?}");

    // `job logs` reads what is there; `job wait` on an ended job answers at once.
    let list = json(&run(&env, &["job", "list", "--type", "echo", "--output", "json"]).await);
    let id = list["jobs"][0]["id"].as_str().unwrap().to_string();
    let r = run(&env, &["job", "logs", &id]).await;
    assert_eq!(r.stdout, "line one\nv=hello world\nline three\n", "{r:?}");
    let r = run(&env, &["job", "logs", &id, "--stderr"]).await;
    assert_eq!(r.stdout, "to stderr\n", "{r:?}");
    let r = run(&env, &["job", "wait", &id]).await;
    assert_eq!(r.code, 0, "{r:?}");
    // The job the timed-out wait left running.
    env.cancel_unfinished_jobs().await;
}

#[tokio::test]
async fn json_output_parses_and_has_the_documented_fields() {
    let env = env().await;
    let r = run(
        &env,
        &[
            "job",
            "submit",
            SITE,
            "echo",
            "-p",
            "v=42",
            "-p",
            "b=yes",
            "-p",
            "x=2.5",
            "--metadata",
            r#"{"ci": {"pipeline": 7}}"#,
            "--wait",
            "--output",
            "json",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    let job = json(&r);
    for field in [
        "id",
        "project",
        "site",
        "jobType",
        "owner",
        "status",
        "parameters",
        "held",
        "exitCode",
        "subJobs",
        "createdAt",
        "updatedAt",
        "finishedAt",
    ] {
        assert!(job.get(field).is_some(), "no {field} in {job}");
    }
    assert_eq!(job["status"], "completed");
    assert_eq!(job["exitCode"], 0);
    // -p values were converted by the declared types: "42" stays a string.
    assert_eq!(job["parameters"]["v"], "42");
    assert_eq!(job["parameters"]["b"], true);
    assert_eq!(job["parameters"]["x"], 2.5);
    assert_eq!(job["metadata"]["ci"]["pipeline"], 7);
    let id = job["id"].as_str().unwrap().to_string();

    // Without --wait: the Job as submitted; in table mode only the id.
    let r = run(
        &env,
        &["job", "submit", SITE, "pipeline", "--output", "json"],
    )
    .await;
    let submitted = json(&r);
    assert_eq!(submitted["status"], "queued");
    let pid = submitted["id"].as_str().unwrap().to_string();
    let r = run(&env, &["job", "submit", SITE, "pipeline", "-p", "n=3"]).await;
    assert_eq!(r.stdout.trim().len(), 36, "{r:?}");
    env.wait_for(&pid, JobStatus::is_terminal, "terminal").await;
    env.wait_for(r.stdout.trim(), JobStatus::is_terminal, "terminal")
        .await;

    // get, list (one page, and all pages), with the format from HPCSERA_OUTPUT too.
    let got = json(&run_env(&env, &["job", "get", &id], &[("HPCSERA_OUTPUT", "json")]).await);
    assert_eq!(got["id"], id.as_str());
    let page = json(&run(&env, &["job", "list", "--limit", "1", "--output", "json"]).await);
    assert_eq!(page["jobs"].as_array().unwrap().len(), 1);
    assert!(page["nextCursor"].is_string(), "{page}");
    let all = json(
        &run(
            &env,
            &["job", "list", "--limit", "1", "--all", "--output", "json"],
        )
        .await,
    );
    assert_eq!(all["jobs"].as_array().unwrap().len(), 3, "{all}");
    assert!(all.get("nextCursor").is_none());
    let done = json(
        &run(
            &env,
            &[
                "job",
                "list",
                "--status",
                "completed",
                "--type",
                "pipeline",
                "--output",
                "json",
            ],
        )
        .await,
    );
    assert_eq!(done["jobs"].as_array().unwrap().len(), 2, "{done}");

    // whoami, sites, job types.
    let r = run(&env, &["whoami", "--output", "json"]).await;
    assert!(!r.stdout.contains(&env.token) && !r.stderr.contains(&env.token));
    let me = json(&r);
    assert_eq!(me["user"], "alice");
    assert_eq!(me["project"], "p");
    assert!(me["roles"]
        .as_array()
        .unwrap()
        .contains(&Value::from("POST_Job")));
    let sites = json(&run(&env, &["sites", "--output", "json"]).await);
    assert_eq!(sites["sites"][0]["name"], SITE);
    let types = json(&run(&env, &["job-types", SITE, "--output", "json"]).await);
    let count = types["jobTypes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "count")
        .unwrap();
    assert_eq!(count["parameters"][0]["type"], "integer");
    assert_eq!(count["parameters"][0]["maximum"], 100000);
    let table = run(&env, &["job-types", SITE]).await;
    assert!(table.stdout.contains("count"), "{table:?}");
    assert!(table.stdout.contains("1..100000"), "{table:?}");

    // Results: list, one to stdout, all into a directory.
    let res = json(&run(&env, &["job", "results", &pid, "--output", "json"]).await);
    assert_eq!(res["results"][0]["name"], "sum.txt");
    assert!(res["results"][0]["sha256"].is_string());
    assert_eq!(res["results"][0]["size"], 3);
    let one = run(&env, &["job", "results", &pid, "sum.txt"]).await;
    assert_eq!(one.stdout, "55\n");
    let dir = env.path().join("res");
    let r = run(&env, &["job", "results", &pid, "-o", dir.to_str().unwrap()]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        std::fs::read_to_string(dir.join("sum.txt")).unwrap(),
        "55\n"
    );

    // Delete.
    let del = json(&run(&env, &["job", "delete", &pid, "--output", "json"]).await);
    assert_eq!(del["deleted"], true);
    assert_eq!(del["pending"], false);
    assert_eq!(run(&env, &["job", "get", &pid]).await.code, 2);
}

async fn operation_ack(env: &Env, id: &str, after: i64) -> hpcsera_api_types::JobEvent {
    let started = Instant::now();
    loop {
        let ev = env.client.events(id, after).await.unwrap();
        if let Some(e) = ev
            .into_iter()
            .find(|e| e.kind == "operation_done" || e.kind == "operation_failed")
        {
            return e;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "operation never acknowledged: {}",
            env.agent_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn cancel_hold_and_release_through_the_cli_reach_the_batch_system() {
    let env = env().await;
    let r = run(&env, &["job", "submit", SITE, "later"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    let id = r.stdout.trim().to_string();
    env.wait_for(
        &id,
        |s| s == JobStatus::Submitted || s == JobStatus::Running,
        "submitted",
    )
    .await;
    let last = env.client.events(&id, 0).await.unwrap().last().unwrap().seq;
    let r = run(&env, &["job", "hold", &id]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("hold requested"), "{r:?}");
    let ack = operation_ack(&env, &id, last).await;
    if slurm() {
        assert_eq!(ack.kind, "operation_done", "{:?}", ack.message);
        let batch = env.client.get_job(&id).await.unwrap().batch_job_id.unwrap();
        let reason = || {
            let out = std::process::Command::new("squeue")
                .args(["-h", "-o", "%r", "-j", &batch])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        assert!(reason().starts_with("JobHeld"), "Slurm reason {}", reason());
        let got = json(&run(&env, &["job", "get", &id, "--output", "json"]).await);
        assert_eq!(got["held"], true);
        let last = env.client.events(&id, 0).await.unwrap().last().unwrap().seq;
        let r = run(&env, &["job", "release", &id]).await;
        assert_eq!(r.code, 0, "{r:?}");
        let ack = operation_ack(&env, &id, last).await;
        assert_eq!(ack.kind, "operation_done", "{:?}", ack.message);
        assert!(
            !reason().starts_with("JobHeld"),
            "Slurm reason {}",
            reason()
        );
    } else {
        // The local adapter cannot hold a running process: the agent refuses, and says so.
        assert_eq!(ack.kind, "operation_failed", "{ack:?}");
        let r = run(&env, &["job", "release", &id]).await;
        assert_eq!(r.code, 0, "{r:?}");
    }
    // Cancel while another client waits: the waiter sees it and exits 71.
    let waiter = {
        let mut c = command(&env);
        c.args(["job", "wait", &id]);
        tokio::spawn(output(c, None))
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = run(&env, &["job", "cancel", &id]).await;
    assert_eq!(r.code, 0, "{r:?}");
    let w = waiter.await.unwrap();
    assert_eq!(w.code, 71, "{w:?}");
    assert!(w.stderr.contains("cancelled"), "{w:?}");
    assert_eq!(
        env.client.get_job(&id).await.unwrap().status,
        JobStatus::Cancelled
    );
    if slurm() {
        let batch = env.client.get_job(&id).await.unwrap().batch_job_id.unwrap();
        let out = std::process::Command::new("squeue")
            .args(["-h", "-o", "%T", "-j", &batch])
            .output()
            .unwrap();
        let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            state.is_empty() || state.starts_with("CANCEL"),
            "Slurm state {state}"
        );
    }

    // --cancel-on-interrupt: SIGINT while waiting cancels the job; exit 130.
    let r = run(&env, &["job", "submit", SITE, "later"]).await;
    let id = r.stdout.trim().to_string();
    env.wait_for(
        &id,
        |s| s == JobStatus::Submitted || s == JobStatus::Running,
        "submitted",
    )
    .await;
    let mut c = command(&env);
    c.args(["job", "wait", &id, "--cancel-on-interrupt"]);
    let (code, _) = interrupted_while_waiting(c).await;
    assert_eq!(code, Some(130));
    env.wait_for(&id, |s| s == JobStatus::Cancelled, "cancelled")
        .await;

    // Without it and without a terminal: stop waiting, the job goes on.
    let r = run(&env, &["job", "submit", SITE, "later"]).await;
    let id = r.stdout.trim().to_string();
    let mut c = command(&env);
    c.args(["job", "wait", &id]);
    let (code, stderr) = interrupted_while_waiting(c).await;
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("goes on"), "{stderr}");
    assert!(!env.client.get_job(&id).await.unwrap().status.is_terminal());
    run(&env, &["job", "cancel", &id]).await;
    // The agent must carry the cancel out before the test ends, or the batch job (waiting
    // for its begin time) stays in the queue.
    env.wait_for(&id, |s| s == JobStatus::Cancelled, "cancelled")
        .await;
}

/// Starts a waiting command, sends it SIGINT (what Ctrl-C sends) once it printed the job's
/// status, and returns its exit code and stderr.
async fn interrupted_while_waiting(mut c: tokio::process::Command) -> (Option<i32>, String) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut err = tokio::io::BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).await.unwrap();
    assert!(first.starts_with("job "), "{first}");
    let ok = std::process::Command::new("kill")
        .args(["-INT", &child.id().unwrap().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let mut rest = String::new();
    err.read_to_string(&mut rest).await.unwrap();
    let status = child.wait().await.unwrap();
    (status.code(), first + &rest)
}

fn assert_one_error_line(r: &Run, needle: &str) {
    assert_ne!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "", "{r:?}");
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "not one line: {r:?}");
    assert!(lines[0].starts_with("error: "), "{r:?}");
    assert!(lines[0].contains(needle), "{needle:?} not in {r:?}");
    for bad in ["panicked", "backtrace", "RUST_BACKTRACE", "stack"] {
        assert!(!r.stderr.contains(bad), "{bad} in {r:?}");
    }
}

#[tokio::test]
async fn bad_input_gives_one_clear_line_and_a_non_zero_exit() {
    let env = env().await;
    let cases: &[(&[&str], &str, i32)] = &[
        (&["job", "submit", "nosuch", "echo"], "unknown site \"nosuch\"; sites are: local", 2),
        (&["job", "submit", SITE, "nosuch"], "has no job type \"nosuch\"", 2),
        (
            &["job", "submit", SITE, "echo", "-p", "nope=1"],
            "unknown parameter \"nope\" for job type \"echo\" at site \"local\"; its parameters are: v, b, x",
            2,
        ),
        (&["job", "submit", SITE, "echo", "-p", "v"], "-p takes key=value", 2),
        (&["job", "submit", SITE, "sleep", "-p", "seconds=abc"], "not an integer", 2),
        (&["job", "submit", SITE, "echo", "-p", "v=1", "-p", "b=maybe"], "not a boolean", 2),
        (&["job", "submit", SITE, "count", "-p", "n=0"], "parameters.n", 2),
        (&["job", "submit", SITE, "echo"], "parameters.v", 2),
        (
            &["job", "submit", SITE, "echo", "-p", "v=1", "--param-file", "/nonexistent.json"],
            "cannot read /nonexistent.json",
            2,
        ),
        (&["job", "submit", SITE, "echo", "-p", "v=1", "--metadata", "{bad"], "--metadata", 2),
        (
            &["job", "submit", SITE, "echo", "-p", "v=1", "--callback-url", "http://10.0.0.1/hook"],
            "callbackUrl",
            2,
        ),
        (&["job", "get", "not-a-uuid"], "jobId", 2),
        (&["job", "wait", "01a21400-0000-7000-8000-000000000000"], "not found", 2),
        (&["job-types", "nosuch"], "unknown site", 2),
    ];
    for (args, needle, code) in cases {
        let r = run(&env, args).await;
        assert_one_error_line(&r, needle);
        assert_eq!(r.code, *code, "{args:?}: {r:?}");
    }

    // The server is down.
    let r = run_env(&env, &["sites"], &[("HPCSERA_URL", "http://127.0.0.1:1")]).await;
    assert_one_error_line(&r, "cannot reach the server at http://127.0.0.1:1");
    assert_eq!(r.code, 1);

    // An expired token, a revoked one, an unknown one.
    let roles: RoleSet = [Role::GetJobStatus].into_iter().collect();
    let (_, expiring) = env
        .store
        .create_token(&NewToken {
            user: "alice",
            project: "p",
            name: "short",
            roles,
            site: None,
            expires_at: Some(hpcsera_store::now_ms() + 1000),
        })
        .await
        .unwrap();
    let (revoked_rec, revoked) = env
        .store
        .create_token(&NewToken {
            user: "alice",
            project: "p",
            name: "revoked",
            roles,
            site: None,
            expires_at: None,
        })
        .await
        .unwrap();
    env.store.revoke_token(&revoked_rec.id, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (token, needle) in [
        (expiring.as_str(), "expired"),
        (revoked.as_str(), "refused the token"),
        ("hpcs_nonsense", "refused the token"),
    ] {
        let r = run_env(&env, &["job", "list"], &[("HPCSERA_TOKEN", token)]).await;
        assert_one_error_line(&r, needle);
        assert!(r.stderr.contains("hpcsera login"), "{r:?}");
        assert!(!r.stderr.contains(token), "the token was printed: {r:?}");
        assert_eq!(r.code, 1);
    }

    // A token the SDK refuses to send, and no configuration at all.
    let r = run_env(&env, &["sites"], &[("HPCSERA_TOKEN", "two words")]).await;
    assert_one_error_line(&r, "token");
    let mut c = command(&env);
    c.env_remove("HPCSERA_URL")
        .env_remove("HPCSERA_TOKEN")
        .arg("sites");
    let r = output(c, None).await;
    assert_one_error_line(&r, "hpcsera login");
}

#[tokio::test]
async fn login_writes_a_private_file_and_the_environment_overrides_it() {
    let env = env().await;
    let config = env.path().join("config/hpcsera/config.toml");
    let login = |token: &str| {
        let mut c = command(&env);
        c.env_remove("HPCSERA_URL")
            .env_remove("HPCSERA_TOKEN")
            .args(["login", "--url", &env.url, "--token-stdin"]);
        let token = format!("{token}\n");
        async move { output(c, Some(&token)).await }
    };
    let r = login(&env.token).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.stdout.contains(&env.token) && !r.stderr.contains(&env.token));
    assert!(r.stderr.contains("alice"), "{r:?}");
    let meta = std::fs::metadata(&config).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains(&env.url) && text.contains(&env.token),
        "{text}"
    );

    // The file is used when the environment says nothing.
    let from_file = || {
        let mut c = command(&env);
        c.env_remove("HPCSERA_URL").env_remove("HPCSERA_TOKEN");
        c
    };
    let mut c = from_file();
    c.args(["whoami", "--output", "json"]);
    let r = output(c, None).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(json(&r)["user"], "alice");

    // HPCSERA_TOKEN and HPCSERA_URL each override the file.
    let mut c = from_file();
    c.env("HPCSERA_TOKEN", "hpcs_other").arg("whoami");
    assert_one_error_line(&output(c, None).await, "refused the token");
    let mut c = from_file();
    c.env("HPCSERA_URL", "http://127.0.0.1:1").arg("whoami");
    assert_one_error_line(&output(c, None).await, "cannot reach the server");

    // A token the server refuses is not stored.
    let r = login("hpcs_wrong").await;
    assert_one_error_line(&r, "refused the token");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text);

    // Logout removes the file.
    let mut c = from_file();
    c.arg("logout");
    assert_eq!(output(c, None).await.code, 0);
    assert!(!config.exists());
    let mut c = from_file();
    c.arg("whoami");
    assert_one_error_line(&output(c, None).await, "hpcsera login");
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// The `script:` lines (and `variables:`) of the first job of a GitLab CI file: list items
/// under `  script:` / `  variables:` at four spaces.
fn gitlab_job(yml: &str) -> (Vec<(String, String)>, Vec<String>) {
    let mut vars = Vec::new();
    let mut script = Vec::new();
    let mut section = "";
    for line in yml.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if indent <= 2 {
            section = line.trim().trim_end_matches(':');
            continue;
        }
        match section {
            "script" => {
                if let Some(cmd) = line.trim().strip_prefix("- ") {
                    script.push(cmd.to_string());
                }
            }
            "variables" => {
                if let Some((k, v)) = line.trim().split_once(": ") {
                    vars.push((k.to_string(), v.trim_matches('"').to_string()));
                }
            }
            _ => {}
        }
    }
    (vars, script)
}

#[tokio::test]
async fn the_examples_run_as_written() {
    let env = env().await;

    // The workflow engine's HTTP task, with curl.
    let work = env.path().join("workflow");
    std::fs::create_dir_all(&work).unwrap();
    let mut c = tokio::process::Command::new("bash");
    c.arg(examples().join("workflow-http-task.sh"))
        .args([SITE, "pipeline", r#"{"n": 100}"#, "out"])
        .current_dir(&work)
        .env("HPCSERA_URL", &env.url)
        .env("HPCSERA_TOKEN", &env.token)
        .env("IDEMPOTENCY_KEY", "task-1");
    let r = output(c, None).await;
    assert_eq!(r.code, 0, "{r:?}\n{}", env.agent_log());
    assert!(r.stdout.contains("sum of 1..100 = 5050\n"), "{r:?}");
    assert!(!r.stdout.contains(&env.token) && !r.stderr.contains(&env.token));
    assert_eq!(
        std::fs::read_to_string(work.join("out/sum.txt")).unwrap(),
        "5050\n"
    );
    // Run again with the same key: the same job, not a second one.
    let mut c = tokio::process::Command::new("bash");
    c.arg(examples().join("workflow-http-task.sh"))
        .args([SITE, "pipeline", r#"{"n": 100}"#, "out2"])
        .current_dir(&work)
        .env("HPCSERA_URL", &env.url)
        .env("HPCSERA_TOKEN", &env.token)
        .env("IDEMPOTENCY_KEY", "task-1");
    let r = output(c, None).await;
    assert_eq!(r.code, 0, "{r:?}");
    let jobs = env
        .client
        .list_jobs(&Default::default())
        .await
        .unwrap()
        .jobs;
    assert_eq!(jobs.len(), 1);
    // A failing job's exit code is the task's.
    let mut c = tokio::process::Command::new("bash");
    c.arg(examples().join("workflow-http-task.sh"))
        .args([SITE, "sleep", r#"{"seconds": 0, "code": 4}"#, "out3"])
        .current_dir(&work)
        .env("HPCSERA_URL", &env.url)
        .env("HPCSERA_TOKEN", &env.token);
    let r = output(c, None).await;
    assert_eq!(r.code, 4, "{r:?}");

    // The GitLab CI job's script lines, with the CLI on PATH and the masked variables set.
    let yml = std::fs::read_to_string(examples().join("gitlab-ci.yml")).unwrap();
    assert!(!yml.contains("hpcs_"), "a token in the CI file");
    let (vars, script) = gitlab_job(&yml);
    assert!(
        script
            .iter()
            .any(|l| l.contains("hpcsera job submit") && l.contains("--wait --follow")),
        "{script:?}"
    );
    let ci = env.path().join("ci");
    std::fs::create_dir_all(&ci).unwrap();
    let bin = bin();
    let bin_dir = bin.parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // GitLab runs the lines in one shell with errexit and pipefail.
    let text = format!("set -eo pipefail\n{}\n", script.join("\n"));
    let mut c = tokio::process::Command::new("bash");
    c.arg("-c")
        .arg(text)
        .current_dir(&ci)
        .env_remove("HPCSERA_OUTPUT")
        .env("PATH", path)
        .env("HPCSERA_URL", &env.url)
        .env("HPCSERA_TOKEN", &env.token)
        .env("XDG_CONFIG_HOME", env.path().join("ci-config"))
        .env("CI_PROJECT_DIR", &ci)
        .env("CI_PIPELINE_ID", "17")
        .env("CI_JOB_ID", "42");
    for (k, v) in &vars {
        c.env(k, v);
    }
    let r = output(c, None).await;
    assert_eq!(r.code, 0, "{r:?}\n{}", env.agent_log());
    assert!(r.stdout.contains("sum of 1..100 = 5050\n"), "{r:?}");
    assert!(!r.stdout.contains(&env.token) && !r.stderr.contains(&env.token));
    assert_eq!(
        std::fs::read_to_string(ci.join("results/sum.txt")).unwrap(),
        "5050\n"
    );
    let perms = std::fs::metadata(ci.join("results")).unwrap().permissions();
    assert!(perms.mode() & 0o700 == 0o700);
}

/// A TCP proxy to the server that can drop every connection and refuse new ones for a while.
struct Proxy {
    port: u16,
    upstream: String,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: &str) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let p = Proxy {
            port,
            upstream: upstream.trim_start_matches("http://").to_string(),
            tasks: Default::default(),
        };
        p.serve(listener);
        p
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let upstream = self.upstream.clone();
        let tasks = self.tasks.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut down, _)) = listener.accept().await else {
                    return;
                };
                let upstream = upstream.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
                tasks.lock().unwrap().push(conn);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Drops every connection, refuses connections for `pause`, then serves again.
    async fn outage(&self, pause: Duration) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
        tokio::time::sleep(pause).await;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        self.serve(listener);
    }
}

#[tokio::test]
async fn follow_survives_dropped_connections_without_gaps_or_repeats() {
    let env = env().await;
    let proxy = Proxy::start(&env.url).await;
    let mut c = command(&env);
    c.env("HPCSERA_URL", format!("http://127.0.0.1:{}", proxy.port))
        .args(["job", "submit", SITE, "count", "-p", "n=2500", "--follow"]);
    let follower = tokio::spawn(output(c, None));
    // Cut the connections a few times while the job prints (it pauses 0.5 s every 250 lines).
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        proxy.outage(Duration::from_millis(700)).await;
    }
    let r = follower.await.unwrap();
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, env.agent_log());
    let expected: String = (1..=2500).map(|i| format!("line {i}\n")).collect();
    assert!(
        r.stdout == expected,
        "output differs: {} bytes, expected {}; stderr {}",
        r.stdout.len(),
        expected.len(),
        r.stderr
    );
}

#[tokio::test]
async fn server_text_is_shown_escaped_in_tables() {
    let env = env().await;
    let r = run(&env, &["job-types", SITE]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains(r"sets the title \x1b]0;pwned\x07 and clears \x1b[2J the screen"),
        "{:?}",
        r.stdout
    );
    assert!(
        r.stdout.contains(r"bell \x07 csi \u{9b}31m"),
        "{:?}",
        r.stdout
    );
    // JSON output keeps the text, JSON-escaped.
    let r = run(&env, &["job-types", SITE, "--output", "json"]).await;
    assert!(r.stdout.contains(r"\u001b]0;pwned\u0007"), "{:?}", r.stdout);
    // A parameter value the server hands back.
    let r = run(
        &env,
        &[
            "job",
            "submit",
            SITE,
            "echo",
            "-p",
            "v=\x1b]0;pwned\x07\x1b[2J",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    let id = r.stdout.trim().to_string();
    let r = run(&env, &["job", "get", &id]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains(r"v=\x1b]0;pwned\x07\x1b[2J"),
        "{:?}",
        r.stdout
    );
    assert!(
        !r.stdout.contains(['\x1b', '\x07', '\u{9b}']) && !r.stderr.contains(['\x1b', '\x07']),
        "{r:?}"
    );
    let r = run(&env, &["job", "list"]).await;
    assert!(!r.stdout.contains('\x1b'), "{r:?}");
}
